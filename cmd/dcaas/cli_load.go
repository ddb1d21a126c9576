package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/client"
)

type loadOutput struct {
	Loaded []string `json:"loaded"`
}

func printLoaded(w io.Writer, ids []string) {
	fmt.Fprintf(w, "loaded %d key(s) into the sidecar\n", len(ids))
	if len(ids) <= 20 {
		for _, id := range ids {
			fmt.Fprintln(w, id)
		}
	}
}

func newLoadCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "load",
		Short: "Load keys into the sidecar (the four flows of docs/design.md)",
		Long: `Load keys into the sidecar on --socket, in batches of at most 1000. Each
flow needs the custodian's KMS credentials (--kms, --ca, --cert, --key) of
the custodian the sidecar is bound to. A progress bar is drawn on stderr
when it is a terminal.`,
	}
	c := connFlags(cmd)

	var rsrc ekbSource
	rewrap := &cobra.Command{
		Use:   "rewrap",
		Short: "Load EKBs by wrapping-certificate rewrap (the primary flow)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if rsrc.empty() {
				return errors.New("name EKBs: --ekb FILE, --key-id KEY_ID or --all")
			}
			ekbs, err := rsrc.read()
			if err != nil {
				return err
			}
			return c.load(cmd, "rewrap + import", len(ekbs), func(k *client.KMS, sc *client.Sidecar, p client.FlowOption) ([]string, error) {
				return client.LoadByRewrap(cmd.Context(), k, sc, ekbs, p)
			})
		},
	}
	rsrc.flags(rewrap)

	var gsrc ekbSource
	var retained []string
	grant := &cobra.Command{
		Use:   "grant",
		Short: "Load EKBs or retained keys through single-use grants the sidecar presents to the KMS",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if gsrc.empty() && len(retained) == 0 {
				return errors.New("name keys: --ekb FILE, --key-id KEY_ID, --all or --retained KEY_ID")
			}
			var ekbs [][]byte
			if !gsrc.empty() {
				var err error
				if ekbs, err = gsrc.read(); err != nil {
					return err
				}
			}
			return c.load(cmd, "grant + load", len(ekbs)+len(retained), func(k *client.KMS, sc *client.Sidecar, p client.FlowOption) ([]string, error) {
				return client.LoadByGrant(cmd.Context(), k, sc, ekbs, retained, p)
			})
		},
	}
	gsrc.flags(grant)
	grant.Flags().StringArrayVar(&retained, "retained", nil, "a key id retained by the KMS: every version (repeatable)")

	var seedsFile string
	seeds := &cobra.Command{
		Use:   "seeds",
		Short: "Load keys the KMS derives from seeds",
		Long: `Load keys the KMS derives from seeds (secret values the custodian keeps
instead of EKBs). --seeds is a JSON file ("-": stdin) of
[{"seed": BASE64 (16 to 64 bytes), "type": "aes-256-gcm"|"hmac-sha256"|"ed25519"}, …],
each optionally with "policy": {…} (the key's policy, bound into the key) and
"kdf": "v2" (the default: derived under this custodian's own seed key) or "v1"
(under the tenant HMAC key, for data derived before SeedKDF v2; no policy).
The key ids print in the order of the seeds.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if seedsFile == "" {
				return errors.New("--seeds is required")
			}
			list, err := readSeeds(cmd, seedsFile)
			if err != nil {
				return err
			}
			return c.load(cmd, "grant + derive", len(list), func(k *client.KMS, sc *client.Sidecar, p client.FlowOption) ([]string, error) {
				return client.LoadBySeeds(cmd.Context(), k, sc, list, p)
			})
		},
	}
	seeds.Flags().StringVar(&seedsFile, "seeds", "", "seeds JSON file, or - for stdin (required)")

	var keyIDs []string
	var outDir string
	seal := &cobra.Command{
		Use:   "seal",
		Short: "Move loaded keys to the stateless mode: sealed blobs out, keys out of memory",
		Long: `Have the sidecar seal loaded keys under its local master key and forget
them (the stateless flow). The blobs are then the only way to use the keys:
they are written to --out as KEY_ID.sealed (mode 0600), or printed with
--json. Use them with 'dcaas encrypt|decrypt --sealed-key FILE'. A software
enclave's blobs do not survive a sidecar restart.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(keyIDs) == 0 {
				return errors.New("--key-id is required")
			}
			if outDir == "" && !c.json {
				return errors.New("give --out DIR (or --json): the sealed keys must be kept")
			}
			if outDir != "" {
				if err := os.MkdirAll(outDir, 0o700); err != nil {
					return err
				}
				for _, id := range keyIDs {
					if !safeName(id) {
						return fmt.Errorf("key id %q cannot be a file name", id)
					}
				}
			}
			sc, err := c.sidecarClient()
			if err != nil {
				return err
			}
			p, done := progress(cmd, "seal", len(keyIDs))
			sealed, err := client.Stateless(cmd.Context(), sc, keyIDs, p)
			done()
			// Whatever was sealed has left the sidecar: keep it even on error.
			type item struct {
				api.SealedKey
				File string `json:"file,omitempty"`
			}
			items := make([]item, len(sealed))
			var werr error
			for i, s := range sealed {
				items[i].SealedKey = s
				if outDir != "" {
					items[i].File = filepath.Join(outDir, s.KeyID+".sealed")
					werr = errors.Join(werr, writeNew(items[i].File, s.SealedKey, 0o600, true))
				}
			}
			perr := c.print(cmd, map[string]any{"sealed": items}, func(w io.Writer) {
				for _, it := range items {
					fmt.Fprintf(w, "%s sealed: %s\n", it.KeyID, it.File)
				}
			})
			return errors.Join(err, werr, perr)
		},
	}
	seal.Flags().StringArrayVar(&keyIDs, "key-id", nil, "a loaded key to seal (repeatable)")
	seal.Flags().StringVar(&outDir, "out", "", "directory for the sealed keys (KEY_ID.sealed, mode 0600)")

	cmd.AddCommand(rewrap, grant, seeds, seal)
	return cmd
}

// both connects to the KMS and the sidecar.
func (c *cliConn) both() (*client.KMS, *client.Sidecar, error) {
	k, err := c.kmsClient()
	if err != nil {
		return nil, nil, err
	}
	sc, err := c.sidecarClient()
	return k, sc, err
}

// load connects to the KMS and the sidecar, runs flow with a progress bar
// of total items named what, and prints the ids it loaded.
func (c *cliConn) load(cmd *cobra.Command, what string, total int,
	flow func(k *client.KMS, sc *client.Sidecar, p client.FlowOption) ([]string, error)) error {
	k, sc, err := c.both()
	if err != nil {
		return err
	}
	p, done := progress(cmd, what, total)
	ids, err := flow(k, sc, p)
	done()
	return c.loaded(cmd, ids, err)
}

// loaded prints the ids a flow loaded, also when it failed part way.
func (c *cliConn) loaded(cmd *cobra.Command, ids []string, err error) error {
	if ids == nil {
		ids = []string{}
	}
	if err != nil && len(ids) > 0 {
		fmt.Fprintf(cmd.ErrOrStderr(), "partly loaded: %s\n", strings.Join(ids, " "))
	}
	if err != nil {
		return err
	}
	return c.print(cmd, loadOutput{Loaded: ids}, func(w io.Writer) { printLoaded(w, ids) })
}
