package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/dcaas/dcaas/internal/buildinfo"
)

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit and Go version of this binary",
		Long: `Print which dcaas this is: the version 'make build' stamps from
'git describe --always --dirty' (else the module version, else "unknown"),
the VCS commit and its time as the Go toolchain recorded them, and the Go
version. The same values label the dcaas_build_info metric.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			in := buildinfo.Get()
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "dcaas %s\n", in.Version)
			if in.Revision != "" {
				mod := ""
				if in.Modified {
					mod = " (modified)"
				}
				fmt.Fprintf(w, "commit: %s%s\n", in.Revision, mod)
			}
			if in.Time != "" {
				fmt.Fprintf(w, "commit time: %s\n", in.Time)
			}
			fmt.Fprintf(w, "go: %s\n", in.GoVersion)
			return nil
		},
	}
}
