package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/dcaas/dcaas/internal/audit"
	"github.com/dcaas/dcaas/internal/kms"
	"github.com/dcaas/dcaas/internal/store/sqlite"
)

func newAuditCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Inspect the KMS audit log"}
	var dataDir string
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Check the audit log's hash chain and name the first broken record",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := filepath.Join(dataDir, kms.DBFile)
			if _, err := os.Stat(path); err != nil {
				return fmt.Errorf("no KMS database at %s: %w", path, err)
			}
			st, err := sqlite.OpenReadOnly(cmd.Context(), path)
			if err != nil {
				return err
			}
			defer st.Close()
			n, err := audit.Verify(cmd.Context(), st)
			var broken *audit.BrokenError
			if errors.As(err, &broken) {
				fmt.Fprintf(cmd.OutOrStdout(), "audit log BROKEN at record %d: %s (%d records before it verified)\n", broken.Seq, broken.Reason, n)
				return errors.New("audit chain broken")
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "audit log OK: %d records verified\n", n)
			return nil
		},
	}
	verify.Flags().StringVar(&dataDir, "data-dir", "dcaas-kms", "KMS data directory")
	cmd.AddCommand(verify)
	return cmd
}
