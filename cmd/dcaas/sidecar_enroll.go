package main

import (
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
bound to that custodian's Unix user. The dead instance the sidecar's data
dir held before a restart is revoked.

With --store, every key version kept in that EKB store that the sidecar
does not hold is loaded by rewrap: after enrolling it, and also into an
enrolled sidecar that lost its keys (a TPM sidecar restarted with its
enrollment) or when an EKB was added to the store. Versions the KMS refuses
to this instance (disabled, retired, expired) are listed and not retried.

With --watch INTERVAL the command keeps running and does this every
INTERVAL: run it next to the sidecar (a systemd unit, a container of the
pod) and restarts recover with no person involved. A step that fails (the
KMS out of reach, a load cut half way, a revocation refused) is logged and
tried again the next round; it exits only when the sidecar itself has been
revoked.`,
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
		a := &client.Agent{KMS: k, Sidecar: sc}
		if store != "" {
			a.Store = &client.EKBStore{Dir: store}
		}
		out := cmd.OutOrStdout()
		if watch <= 0 {
			r, err := a.Reconcile(cmd.Context())
			report(out, r, store)
			if err == nil && r.Enrolled == "" {
				fmt.Fprintln(out, "the sidecar is already enrolled")
			}
			return err
		}
		t := time.NewTicker(watch)
		defer t.Stop()
		for {
			r, err := a.Reconcile(cmd.Context())
			report(out, r, store)
			if err != nil {
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

// report prints what one round of the agent did; a round that did nothing
// prints nothing.
func report(out io.Writer, r client.AgentRound, store string) {
	if r.Enrolled != "" {
		fmt.Fprintf(out, "enrolled the sidecar: instance=%s custodian=%q\n", r.Enrolled, r.CustodianDN)
	}
	for _, id := range r.Revoked {
		fmt.Fprintf(out, "revoked the sidecar's previous instance %s\n", id)
	}
	if len(r.Loaded) > 0 || len(r.Skipped) > 0 {
		fmt.Fprintf(out, "reloaded %d key(s) from %s\n", len(r.Loaded), store)
	}
	for _, s := range r.Skipped {
		fmt.Fprintf(out, "skipped %s version %d: %v\n", s.KeyID, s.Version, s.Err)
	}
}
