package main

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/client"
)

// Certificate tools: `dcaas app cert …` (application client certificates)
// and `dcaas kms ca …` (the trust bundle and CA rotation).

func newAppCertCmd(c *cliConn) *cobra.Command {
	cmd := &cobra.Command{Use: "cert", Short: "Renew, list, revoke and issue application client certificates"}
	cmd.AddCommand(newAppCertRenewCmd(c), newAppCertListCmd(c), newAppCertRevokeCmd(c), newAppCertIssueCmd(c))
	return cmd
}

type certRenewOutput struct {
	DN            string    `json:"dn"`
	Serial        string    `json:"serial"`
	NotAfter      time.Time `json:"not_after"`
	CertFile      string    `json:"cert_file"`
	KeyFile       string    `json:"key_file,omitempty"`
	CAFile        string    `json:"ca_file,omitempty"`
	RevokedSerial string    `json:"revoked_serial,omitempty"`
}

func newAppCertRenewCmd(c *cliConn) *cobra.Command {
	var csrFile, outCert, outKey string
	var updateCA, revokeOld bool
	cmd := &cobra.Command{
		Use:   "renew",
		Short: "Renew the caller's own client certificate (the one of --cert/--key)",
		Long: `Renew the client certificate of --cert/--key, authenticated by it, and
write the new certificate and key in place of the old ones (or to --out-cert
and --out-key). Each file is replaced atomically (written to a temporary
file, synced, renamed), the key with mode 0600, the key first; the two
replacements are not one, so keep the old files until this command succeeded.
The private key is never printed.

With --csr the KMS certifies that CSR's key instead of making one: the new
certificate goes to --out-cert (required) and no key file is written.

The old certificate stays valid until it expires, unless --revoke-old, which
revokes it with the new one once the files are written. --update-ca writes
the KMS's trust bundle (every CA it trusts, two during a CA rotation) to the
--ca file.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var csrPEM []byte
			if csrFile != "" {
				if outCert == "" || outKey != "" {
					return errors.New("--csr needs --out-cert (the new certificate certifies the CSR's key, not --key's) and takes no --out-key")
				}
				var err error
				if csrPEM, err = os.ReadFile(csrFile); err != nil {
					return fmt.Errorf("--csr: %w", err)
				}
			}
			if revokeOld && csrFile != "" {
				return errors.New("--revoke-old needs the key the KMS makes; with --csr, revoke the old certificate with 'dcaas app cert revoke --serial' using the new one")
			}
			if updateCA && c.ca == "" {
				return errors.New("--update-ca needs --ca (the file to write the trust bundle to)")
			}
			if outCert == "" {
				outCert = c.cert
			}
			if outKey == "" && csrFile == "" {
				outKey = c.key
			}
			k, err := c.kmsClient()
			if err != nil {
				return err
			}
			defer k.Close()
			var oldSerial string
			if revokeOld {
				if oldSerial, err = certFileSerial(c.cert); err != nil {
					return err
				}
			}
			creds, err := k.RenewCertificate(cmd.Context(), string(csrPEM))
			if err != nil {
				return err
			}
			out := certRenewOutput{DN: creds.DN, Serial: creds.Serial, NotAfter: creds.NotAfter, CertFile: outCert}
			if creds.KeyPEM != "" {
				if err := writeNew(outKey, []byte(creds.KeyPEM), 0o600, true); err != nil {
					return err
				}
				out.KeyFile = outKey
			}
			if err := writeNew(outCert, []byte(creds.CertPEM), 0o644, true); err != nil {
				return err
			}
			if updateCA {
				if err := writeNew(c.ca, []byte(creds.CAPEM), 0o644, true); err != nil {
					return err
				}
				out.CAFile = c.ca
			}
			if revokeOld {
				if err := revokeWith(cmd, c, creds, oldSerial); err != nil {
					return fmt.Errorf("the new certificate is in %s, but revoking the old one (serial %s) failed: %w", outCert, oldSerial, err)
				}
				out.RevokedSerial = oldSerial
			}
			return c.print(cmd, out, func(w io.Writer) {
				fmt.Fprintf(w, "certificate renewed for %s: serial %s, valid until %s\ncertificate: %s\n", out.DN, out.Serial, out.NotAfter.Format(time.RFC3339), out.CertFile)
				if out.KeyFile != "" {
					printKeyFile(w, out.KeyFile)
				}
				if out.CAFile != "" {
					fmt.Fprintf(w, "CA bundle:   %s\n", out.CAFile)
				}
				if out.RevokedSerial != "" {
					fmt.Fprintf(w, "old certificate %s revoked\n", out.RevokedSerial)
				}
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&csrFile, "csr", "", "PEM certificate request: certify its key instead of having the KMS make one (needs --out-cert)")
	fl.StringVar(&outCert, "out-cert", "", "write the new certificate here (default: the --cert file)")
	fl.StringVar(&outKey, "out-key", "", "write the new private key here, mode 0600 (default: the --key file)")
	fl.BoolVar(&updateCA, "update-ca", false, "write the KMS's trust bundle to the --ca file")
	fl.BoolVar(&revokeOld, "revoke-old", false, "revoke the old certificate once the new one is written")
	return cmd
}

// revokeWith revokes serial of the caller, authenticating with the new
// credentials.
func revokeWith(cmd *cobra.Command, c *cliConn, creds *api.AppCredentials, serial string) error {
	k, err := client.NewKMS(c.kms, []byte(creds.CAPEM), []byte(creds.CertPEM), []byte(creds.KeyPEM))
	if err != nil {
		return err
	}
	defer k.Close()
	_, err = k.RevokeCertificates(cmd.Context(), "", "", api.RevokeCertificatesRequest{Serial: serial})
	return err
}

// certFileSerial reads the serial of the certificate in a PEM file.
func certFileSerial(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--cert: %w", err)
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return "", fmt.Errorf("--cert %s holds no PEM CERTIFICATE", path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return "", fmt.Errorf("--cert %s: %w", path, err)
	}
	return cert.SerialNumber.Text(16), nil
}

// appFlags names an application (--tenant, --app) or, with neither, the
// caller.
func appFlags(cmd *cobra.Command, tenant, app *string) {
	cmd.Flags().StringVar(tenant, "tenant", "", "tenant of the application (with --app; default: the caller itself)")
	cmd.Flags().StringVar(app, "app", "", "the application (with --tenant; default: the caller itself)")
}

func newAppCertListCmd(c *cliConn) *cobra.Command {
	var tenant, app string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List an application's client certificates (default: the caller's own)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return kmsCall(cmd, c, func(k *client.KMS) (api.AppCertificates, error) {
				list, err := k.Certificates(cmd.Context(), tenant, app)
				if list == nil {
					list = []api.AppCertificate{}
				}
				return api.AppCertificates{Certificates: list}, err
			}, func(w io.Writer, l api.AppCertificates) {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "SERIAL\tNOT AFTER\tREVOKED")
				for _, cert := range l.Certificates {
					revoked := "-"
					if cert.RevokedAt != nil {
						revoked = cert.RevokedAt.Format(time.RFC3339)
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\n", cert.Serial, cert.NotAfter.Format(time.RFC3339), revoked)
				}
				tw.Flush()
			})
		},
	}
	appFlags(cmd, &tenant, &app)
	return cmd
}

func newAppCertRevokeCmd(c *cliConn) *cobra.Command {
	var tenant, app, serial string
	var all bool
	cmd := &cobra.Command{
		Use:   "revoke (--serial SERIAL | --all)",
		Short: "Revoke an application's client certificates (default: the caller's own)",
		Long: `Revoke one client certificate (--serial, in hex: as 'dcaas app cert list'
or 'openssl x509 -serial' prints it) or every one (--all) of the application
--tenant/--app names (an admin; an application may name itself), or of the
caller. The KMS refuses a revoked certificate from its next request on.
--all includes the certificate you may be using.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (serial == "") == !all {
				return errors.New("give exactly one of --serial and --all")
			}
			return kmsCall(cmd, c, func(k *client.KMS) (api.RevokedCertificates, error) {
				revoked, err := k.RevokeCertificates(cmd.Context(), tenant, app, api.RevokeCertificatesRequest{Serial: serial, All: all})
				if revoked == nil {
					revoked = []string{}
				}
				return api.RevokedCertificates{Revoked: revoked}, err
			}, func(w io.Writer, r api.RevokedCertificates) {
				if len(r.Revoked) == 0 {
					fmt.Fprintln(w, "no certificate left to revoke")
				}
				for _, s := range r.Revoked {
					fmt.Fprintf(w, "certificate %s revoked\n", s)
				}
			})
		},
	}
	cmd.Flags().StringVar(&serial, "serial", "", "the serial number of the certificate to revoke")
	cmd.Flags().BoolVar(&all, "all", false, "revoke every certificate of the application")
	appFlags(cmd, &tenant, &app)
	return cmd
}

func newAppCertIssueCmd(c *cliConn) *cobra.Command {
	var tenant string
	var cf credFlags
	cmd := &cobra.Command{
		Use:   "issue NAME",
		Short: "Issue a new client certificate to an existing application (admin)",
		Long: `Issue a new client certificate to application NAME of --tenant, for one
whose certificate expired, was revoked or was lost; its earlier
certificates are not revoked. Writes NAME-cert.pem, NAME-key.pem (mode 0600;
only without --csr) and ca.pem (the trust bundle) into --out-dir, as
'dcaas app create' does.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := checkAppName(name, tenant); err != nil {
				return err
			}
			out, creds, err := cf.issue(c, name, tenant, func(k *client.KMS, csrPEM string) (*api.AppCredentials, error) {
				return k.IssueAppCertificate(cmd.Context(), tenant, name, csrPEM)
			})
			if err != nil {
				return err
			}
			return c.print(cmd, out, func(w io.Writer) {
				fmt.Fprintf(w, "certificate issued to %s: serial %s, valid until %s\n", creds.DN, creds.Serial, creds.NotAfter.Format(time.RFC3339))
				out.printFiles(w)
			})
		},
	}
	cmd.Flags().StringVar(&tenant, "tenant", "", "tenant of the application (required)")
	cf.flags(cmd.Flags())
	return cmd
}

// checkAppName checks the NAME and --tenant of a command that names an
// application of a tenant: the name becomes the names of its files.
func checkAppName(name, tenant string) error {
	if !safeName(name) {
		return fmt.Errorf("app name %q: use letters, digits, '.', '_' and '-'", name)
	}
	if tenant == "" {
		return errors.New("--tenant is required")
	}
	return nil
}

// credFiles names the credential files of app name in dir.
func credFiles(dir, name, tenant string, withKey bool) appOutput {
	out := appOutput{Tenant: tenant, CertFile: filepath.Join(dir, name+"-cert.pem"), CAFile: filepath.Join(dir, "ca.pem")}
	if withKey {
		out.KeyFile = filepath.Join(dir, name+"-key.pem")
	}
	return out
}

// credFlags are the flags of the commands that have the KMS issue
// credentials into files (app create, admin create, app cert issue).
type credFlags struct {
	csrFile, outDir string
	force           bool
}

func (f *credFlags) flags(fl *pflag.FlagSet) {
	fl.StringVar(&f.csrFile, "csr", "", "PEM certificate request: the KMS certifies its key instead of making one")
	fl.StringVar(&f.outDir, "out-dir", ".", "directory for the credential files")
	fl.BoolVar(&f.force, "force", false, "replace existing credential files")
}

// issue has create issue the credentials of name (an app of tenant, or an
// admin), for the key of the --csr request or, without one, a key the KMS
// makes, and writes them into --out-dir, refusing first what it could not
// write. It returns the files written and the credentials.
func (f *credFlags) issue(c *cliConn, name, tenant string,
	create func(k *client.KMS, csrPEM string) (*api.AppCredentials, error)) (appOutput, *api.AppCredentials, error) {
	out := credFiles(f.outDir, name, tenant, f.csrFile == "")
	var csrPEM string
	if f.csrFile != "" {
		csr, err := os.ReadFile(f.csrFile)
		if err != nil {
			return out, nil, fmt.Errorf("--csr: %w", err)
		}
		csrPEM = string(csr)
	}
	// Refuse before the KMS issues anything we could not write.
	if err := out.prepare(f.force); err != nil {
		return out, nil, err
	}
	k, err := c.kmsClient()
	if err != nil {
		return out, nil, err
	}
	defer k.Close()
	creds, err := create(k, csrPEM)
	if err != nil {
		return out, nil, err
	}
	if err := out.write(creds, f.force); err != nil {
		return out, nil, err
	}
	return out, creds, nil
}

// printFiles prints the credential files of o, one a line.
func (o *appOutput) printFiles(w io.Writer) {
	fmt.Fprintf(w, "certificate: %s\n", o.CertFile)
	if o.KeyFile != "" {
		printKeyFile(w, o.KeyFile)
	}
	fmt.Fprintf(w, "CA:          %s\n", o.CAFile)
}

// printKeyFile prints the line of a private key file written, with the
// mode the file has (read back, not assumed).
func printKeyFile(w io.Writer, path string) {
	mode := "unreadable"
	if fi, err := os.Stat(path); err == nil {
		mode = fmt.Sprintf("mode %04o", fi.Mode().Perm())
	}
	fmt.Fprintf(w, "private key: %s (%s)\n", path, mode)
}

// prepare makes ready, before the KMS issues anything that could then not
// be written, for the credential files: it refuses files that exist
// (unless force) and creates their directory.
func (o *appOutput) prepare(force bool) error {
	for _, p := range []string{o.CertFile, o.KeyFile} {
		if err := refuseExisting(p, force); err != nil {
			return err
		}
	}
	return os.MkdirAll(filepath.Dir(o.CertFile), 0o700)
}

// write writes creds into the files of o (the key with mode 0600) and
// records the DN.
func (o *appOutput) write(creds *api.AppCredentials, force bool) error {
	o.DN = creds.DN
	if o.KeyFile != "" {
		if err := writeNew(o.KeyFile, []byte(creds.KeyPEM), 0o600, force); err != nil {
			return err
		}
	}
	if err := writeNew(o.CertFile, []byte(creds.CertPEM), 0o644, force); err != nil {
		return err
	}
	return writeNew(o.CAFile, []byte(creds.CAPEM), 0o644, true)
}

func newKMSCACmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "Show the KMS trust bundle and rotate the CA (prepare, activate, retire)",
		Long: `Show the KMS's trust bundle, and rotate its CA in three admin steps:

  prepare   a new CA joins the trust bundle; the current CA still issues.
            Hand the bundle (--bundle-out) to every peer of the KMS: sidecars,
            applications (their --ca file), load balancers, monitoring.
  activate  the new CA issues every new certificate; the KMS re-issues its own
            TLS certificate from it. The old CA stays trusted. Renew the
            certificates the old CA issued ('dcaas app cert renew', sidecars,
            the admin's own).
  retire    the old CA leaves the bundle: what only it issued is refused.

These talk to the KMS API with --kms, --ca, --cert and --key (the admin's);
show needs no certificate.`,
	}
	c := connFlags(cmd)
	var bundleOut string
	cmd.PersistentFlags().StringVar(&bundleOut, "bundle-out", "", "also write the trust bundle (PEM) to this file")
	step := func(use, short string, call func(*client.KMS, *cobra.Command) (*api.CATrust, error), anonymous bool) *cobra.Command {
		return &cobra.Command{
			Use:   use,
			Short: short,
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				var k *client.KMS
				var err error
				if anonymous {
					k, err = c.kmsClientOrAnonymous()
				} else {
					k, err = c.kmsClient()
				}
				if err != nil {
					return err
				}
				defer k.Close()
				tr, err := call(k, cmd)
				if err != nil {
					return err
				}
				if bundleOut != "" {
					if err := writeNew(bundleOut, []byte(tr.BundlePEM), 0o644, true); err != nil {
						return err
					}
				}
				return c.print(cmd, tr, func(w io.Writer) {
					fmt.Fprintf(w, "phase: %s\n", tr.Phase)
					tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "SERIAL\tSUBJECT\tNOT AFTER\tISSUING")
					for _, ca := range tr.CAs {
						fmt.Fprintf(tw, "%s\t%s\t%s\t%t\n", ca.Serial, ca.Subject, ca.NotAfter.Format(time.RFC3339), ca.Issuing)
					}
					tw.Flush()
					if bundleOut != "" {
						fmt.Fprintf(w, "trust bundle written to %s\n", bundleOut)
					}
				})
			},
		}
	}
	cmd.AddCommand(
		step("show", "Print the trusted CAs, which one issues, and the rotation phase", func(k *client.KMS, cmd *cobra.Command) (*api.CATrust, error) {
			return k.CA(cmd.Context())
		}, true),
		step("prepare", "Generate a new CA and add it to the trust bundle (it does not issue yet)", func(k *client.KMS, cmd *cobra.Command) (*api.CATrust, error) {
			return k.PrepareCA(cmd.Context())
		}, false),
		step("activate", "Make the prepared CA issue; the old one stays trusted", func(k *client.KMS, cmd *cobra.Command) (*api.CATrust, error) {
			return k.ActivateCA(cmd.Context())
		}, false),
		step("retire", "Remove the old CA from the trust bundle; what only it issued is refused", func(k *client.KMS, cmd *cobra.Command) (*api.CATrust, error) {
			return k.RetireCA(cmd.Context())
		}, false),
	)
	return cmd
}
