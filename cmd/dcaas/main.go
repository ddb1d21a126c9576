// Command dcaas is the one binary of dcaas: the central KMS, the crypto
// sidecar and the tools around them. Flags become typed configuration here;
// the domain logic lives in internal/ packages.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/dcaas/dcaas/internal/buildinfo"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if code := exitCode(newRoot().ExecuteContext(ctx)); code != 0 {
		stop()
		os.Exit(code)
	}
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "dcaas",
		Short:         "Distributed cryptography as a service: a central KMS and local crypto sidecars",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       buildinfo.Get().Version,
	}
	root.AddCommand(newVersionCmd(), newKMSCmd(), newSidecarCmd(), newAuditCmd(), newDevCmd(), newBenchCmd(), newDemoCmd(), newSealCmd(), newConsoleCmd())
	addCLICmds(root) // custodian and admin tools over the SDK (cli_*.go)
	return root
}
