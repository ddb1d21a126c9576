package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/dcaas/dcaas/client"
	"github.com/dcaas/dcaas/internal/atomicfile"
)

// The custodian tools: commands that call a KMS or a sidecar through the
// SDK (package client). Flags become client options here; the SDK does
// the rest.

// addCLICmds registers the custodian and admin tools on root, and `audit
// list` under the existing audit command.
func addCLICmds(root *cobra.Command) {
	root.AddCommand(
		newTenantCmd(), newAppCmd(), newAdminCmd(), newKeyCmd(), newTokenCmd(), newGrantCmd(),
		newInstancesCmd(), newLoadCmd(), newCryptoCmd("encrypt"), newCryptoCmd("decrypt"),
	)
	root.AddCommand(newApprovalCmd()) // quorum approvals, cli_approvals.go
	var audit *cobra.Command
	for _, c := range root.Commands() {
		if c.Name() == "audit" {
			audit = c
		}
	}
	if audit == nil {
		audit = &cobra.Command{Use: "audit", Short: "Inspect the KMS audit log"}
		root.AddCommand(audit)
	}
	audit.AddCommand(newAuditListCmd())
}

// cliConn holds the connection flags every tool shares. Their defaults
// come from the environment (DCAAS_KMS, DCAAS_CA, DCAAS_CERT, DCAAS_KEY,
// DCAAS_SOCKET, DCAAS_EKB_STORE).
type cliConn struct {
	kms    []string
	ca     string
	cert   string
	key    string
	socket string
	json   bool
}

// connFlags registers the shared flags on cmd (inherited by its
// subcommands).
func connFlags(cmd *cobra.Command) *cliConn {
	c := &cliConn{}
	fl := cmd.PersistentFlags()
	var kmsDefault []string
	if v := os.Getenv("DCAAS_KMS"); v != "" {
		kmsDefault = strings.Split(v, ",")
	}
	fl.StringSliceVar(&c.kms, "kms", kmsDefault, "KMS base URL, repeatable for replicas (env DCAAS_KMS, comma-separated)")
	fl.StringVar(&c.ca, "ca", os.Getenv("DCAAS_CA"), "KMS CA certificate PEM file (env DCAAS_CA)")
	fl.StringVar(&c.cert, "cert", os.Getenv("DCAAS_CERT"), "client certificate PEM file (env DCAAS_CERT)")
	fl.StringVar(&c.key, "key", os.Getenv("DCAAS_KEY"), "client private key PEM file (env DCAAS_KEY)")
	fl.StringVar(&c.socket, "socket", envOr("DCAAS_SOCKET", filepath.Join("dcaas-sidecar", "sidecar.sock")), "sidecar Unix socket (env DCAAS_SOCKET)")
	fl.BoolVar(&c.json, "json", false, "print machine-readable JSON (a failure too: {\"error\":{\"code\":…,\"message\":…}} on stderr)")
	return c
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// kmsCA checks that a KMS is named (--kms) and reads the CA to trust it
// with (--ca; nil without it), for either kind of KMS client.
func (c *cliConn) kmsCA() ([]byte, error) {
	if len(c.kms) == 0 {
		return nil, errors.New("no KMS: give --kms URL or set DCAAS_KMS")
	}
	if c.ca == "" {
		return nil, nil
	}
	caPEM, err := os.ReadFile(c.ca)
	if err != nil {
		return nil, fmt.Errorf("--ca: %w", err)
	}
	return caPEM, nil
}

// kmsClient connects to the KMS with the certificate of --cert/--key.
func (c *cliConn) kmsClient(opts ...client.Option) (*client.KMS, error) {
	caPEM, err := c.kmsCA()
	if err != nil {
		return nil, err
	}
	if c.cert == "" || c.key == "" {
		return nil, errors.New("no client identity: give --cert and --key (or set DCAAS_CERT and DCAAS_KEY)")
	}
	certPEM, err := os.ReadFile(c.cert)
	if err != nil {
		return nil, fmt.Errorf("--cert: %w", err)
	}
	keyPEM, err := os.ReadFile(c.key)
	if err != nil {
		return nil, fmt.Errorf("--key: %w", err)
	}
	return client.NewKMS(c.kms, caPEM, certPEM, keyPEM, opts...)
}

// kmsClientOrAnonymous connects with --cert and --key when either is
// given (then both are needed, as for kmsClient) and without a client
// certificate when neither is: for what anyone may ask but an identity may
// ask too (the seal status, the trust bundle).
func (c *cliConn) kmsClientOrAnonymous() (*client.KMS, error) {
	if c.cert == "" && c.key == "" {
		return c.anonymousKMSClient()
	}
	return c.kmsClient()
}

// anonymousKMSClient connects to the KMS without a client certificate,
// for what anyone may call (the trust bundle).
func (c *cliConn) anonymousKMSClient() (*client.KMS, error) {
	caPEM, err := c.kmsCA()
	if err != nil {
		return nil, err
	}
	return client.NewKMS(c.kms, caPEM, nil, nil)
}

// sidecarClient connects to the sidecar's Unix socket.
func (c *cliConn) sidecarClient() (*client.Sidecar, error) {
	return client.NewSidecarUnix(c.socket)
}

// print writes v as indented JSON with --json, else calls human.
func (c *cliConn) print(cmd *cobra.Command, v any, human func(w io.Writer)) error {
	w := cmd.OutOrStdout()
	if c.json {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	human(w)
	return nil
}

// kmsCall is the body of a tool that makes its KMS call and prints the
// answer: it connects with c's identity, calls do and prints what do
// returns, as JSON with --json, else with human. A tool checks its flags
// before; what do does runs after the connection is made.
func kmsCall[T any](cmd *cobra.Command, c *cliConn, do func(k *client.KMS) (T, error), human func(w io.Writer, v T)) error {
	k, err := c.kmsClient()
	if err != nil {
		return err
	}
	defer k.Close()
	v, err := do(k)
	if err != nil {
		return err
	}
	return c.print(cmd, v, func(w io.Writer) { human(w, v) })
}

// ekbStoreFlag registers --store, the EKB store directory.
func ekbStoreFlag(cmd *cobra.Command, dir *string) {
	cmd.Flags().StringVar(dir, "store", envOr("DCAAS_EKB_STORE", "dcaas-ekbs"), "EKB store directory (env DCAAS_EKB_STORE)")
}

// isTerminal reports whether w is an interactive terminal (not a pipe, a
// file or /dev/null).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return false
	}
	if null, err := os.Stat(os.DevNull); err == nil && os.SameFile(fi, null) {
		return false
	}
	return true
}

// progress returns a flow option drawing a progress bar of total items on
// stderr when it is a terminal, and a function that finishes the bar;
// both do nothing otherwise.
func progress(cmd *cobra.Command, what string, total int) (client.FlowOption, func()) {
	w := cmd.ErrOrStderr()
	if !isTerminal(w) {
		return client.WithProgress(func(int, int) {}), func() {}
	}
	bar := progressbar.NewOptions(total,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(what),
		progressbar.OptionShowCount(),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetRenderBlankState(true),
		progressbar.OptionClearOnFinish(),
	)
	return client.WithProgress(func(done, _ int) { _ = bar.Set(done) }), func() { _ = bar.Finish() }
}

// refuseExisting fails if path exists, unless force: the check before a
// tool writes path, made before anything is asked of the KMS where the
// answer could then not be written.
func refuseExisting(path string, force bool) error {
	if !force {
		if _, err := os.Lstat(path); err == nil {
			return fmt.Errorf("%s exists (use --force to replace it)", path)
		}
	}
	return nil
}

// writeNew writes data to path atomically with mode; an existing file is
// replaced only with force.
func writeNew(path string, data []byte, mode os.FileMode, force bool) error {
	if err := refuseExisting(path, force); err != nil {
		return err
	}
	if err := atomicfile.Write(path, data, mode); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// readInput reads a file, or stdin for "-".
func readInput(cmd *cobra.Command, name string) ([]byte, error) {
	if name == "-" || name == "" {
		return io.ReadAll(cmd.InOrStdin())
	}
	return os.ReadFile(name)
}

// safeName accepts names that can be file names in a chosen directory.
func safeName(s string) bool {
	if s == "" || s[0] == '.' || s[0] == '-' || len(s) > 128 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}
