package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/dcaas/dcaas/internal/kms"
	"github.com/dcaas/dcaas/internal/seal"
	"github.com/dcaas/dcaas/internal/seal/file"
	"github.com/dcaas/dcaas/internal/seal/pkcs11"
	"github.com/dcaas/dcaas/internal/seal/sealmigrate"
	"github.com/dcaas/dcaas/internal/store"
	"github.com/dcaas/dcaas/internal/store/sqlstore"
)

// Environment variables holding secrets (never flags, which show in ps).
const (
	envSealPassphrase = "DCAAS_SEAL_PASSPHRASE"
	envPKCS11PIN      = "DCAAS_PKCS11_PIN"
)

// rootKeyFile is the file seal's root key in a data dir (seal/file).
const rootKeyFile = "root.key"

// sealFlags choose the KMS root of trust: the file seal in the data dir,
// or a PKCS#11 HSM.
type sealFlags struct {
	kind      string // "file" or "pkcs11"
	module    string
	token     string
	keyLabel  string
	pinFile   string
	createKey bool
}

// addPKCS11 adds the --pkcs11-* flags.
func (f *sealFlags) addPKCS11(fl *pflag.FlagSet) {
	fl.StringVar(&f.module, "pkcs11-module", "", "PKCS#11 library of the HSM (e.g. /usr/lib/softhsm/libsofthsm2.so)")
	fl.StringVar(&f.token, "pkcs11-token", "", "label of the HSM token that holds the root key")
	fl.StringVar(&f.keyLabel, "pkcs11-key-label", pkcs11.DefaultKeyLabel, "label of the root key in the token")
	fl.StringVar(&f.pinFile, "pkcs11-pin-file", "", "file holding the token's user PIN (else "+envPKCS11PIN+")")
	fl.BoolVar(&f.createKey, "pkcs11-create-key", false, "generate the root key inside the token when it holds none with the label")
}

// pkcs11Set reports whether a --pkcs11-* flag has a value.
func (f *sealFlags) pkcs11Set() bool {
	return f.module != "" || f.token != "" || f.pinFile != "" || f.createKey ||
		(f.keyLabel != "" && f.keyLabel != pkcs11.DefaultKeyLabel)
}

// openPKCS11 opens the HSM seal the flags name, with the PIN from
// --pkcs11-pin-file or DCAAS_PKCS11_PIN.
func (f *sealFlags) openPKCS11() (*pkcs11.Sealer, error) {
	if f.module == "" || f.token == "" {
		return nil, errors.New("the pkcs11 seal needs --pkcs11-module and --pkcs11-token")
	}
	pin, err := readPassphrase(f.pinFile, envPKCS11PIN)
	if err != nil {
		return nil, fmt.Errorf("--pkcs11-pin-file: %w", err)
	}
	defer pin.Wipe()
	if pin.Len() == 0 {
		return nil, fmt.Errorf("the pkcs11 seal needs the token PIN in %s or --pkcs11-pin-file", envPKCS11PIN)
	}
	s, err := pkcs11.Open(pkcs11.Config{
		ModulePath: f.module, TokenLabel: f.token, PIN: pin, KeyLabel: f.keyLabel, Create: f.createKey,
	})
	if errors.Is(err, pkcs11.ErrNoKey) {
		err = fmt.Errorf("%w (pass --pkcs11-create-key to generate it in the token)", err)
	}
	return s, err
}

// openForServe returns the Sealer kms serve runs on: nil for the file seal
// (datadir.Open opens it in the data dir), or an HSM Sealer the caller closes.
func (f *sealFlags) openForServe(passphraseFile string) (seal.Sealer, error) {
	switch f.kind {
	case "file":
		if f.pkcs11Set() {
			return nil, errors.New("--pkcs11-* flags need --seal pkcs11")
		}
		return nil, nil
	case "pkcs11":
		if passphraseFile != "" {
			return nil, errors.New("--seal-passphrase-file is for the file seal, not --seal pkcs11")
		}
		s, err := f.openPKCS11()
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	return nil, fmt.Errorf("--seal %q: want file or pkcs11", f.kind)
}

func newSealCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "seal", Short: "Manage the KMS root of trust"}
	cmd.AddCommand(newSealMigrateCmd())
	return cmd
}

type sealMigrateFlags struct {
	dataDir        string
	passphraseFile string
	store          string
	postgresDSN    string
	to             sealFlags
}

func newSealMigrateCmd() *cobra.Command {
	var f sealMigrateFlags
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Move a stopped KMS from the file seal to a PKCS#11 HSM, losing no key",
		Long: `Re-seal everything a KMS keeps sealed (every tenant master key version,
every tenant HMAC key, the CA key) from the file seal of the data dir to a
root key inside a PKCS#11 HSM, so that the KMS can then run with
--seal pkcs11 and never see its root key again.

Stop every KMS serving the database first. Each item is opened with the
file seal, sealed inside the HSM and opened again there to check it, and
only when every item has passed are they all written, in one database
transaction. Any failure (a wrong PIN, a missing HSM key, an HSM error)
changes nothing: the data dir keeps working with the file seal.

The token PIN comes from DCAAS_PKCS11_PIN or --pkcs11-pin-file, the file
seal's passphrase (if any) from DCAAS_SEAL_PASSPHRASE or
--seal-passphrase-file. The root key must exist in the token unless
--pkcs11-create-key is given.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runSealMigrate(cmd.Context(), cmd.OutOrStdout(), f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.dataDir, "data-dir", "", "the KMS data directory (required)")
	fl.StringVar(&f.to.kind, "to", "", "the seal to move to: pkcs11 (required)")
	fl.StringVar(&f.passphraseFile, "seal-passphrase-file", "", "file holding the file seal's passphrase (else "+envSealPassphrase+")")
	fl.StringVar(&f.store, "store", "sqlite", "database: sqlite (DIR/kms.db) or postgres")
	fl.StringVar(&f.postgresDSN, "postgres-dsn", "", "PostgreSQL DSN for --store postgres (else DCAAS_POSTGRES_DSN)")
	f.to.addPKCS11(fl)
	return cmd
}

func runSealMigrate(ctx context.Context, out io.Writer, f sealMigrateFlags) error {
	if f.dataDir == "" {
		return errors.New("--data-dir is required")
	}
	if f.to.kind != "pkcs11" {
		return fmt.Errorf("--to %q: want pkcs11", f.to.kind)
	}
	if _, err := os.Stat(filepath.Join(f.dataDir, rootKeyFile)); err != nil {
		return fmt.Errorf("%s is not file-sealed (no %s): %w", f.dataDir, rootKeyFile, err)
	}
	st, err := openMigrateStore(ctx, f)
	if err != nil {
		return err
	}
	defer st.Close()
	pass, err := readPassphrase(f.passphraseFile, envSealPassphrase)
	if err != nil {
		return fmt.Errorf("--seal-passphrase-file: %w", err)
	}
	defer pass.Wipe()
	from, err := file.Open(f.dataDir, pass)
	if err != nil {
		return err
	}
	defer from.Close()
	to, err := f.to.openPKCS11()
	if err != nil {
		return fmt.Errorf("%w\nnothing was changed: %s still runs with the file seal", err, f.dataDir)
	}
	defer to.Close()
	r, err := sealmigrate.Migrate(ctx, st, from, to)
	if err != nil {
		return fmt.Errorf("%w\nnothing was changed: %s still runs with the file seal", err, f.dataDir)
	}
	fmt.Fprintf(out, "dcaas seal migrate: re-sealed %d master key versions, %d HMAC keys, %d CA keys, %d audit key and %d import keys from the file seal to pkcs11 (token %q, key %q), each verified in the HSM.\n",
		r.MasterKeys, r.HMACKeys, r.CAKeys, r.AuditKeys, r.ImportKeys, f.to.token, f.to.keyLabel)
	fmt.Fprintf(out, "Start the KMS with: dcaas kms serve --data-dir %s --seal pkcs11 --pkcs11-module %s --pkcs11-token %s --pkcs11-key-label %s\n",
		f.dataDir, f.to.module, f.to.token, f.to.keyLabel)
	fmt.Fprintf(out, "%s no longer opens anything in the database: keep it only as long as you keep database backups from before the migration, then destroy it.\n",
		filepath.Join(f.dataDir, rootKeyFile))
	return nil
}

// openMigrateStore opens the store to migrate: DIR/kms.db, which must
// exist, or the PostgreSQL database --store postgres names.
func openMigrateStore(ctx context.Context, f sealMigrateFlags) (store.Store, error) {
	if f.store == "sqlite" {
		if f.postgresDSN != "" {
			return nil, errors.New("--postgres-dsn needs --store postgres")
		}
		path := filepath.Join(f.dataDir, kms.DBFile)
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("%s is not a KMS data dir: %w", f.dataDir, err)
		}
		return sqlstore.OpenSQLite(ctx, path)
	}
	st, err := openStore(ctx, kmsServeFlags{store: f.store, postgresDSN: f.postgresDSN})
	if err != nil {
		return nil, err
	}
	return st, nil
}
