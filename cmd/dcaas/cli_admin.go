package main

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/client"
)

func newTenantCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "tenant", Short: "Create tenants and rotate their master keys (admin)"}
	c := connFlags(cmd)
	cmd.AddCommand(&cobra.Command{
		Use:   "create NAME",
		Short: "Register a tenant with its first master key and HMAC key",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return kmsCall(cmd, c, func(k *client.KMS) (*api.Tenant, error) {
				return k.CreateTenant(cmd.Context(), args[0])
			}, func(w io.Writer, t *api.Tenant) {
				fmt.Fprintf(w, "tenant %s created (master key version %d)\n", t.Name, t.MasterKeyVersion)
			})
		},
	}, &cobra.Command{
		Use:   "rotate NAME",
		Short: "Make a new master key version current; existing EKBs still open",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return kmsCall(cmd, c, func(k *client.KMS) (api.Tenant, error) {
				v, err := k.RotateMasterKey(cmd.Context(), args[0])
				return api.Tenant{Name: args[0], MasterKeyVersion: v}, err
			}, func(w io.Writer, t api.Tenant) {
				fmt.Fprintf(w, "tenant %s: master key version %d is current\n", t.Name, t.MasterKeyVersion)
			})
		},
	})
	return cmd
}

type appOutput struct {
	DN       string `json:"dn"`
	Tenant   string `json:"tenant"`
	Role     string `json:"role"`
	CertFile string `json:"cert_file"`
	KeyFile  string `json:"key_file,omitempty"`
	CAFile   string `json:"ca_file"`
}

func newAppCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "app", Short: "Register custodian and pipeline applications (admin) and manage their certificates"}
	c := connFlags(cmd)
	var tenant, role string
	var cf credFlags
	create := &cobra.Command{
		Use:   "create NAME",
		Short: "Register an application and write its certificate, key and the CA",
		Long: `Register an application of a tenant and write its credentials into
--out-dir: NAME-cert.pem, NAME-key.pem (mode 0600; only when the KMS made the
key pair, i.e. without --csr) and ca.pem. Existing files are kept unless
--force. The private key is never printed.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := checkAppName(name, tenant); err != nil {
				return err
			}
			return registerIdentity(cmd, c, "app", name, tenant, role, &cf, func(k *client.KMS, csrPEM string) (*api.AppCredentials, error) {
				return k.CreateApp(cmd.Context(), tenant, api.CreateAppRequest{Name: name, Role: api.Role(role), CSRPEM: csrPEM})
			})
		},
	}
	fl := create.Flags()
	fl.StringVar(&tenant, "tenant", "", "tenant of the application (required)")
	fl.StringVar(&role, "role", string(api.RoleCustodian), "custodian or pipeline")
	cf.flags(fl)
	cmd.AddCommand(create, newAppCertCmd(c))
	return cmd
}

func newAdminCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "admin", Short: "Register more admins (admin): one identity per person, for key ceremonies"}
	c := connFlags(cmd)
	var cf credFlags
	create := &cobra.Command{
		Use:   "create NAME",
		Short: "Register an admin and write its certificate, key and the CA",
		Long: `Register another admin, with the subject CN=NAME,O=dcaas, and write its
credentials into --out-dir: NAME-cert.pem, NAME-key.pem (mode 0600; only when
the KMS made the key pair, i.e. without --csr) and ca.pem. For a ceremony,
let each person make a key and a CSR on their own machine and pass --csr:
the private key then never leaves it.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if !safeName(name) {
				return fmt.Errorf("admin name %q: use letters, digits, '.', '_' and '-'", name)
			}
			return registerIdentity(cmd, c, "admin", name, "", string(api.RoleAdmin), &cf, func(k *client.KMS, csrPEM string) (*api.AppCredentials, error) {
				return k.CreateAdmin(cmd.Context(), api.CreateAdminRequest{Name: name, CSRPEM: csrPEM})
			})
		},
	}
	cf.flags(create.Flags())
	cmd.AddCommand(create)
	return cmd
}

// registerIdentity registers an app of tenant, or an admin (no tenant),
// with create and prints where its credentials went.
func registerIdentity(cmd *cobra.Command, c *cliConn, what, name, tenant, role string, cf *credFlags,
	create func(k *client.KMS, csrPEM string) (*api.AppCredentials, error)) error {
	out, creds, err := cf.issue(c, name, tenant, create)
	if err != nil {
		return err
	}
	out.Role = role
	return c.print(cmd, out, func(w io.Writer) {
		fmt.Fprintf(w, "%s %s registered as %s\n", what, name, creds.DN)
		out.printFiles(w)
	})
}

type tokenOutput struct {
	Token       string    `json:"token,omitempty"`
	TokenFile   string    `json:"token_file,omitempty"`
	ExpiresAt   time.Time `json:"expires_at"`
	CustodianDN string    `json:"custodian_dn"`
}

func newTokenCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Mint one-time sidecar enrollment tokens"}
	c := connFlags(cmd)
	var dn, outFile string
	var ttl time.Duration
	var force bool
	create := &cobra.Command{
		Use:   "create",
		Short: "Mint an enrollment token (secret zero) for a sidecar",
		Long: `Mint a one-time enrollment token for a sidecar. A custodian mints for itself;
a pipeline or admin names the custodian with --custodian-dn.

The token is a secret. With --out it is written to that file (mode 0600) and
not printed; hand the file to the sidecar as --enroll-token-file.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return kmsCall(cmd, c, func(k *client.KMS) (tokenOutput, error) {
				tok, err := k.CreateEnrollmentToken(cmd.Context(), api.CreateTokenRequest{CustodianDN: dn, TTLSeconds: int(ttl / time.Second)})
				if err != nil {
					return tokenOutput{}, err
				}
				out := tokenOutput{ExpiresAt: tok.ExpiresAt, CustodianDN: tok.CustodianDN}
				if outFile == "" {
					out.Token = tok.Token
					return out, nil
				}
				out.TokenFile = outFile
				return out, writeNew(outFile, []byte(tok.Token+"\n"), 0o600, force)
			}, func(w io.Writer, out tokenOutput) {
				if out.TokenFile != "" {
					fmt.Fprintf(w, "token for %s written to %s (expires %s)\n", out.CustodianDN, out.TokenFile, out.ExpiresAt.Format(time.RFC3339))
					return
				}
				fmt.Fprintln(w, out.Token)
			})
		},
	}
	create.Flags().StringVar(&dn, "custodian-dn", "", "custodian the sidecar will serve (default: the caller)")
	create.Flags().DurationVar(&ttl, "ttl", 0, "lifetime of the token (default: the KMS's, 10m)")
	create.Flags().StringVar(&outFile, "out", "", "write the token to this file (mode 0600) instead of stdout")
	create.Flags().BoolVar(&force, "force", false, "replace an existing --out file")
	cmd.AddCommand(create)
	return cmd
}

func newInstancesCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "instances", Short: "List and revoke enrolled sidecars"}
	c := connFlags(cmd)
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List sidecar instances (all for an admin, its own for a custodian)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return kmsCall(cmd, c, func(k *client.KMS) (api.Instances, error) {
				list, err := k.ListInstances(cmd.Context())
				return api.Instances{Instances: list}, err
			}, printInstances)
		},
	}, newInstancesRevokeCmd(c))
	return cmd
}

// printInstances is instances list's table: with each TPM instance's
// attestation key and the manufacturer that vouched for it ("-" for none),
// what instances revoke --ak and --manufacturer take.
func printInstances(w io.Writer, l api.Instances) {
	orNone := func(s string) string { return cmp.Or(s, "-") }
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "INSTANCE\tCUSTODIAN\tENCLAVE\tENROLLED\tREVOKED\tAK\tMANUFACTURER")
	for _, in := range l.Instances {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%t\t%s\t%s\n", in.InstanceID, in.CustodianDN, in.Enclave, in.EnrolledAt.Format(time.RFC3339), in.Revoked,
			orNone(in.AKFingerprint), orNone(in.Manufacturer))
	}
	tw.Flush()
}

func newInstancesRevokeCmd(c *cliConn) *cobra.Command {
	var ak, manufacturer string
	cmd := &cobra.Command{
		Use:   "revoke (INSTANCE_ID | --ak FINGERPRINT | --manufacturer NAME)",
		Short: "Revoke a sidecar instance, or every one of a TPM platform or manufacturer, with its certificates; each stops serving at its next poll",
		Long: `Revoke one sidecar instance and its certificates, or (admin) every live
instance enrolled with a TPM attestation key (--ak: the ak_fingerprint of
the attestation policy and of 'dcaas instances list'), a platform
taken out of service or no longer trusted, or every live instance whose
attestation key a TPM manufacturer's EK certificate vouched for (--manufacturer:
its name in the policy, the manufacturer of 'dcaas instances list'),
a manufacturer no longer trusted. Removing an AK or a manufacturer from the
policy stops new enrollments and re-attestations only; what its sidecars
hold stays until revoked.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			given := 0
			for _, set := range []bool{len(args) == 1, ak != "", manufacturer != ""} {
				if set {
					given++
				}
			}
			if given != 1 {
				return errors.New("give exactly one of INSTANCE_ID, --ak and --manufacturer")
			}
			if ak != "" || manufacturer != "" {
				none := "no live instance of that attestation key"
				if manufacturer != "" {
					none = "no live instance vouched for by that manufacturer"
				}
				return kmsCall(cmd, c, func(k *client.KMS) (api.RevokedInstances, error) {
					var revoked []string
					var err error
					if ak != "" {
						revoked, err = k.RevokePlatform(cmd.Context(), ak)
					} else {
						revoked, err = k.RevokeManufacturer(cmd.Context(), manufacturer)
					}
					return api.RevokedInstances{Revoked: revoked}, err
				}, func(w io.Writer, r api.RevokedInstances) {
					if len(r.Revoked) == 0 {
						fmt.Fprintln(w, none)
					}
					for _, id := range r.Revoked {
						fmt.Fprintf(w, "instance %s revoked\n", id)
					}
				})
			}
			return kmsCall(cmd, c, func(k *client.KMS) (map[string]any, error) {
				return map[string]any{"instance_id": args[0], "revoked": true}, k.RevokeInstance(cmd.Context(), args[0])
			}, func(w io.Writer, _ map[string]any) {
				fmt.Fprintf(w, "instance %s revoked\n", args[0])
			})
		},
	}
	cmd.Flags().StringVar(&ak, "ak", "", "revoke every live instance enrolled with this TPM attestation key fingerprint (admin)")
	cmd.Flags().StringVar(&manufacturer, "manufacturer", "", "revoke every live instance whose attestation key this TPM manufacturer vouched for (admin)")
	return cmd
}

func newAuditListCmd() *cobra.Command {
	var after int64
	var limit int
	cmd := &cobra.Command{
		Use:   "list",
		Short: "Print the KMS audit log through the API (admin)",
		Args:  cobra.NoArgs,
	}
	c := connFlags(cmd)
	cmd.Flags().Int64Var(&after, "after", 0, "start after this record number")
	cmd.Flags().IntVar(&limit, "limit", 0, "print at most this many records (0: all)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return kmsCall(cmd, c, func(k *client.KMS) (api.AuditPage, error) {
			var recs []api.AuditRecord
			next := after
			for limit == 0 || len(recs) < limit {
				page, err := k.Audit(cmd.Context(), next)
				if err != nil {
					return api.AuditPage{}, err
				}
				// Reads are audited too: a page of nothing but reads is the end.
				if !slices.ContainsFunc(page.Records, func(r api.AuditRecord) bool { return r.Action != "audit.read" }) {
					break
				}
				recs = append(recs, page.Records...)
				next = page.Next
			}
			if limit > 0 && len(recs) > limit {
				recs = recs[:limit]
				next = recs[len(recs)-1].Seq
			}
			if recs == nil {
				recs = []api.AuditRecord{}
			}
			return api.AuditPage{Records: recs, Next: next}, nil
		}, func(w io.Writer, p api.AuditPage) {
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SEQ\tTIME\tCALLER\tACTION\tKEY\tOUTCOME\tCODE")
			for _, r := range p.Records {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Seq, r.Time.Format(time.RFC3339), r.Caller, r.Action, r.KeyID, r.Outcome, r.Code)
			}
			tw.Flush()
		})
	}
	return cmd
}
