package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/dcaas/dcaas/internal/audit"
	"github.com/dcaas/dcaas/internal/kms"
	"github.com/dcaas/dcaas/internal/store"
	"github.com/dcaas/dcaas/internal/store/sqlstore"
)

func newAuditCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Inspect the KMS audit log"}
	var dataDir, storeKind, dsn string
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Check the audit log's hash chain and name the first broken record",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var st store.Audit
			switch storeKind {
			case "sqlite":
				path := filepath.Join(dataDir, kms.DBFile)
				if _, err := os.Stat(path); err != nil {
					return fmt.Errorf("no KMS database at %s: %w", path, err)
				}
				db, err := sqlstore.OpenSQLiteReadOnly(cmd.Context(), path)
				if err != nil {
					return err
				}
				defer db.Close()
				st = db
			case "postgres":
				if dsn == "" {
					dsn = os.Getenv("DCAAS_POSTGRES_DSN")
				}
				if dsn == "" {
					return errors.New("--store postgres needs --postgres-dsn or DCAAS_POSTGRES_DSN")
				}
				db, err := sqlstore.OpenPostgres(cmd.Context(), dsn)
				if err != nil {
					return err
				}
				defer db.Close()
				st = db
			default:
				return fmt.Errorf("--store %q: want sqlite or postgres", storeKind)
			}
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
	verify.Flags().StringVar(&dataDir, "data-dir", "dcaas-kms", "KMS data directory (sqlite store)")
	verify.Flags().StringVar(&storeKind, "store", "sqlite", "database: sqlite (DIR/kms.db) or postgres")
	verify.Flags().StringVar(&dsn, "postgres-dsn", "", "PostgreSQL DSN for --store postgres (else DCAAS_POSTGRES_DSN)")
	cmd.AddCommand(verify)
	return cmd
}
