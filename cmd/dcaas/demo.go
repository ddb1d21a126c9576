package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/dcaas/dcaas/internal/demo"
)

func newDemoCmd() *cobra.Command {
	var jsonOut, keep bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the whole story against real processes on loopback; exit 0 only if every step worked",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			dir, err := os.MkdirTemp("", "dcaas-demo-")
			if err != nil {
				return err
			}
			if !keep {
				defer os.RemoveAll(dir)
			}
			var out io.Writer = cmd.OutOrStdout()
			if jsonOut {
				out = nil
			}
			rep, runErr := demo.Run(cmd.Context(), demo.Options{Binary: exe, Dir: dir, Out: out})
			if jsonOut {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(rep); err != nil {
					return err
				}
			} else if runErr == nil {
				fmt.Fprintf(cmd.OutOrStdout(), "\nall %d steps passed", len(rep.Steps))
				if keep {
					fmt.Fprintf(cmd.OutOrStdout(), " (data, logs and credentials kept in %s)", dir)
				}
				fmt.Fprintln(cmd.OutOrStdout())
			}
			return runErr
		},
	}
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print a machine-readable report instead of lines")
	cmd.Flags().BoolVar(&keep, "keep", false, "keep the working directory (data dirs, logs, credentials)")
	return cmd
}
