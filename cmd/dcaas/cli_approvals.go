package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/client"
)

// newApprovalCmd is `dcaas approval`: quorum approvals of a tenant's
// sensitive actions (issue 16), and the tenant setting that requires them.
func newApprovalCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "approval",
		Short: "Quorum approvals: request, approve and run a tenant's sensitive actions (M of N admins)",
		Long: `When a tenant has an approval policy (dcaas approval policy set), its
exports, key disables, retired versions, loosened key policies and master
key rotations need M of its N named admins to approve them:

  dcaas approval request ACTION ...   the requester asks (prints the id)
  dcaas approval approve ID           each approver, as themselves
  dcaas approval run ID               the requester, once approved: runs it once

Actions: datakey.export, datakey.disable, datakey.min_decryption_version,
datakey.set_policy, tenant.rotate_master_key, tenant.set_approval_policy,
admin.create, audit.prune (the last two while any tenant has a quorum).`,
	}
	c := connFlags(cmd)

	var tenant, keyID, body, bodyFile string
	request := &cobra.Command{
		Use:   "request ACTION",
		Short: "Ask the quorum to approve ACTION with its exact parameters",
		Long: `Ask the quorum to approve ACTION with its exact parameters: --tenant (the
route's {tenant}), --key-id (its {key_id}) and the route's JSON body
(--body, or --body-file, "-" for standard input). Examples:

  dcaas approval request datakey.disable --key-id key_...
  dcaas approval request datakey.min_decryption_version --key-id key_... --body '{"version":3}'
  dcaas approval request tenant.rotate_master_key --tenant acme
  dcaas approval request tenant.set_approval_policy --tenant acme --body '{"quorum":3,"approvers":[...]}'
  dcaas approval request admin.create --body '{"name":"erin"}'
  dcaas approval request audit.prune --body '{"through":18200,"hash":"<base64>"}'
  dcaas approval request datakey.export --body-file export.json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := api.ApprovalRequest{Action: args[0], Tenant: tenant, KeyID: keyID}
			switch {
			case body != "" && bodyFile != "":
				return errors.New("give --body or --body-file, not both")
			case body != "":
				req.Request = json.RawMessage(body)
			case bodyFile == "-":
				b, err := io.ReadAll(cmd.InOrStdin())
				if err != nil {
					return err
				}
				req.Request = b
			case bodyFile != "":
				b, err := os.ReadFile(bodyFile)
				if err != nil {
					return fmt.Errorf("--body-file: %w", err)
				}
				req.Request = b
			}
			if len(req.Request) > 0 && !json.Valid(req.Request) {
				return errors.New("the body is not valid JSON")
			}
			return kmsCall(cmd, c, func(k *client.KMS) (*api.Approval, error) {
				return k.RequestApproval(cmd.Context(), req)
			}, func(w io.Writer, a *api.Approval) {
				fmt.Fprintf(w, "approval %s requested: %s, %d of %d approvals, expires %s\n", a.ID, a.Action, len(a.Approvals), a.Quorum, a.ExpiresAt.Format(time.RFC3339))
			})
		},
	}
	fl := request.Flags()
	fl.StringVar(&tenant, "tenant", "", "the route's {tenant} (tenant actions)")
	fl.StringVar(&keyID, "key-id", "", "the route's {key_id} (key actions)")
	fl.StringVar(&body, "body", "", "the route's JSON body")
	fl.StringVar(&bodyFile, "body-file", "", `file holding the route's JSON body ("-": standard input)`)

	one := func(use, short string, do func(k *client.KMS, cmd *cobra.Command, id string) (*api.Approval, error)) *cobra.Command {
		return &cobra.Command{
			Use:   use + " ID",
			Short: short,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return kmsCall(cmd, c, func(k *client.KMS) (*api.Approval, error) {
					return do(k, cmd, args[0])
				}, printApproval)
			},
		}
	}
	approve := one("approve", "Approve a request, as one of its approvers", func(k *client.KMS, cmd *cobra.Command, id string) (*api.Approval, error) {
		return k.Approve(cmd.Context(), id)
	})
	deny := one("deny", "Deny a request, as one of its approvers (it ends)", func(k *client.KMS, cmd *cobra.Command, id string) (*api.Approval, error) {
		return k.Deny(cmd.Context(), id)
	})
	cancel := one("cancel", "Withdraw your own request", func(k *client.KMS, cmd *cobra.Command, id string) (*api.Approval, error) {
		return k.CancelApproval(cmd.Context(), id)
	})
	show := one("show", "Show a request: its action, parameters, approvals and state", func(k *client.KMS, cmd *cobra.Command, id string) (*api.Approval, error) {
		return k.Approval(cmd.Context(), id)
	})

	var out string
	var force bool
	run := &cobra.Command{
		Use:   "run ID",
		Short: "Run an approved request's action, once, as its requester",
		Long: `Run the action of an approved request exactly as it was approved, with its
id (the Dcaas-Approval header). It runs once; the answer of the route is
printed as JSON, or written to --out (mode 0600: an export's wrapped key,
a new admin's private key).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := c.kmsClient()
			if err != nil {
				return err
			}
			a, err := k.Approval(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if out != "" {
				// Refuse before the action runs if the answer cannot be kept.
				if err := refuseExisting(out, force); err != nil {
					return err
				}
			}
			res, err := k.RunApproval(cmd.Context(), a)
			if err != nil {
				return err
			}
			if out != "" {
				if err := writeNew(out, append(res, '\n'), 0o600, force); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "approval %s executed (%s); answer written to %s\n", a.ID, a.Action, out)
				return nil
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s\n", res)
			return err
		},
	}
	run.Flags().StringVar(&out, "out", "", "write the route's answer to this file (mode 0600)")
	run.Flags().BoolVar(&force, "force", false, "replace an existing --out file")

	var listTenant string
	var limit int
	list := &cobra.Command{
		Use:   "list",
		Short: "List requests, newest first (an admin's of every tenant, a custodian's own)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return kmsCall(cmd, c, func(k *client.KMS) (api.ApprovalList, error) {
				as, err := k.Approvals(cmd.Context(), listTenant, limit)
				return api.ApprovalList{Approvals: as}, err
			}, func(w io.Writer, l api.ApprovalList) {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tACTION\tTENANT\tKEY\tREQUESTER\tSTATE\tAPPROVALS\tEXPIRES")
				for _, a := range l.Approvals {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d/%d\t%s\n", a.ID, a.Action, a.Tenant, a.KeyID, a.Requester, a.State, len(a.Approvals), a.Quorum, a.ExpiresAt.Format(time.RFC3339))
				}
				tw.Flush()
			})
		},
	}
	list.Flags().StringVar(&listTenant, "tenant", "", "only this tenant's (admins)")
	list.Flags().IntVar(&limit, "limit", 0, "at most this many (default the KMS's, 100)")

	cmd.AddCommand(request, approve, deny, cancel, show, run, list, newApprovalPolicyCmd(c))
	return cmd
}

func newApprovalPolicyCmd(c *cliConn) *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Short: "Read or set a tenant's approval policy (admin)"}
	show := &cobra.Command{
		Use:   "show TENANT",
		Short: "Print a tenant's quorum and approvers",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return kmsCall(cmd, c, func(k *client.KMS) (*api.ApprovalPolicy, error) {
				return k.ApprovalPolicy(cmd.Context(), args[0])
			}, func(w io.Writer, p *api.ApprovalPolicy) { printApprovalPolicy(w, args[0], p) })
		},
	}
	var quorum int
	var approvers []string
	var approval string
	set := &cobra.Command{
		Use:   "set TENANT --quorum M --approver DN ...",
		Short: "Require M of the named admins to approve the tenant's sensitive actions",
		Long: `Require --quorum M of the --approver admins (DNs such as CN=alice,O=dcaas,
repeatable; each must be registered: dcaas admin create) to approve the
tenant's sensitive actions; --quorum 0 and no approvers turns it off. Once the
tenant has a quorum, a change needs its approval: request one
(dcaas approval request tenant.set_approval_policy --tenant T --body ...) and
pass its id with --approval, or use dcaas approval run.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if approval != "" {
				ctx = client.WithApproval(ctx, approval)
			}
			return kmsCall(cmd, c, func(k *client.KMS) (*api.ApprovalPolicy, error) {
				return k.SetApprovalPolicy(ctx, args[0], quorum, approvers)
			}, func(w io.Writer, p *api.ApprovalPolicy) { printApprovalPolicy(w, args[0], p) })
		},
	}
	set.Flags().IntVar(&quorum, "quorum", 0, "approvals needed (0: none)")
	set.Flags().StringArrayVar(&approvers, "approver", nil, "an approver's DN (CN=NAME,O=dcaas), repeatable")
	set.Flags().StringVar(&approval, "approval", "", "id of the approved request for this change")
	cmd.AddCommand(show, set)
	return cmd
}

func printApprovalPolicy(w io.Writer, tenant string, p *api.ApprovalPolicy) {
	if p.Quorum == 0 {
		fmt.Fprintf(w, "tenant %s: no approvals required\n", tenant)
		return
	}
	fmt.Fprintf(w, "tenant %s: %d of %d approvers (policy version %d): %s\n", tenant, p.Quorum, len(p.Approvers), p.Version, strings.Join(p.Approvers, "; "))
}

func printApproval(w io.Writer, a *api.Approval) {
	fmt.Fprintf(w, "approval:  %s\naction:    %s\n", a.ID, a.Action)
	if a.Tenant != "" {
		fmt.Fprintf(w, "tenant:    %s\n", a.Tenant)
	}
	if a.KeyID != "" {
		fmt.Fprintf(w, "key:       %s\n", a.KeyID)
	}
	if len(a.Request) > 0 {
		fmt.Fprintf(w, "request:   %s\n", a.Request)
	}
	fmt.Fprintf(w, "sha-256:   %s\nrequester: %s\nstate:     %s\napprovals: %d of %d\n", a.Hash, a.Requester, a.State, len(a.Approvals), a.Quorum)
	for _, v := range a.Approvals {
		fmt.Fprintf(w, "  %s at %s\n", v.Approver, v.At.Format(time.RFC3339))
	}
	fmt.Fprintf(w, "expires:   %s\n", a.ExpiresAt.Format(time.RFC3339))
	if a.ClosedAt != nil {
		fmt.Fprintf(w, "closed:    %s by %s\n", a.ClosedAt.Format(time.RFC3339), a.ClosedBy)
	}
}
