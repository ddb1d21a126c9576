package main

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/client"
)

// newComponentsCmd is `dcaas key components`: enter a key in components
// (split knowledge), each by a different admin.
func newComponentsCmd(c *cliConn) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "components",
		Short: "Enter a key in components, each by a different admin, checked by key check values",
	}

	var req api.StartComponentsRequest
	var params keyParams
	start := &cobra.Command{
		Use:   "start",
		Short: "Start entering a key in components (a custodian for itself, an admin with --tenant and --owner)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := params.apply(&req.CreateDataKeyRequest); err != nil {
				return err
			}
			return kmsCall(cmd, c, func(k *client.KMS) (*api.ComponentCeremony, error) {
				return k.StartComponents(cmd.Context(), req)
			}, func(w io.Writer, cr *api.ComponentCeremony) {
				fmt.Fprintf(w, "ceremony %s: %d components of a %s key for %s in tenant %s, until %s\n",
					cr.ID, cr.Components, cr.Type, cr.Owner, cr.Tenant, cr.ExpiresAt.Format(time.RFC3339))
				fmt.Fprintf(w, "each admin now runs: dcaas key components add %s --kcv KCV [--component-file FILE]\n", cr.ID)
			})
		},
	}
	fl := start.Flags()
	fl.StringVar((*string)(&req.Type), "type", string(api.KeyAES256GCM), "aes-256-gcm, hmac-sha256 or aes-256-kbpk")
	fl.IntVar(&req.Components, "components", 2, "number of components, 2 to 9, each entered by a different admin")
	fl.StringVar(&req.ExpectedKCV, "expected-kcv", "", "the key check value the finished key must have (six hex digits)")
	fl.StringVar(&req.Tenant, "tenant", "", "the key's tenant (admins)")
	fl.StringVar(&req.Owner, "owner", "", "the custodian app that will own the key (admins)")
	params.flags(fl)
	fl.BoolVar(&req.Exportable, "exportable", false, "allow the owner to export the key")

	var file, kcv string
	add := &cobra.Command{
		Use:   "add CEREMONY_ID",
		Short: "Enter one component (admins; from --component-file or a prompt without echo, never a flag)",
		Long: `Enter one component of a key being entered in components. The component is
hex (spaces and line breaks are ignored), read from --component-file or, without
it, typed at a prompt that does not echo; --kcv is the component's key check
value, which the KMS checks before it accepts the component.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if kcv == "" {
				return errors.New("--kcv is required: the component's key check value, six hex digits")
			}
			comp, err := readComponent(cmd, file)
			if err != nil {
				return err
			}
			defer clear(comp)
			return kmsCall(cmd, c, func(k *client.KMS) (*api.ComponentCeremony, error) {
				return k.AddComponent(cmd.Context(), args[0], comp, kcv)
			}, func(w io.Writer, cr *api.ComponentCeremony) {
				n := len(cr.Entered)
				if cr.State == api.CeremonyComplete {
					fmt.Fprintf(w, "component %d of %d accepted: key %s made, KCV %s; its owner runs: dcaas key components status %s\n",
						n, cr.Components, cr.KeyID, cr.KCV, cr.ID)
					return
				}
				fmt.Fprintf(w, "component %d of %d accepted (KCV %s)\n", n, cr.Components, cr.Entered[n-1].KCV)
			})
		},
	}
	add.Flags().StringVar(&file, "component-file", "", "file holding the component in hex (else a prompt without echo)")
	add.Flags().StringVar(&kcv, "kcv", "", "the component's key check value (six hex digits)")

	var store string
	status := &cobra.Command{
		Use:   "status CEREMONY_ID",
		Short: "Show who entered which component; the owner of a finished key stores its EKB",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var stored *keyOutput
			return kmsCall(cmd, c, func(k *client.KMS) (*api.ComponentCeremony, error) {
				cr, err := k.Components(cmd.Context(), args[0])
				if err != nil || cr.DataKey == nil {
					return cr, err
				}
				out, err := storeKey(client.EKBStore{Dir: store}, cr.DataKey)
				if err != nil {
					return nil, fmt.Errorf("key %s is made but its EKB could not be stored: %w", cr.DataKey.KeyID, err)
				}
				stored = &out
				return cr, nil
			}, func(w io.Writer, cr *api.ComponentCeremony) {
				fmt.Fprintf(w, "ceremony %s (%s): %d of %d components of a %s key for %s, until %s\n",
					cr.ID, cr.State, len(cr.Entered), cr.Components, cr.Type, cr.Owner, cr.ExpiresAt.Format(time.RFC3339))
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "INDEX\tKCV\tADMIN\tENTERED")
				for _, e := range cr.Entered {
					fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", e.Index, e.KCV, e.Admin, e.EnteredAt.Format(time.RFC3339))
				}
				tw.Flush()
				if cr.KeyID != "" {
					fmt.Fprintf(w, "key %s, KCV %s\n", cr.KeyID, cr.KCV)
				}
				if stored != nil {
					printKey(w, *stored)
				}
			})
		},
	}
	ekbStoreFlag(status, &store)

	cmd.AddCommand(start, add, status)
	return cmd
}

// readComponent reads a component in hex from path, or, without a path,
// from a prompt without echo (or a line of standard input that is not a
// terminal). The caller owns and clears the result.
func readComponent(cmd *cobra.Command, path string) ([]byte, error) {
	var text []byte
	switch {
	case path != "":
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("--component-file: %w", err)
		}
		text = b
	case isTerminal(os.Stdin):
		err := withoutEcho(os.Stdin, func() error {
			fmt.Fprint(cmd.ErrOrStderr(), "component (hex, not echoed): ")
			line, err := bufio.NewReader(os.Stdin).ReadBytes('\n')
			fmt.Fprintln(cmd.ErrOrStderr())
			text = line
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		})
		if err != nil {
			return nil, err
		}
	default:
		line, err := bufio.NewReader(cmd.InOrStdin()).ReadBytes('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		text = line
	}
	defer clear(text)
	digits := make([]byte, 0, len(text))
	for _, b := range text {
		if !bytes.ContainsRune([]byte(" \t\r\n"), rune(b)) {
			digits = append(digits, b)
		}
	}
	defer clear(digits)
	comp := make([]byte, hex.DecodedLen(len(digits)))
	if _, err := hex.Decode(comp, digits); err != nil || len(comp) == 0 {
		clear(comp)
		return nil, errors.New("the component must be hex digits (spaces and line breaks are ignored)")
	}
	return comp, nil
}
