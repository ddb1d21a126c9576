package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/dcaas/dcaas/client"
)

func newSidecarEnrollCmd() *cobra.Command {
	var store string
	var watch time.Duration
	cmd := &cobra.Command{
		Use:   "enroll",
		Short: "Enroll a sidecar that waits for a token, as its custodian, and reload its keys",
		Long: `Enroll the sidecar on --socket if it waits for a token ("enrolled": false
in GET /v1/status: a software-enclave sidecar restarted without one). The
custodian of --cert/--key mints a one-time enrollment token for itself at
the KMS and hands it to the sidecar over the socket; the sidecar must be
bound to that custodian's Unix user. With --store, every key version kept
in that EKB store is then loaded back by rewrap (keys the KMS no longer
releases are skipped and listed).

With --watch INTERVAL the command keeps running and does this whenever the
sidecar needs it (a restarted container, a lapsed identity): run it next to
the sidecar (a systemd unit, a container of the pod) and restarts recover
with no person involved.`,
		Args: cobra.NoArgs,
	}
	c := connFlags(cmd)
	cmd.Flags().StringVar(&store, "store", "", "EKB store directory to reload keys from after enrolling (env DCAAS_EKB_STORE)")
	cmd.Flags().DurationVar(&watch, "watch", 0, "keep checking the sidecar every INTERVAL and re-enroll it when needed (0: once)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if store == "" {
			store = envOr("DCAAS_EKB_STORE", "")
		}
		k, sc, err := c.both()
		if err != nil {
			return err
		}
		out := cmd.OutOrStdout()
		if watch <= 0 {
			enrolled, err := ensureEnrolled(cmd.Context(), out, k, sc, store)
			if err != nil {
				return err
			}
			if !enrolled {
				fmt.Fprintln(out, "the sidecar is already enrolled")
			}
			return nil
		}
		t := time.NewTicker(watch)
		defer t.Stop()
		for {
			if _, err := ensureEnrolled(cmd.Context(), out, k, sc, store); err != nil {
				if errors.Is(err, client.ErrRevoked) {
					return err // a revoked sidecar never serves again
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "dcaas sidecar enroll: %v (retrying in %s)\n", err, watch)
			}
			select {
			case <-cmd.Context().Done():
				return nil
			case <-t.C:
			}
		}
	}
	return cmd
}

// ensureEnrolled enrolls the sidecar if it waits for it and reloads the
// store into it, printing what it did.
func ensureEnrolled(ctx context.Context, out io.Writer, k *client.KMS, sc *client.Sidecar, store string) (bool, error) {
	enrolled, err := client.EnsureEnrolled(ctx, k, sc)
	if err != nil || !enrolled {
		return false, err
	}
	st, err := sc.Status(ctx)
	if err != nil {
		return true, err
	}
	fmt.Fprintf(out, "enrolled the sidecar: instance=%s custodian=%q\n", st.InstanceID, st.CustodianDN)
	if store == "" {
		return true, nil
	}
	ids, skipped, err := client.LoadStore(ctx, k, sc, client.EKBStore{Dir: store})
	fmt.Fprintf(out, "reloaded %d key(s) from %s\n", len(ids), store)
	for _, s := range skipped {
		fmt.Fprintf(out, "skipped %s version %d: %v\n", s.KeyID, s.Version, s.Err)
	}
	return true, err
}
