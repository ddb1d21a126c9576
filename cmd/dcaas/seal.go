package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

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
	cmd.AddCommand(newSealInitCmd())
	cmd.AddCommand(newSealRekeyCmd())
	cmd.AddCommand(newSealSplitCmd())
	cmd.AddCommand(newSealPassphraseCmd())
	return cmd
}

type sealMigrateFlags struct {
	dataDir        string
	passphraseFile string
	store          string
	postgresDSN    string
	listen         string // the KMS's --listen, for the printed start command
	listenSet      bool   // --listen was given (else it is kms serve's default)
	to             sealFlags
}

func newSealMigrateCmd() *cobra.Command {
	var f sealMigrateFlags
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Move a stopped KMS from the file seal to a PKCS#11 HSM, losing no key",
		Long: `Re-seal everything a KMS keeps sealed (every tenant master key version,
every tenant HMAC key and BYOK import key, the CA keys, the audit key) from
the file seal of the data dir to a root key inside a PKCS#11 HSM, so that
the KMS can then run with --seal pkcs11 and never see its root key again.

Stop every KMS serving the database first: migrate refuses while any
replica holds a live lease in the database (each renews it every few
seconds), naming them, and a KMS refuses to start while a migration holds
the database. Each item is opened with the file seal, sealed inside the HSM
and opened again there to check it, and only when every item has passed
are they all written, in one database transaction. Items already under the
HSM (from an earlier run) are kept, so running it again finishes a store
left half under each seal. A failure changes nothing in that run, and the
message says which seal the store's items are under.

The token PIN comes from DCAAS_PKCS11_PIN or --pkcs11-pin-file, the file
seal's passphrase (if any) from DCAAS_SEAL_PASSPHRASE or
--seal-passphrase-file. The root key must exist in the token unless
--pkcs11-create-key is given. At the end it prints the command that starts
the migrated KMS: give --listen the KMS's address for it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f.listenSet = cmd.Flags().Changed("listen")
			return runSealMigrate(cmd.Context(), cmd.OutOrStdout(), f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.dataDir, "data-dir", "", "the KMS data directory (required)")
	fl.StringVar(&f.to.kind, "to", "", "the seal to move to: pkcs11 (required)")
	fl.StringVar(&f.passphraseFile, "seal-passphrase-file", "", "file holding the file seal's passphrase (else "+envSealPassphrase+")")
	fl.StringVar(&f.store, "store", "sqlite", "database: sqlite (DIR/kms.db) or postgres")
	fl.StringVar(&f.postgresDSN, "postgres-dsn", "", "PostgreSQL DSN for --store postgres (else DCAAS_POSTGRES_DSN)")
	fl.StringVar(&f.listen, "listen", defaultKMSListen, "the KMS's --listen address, repeated in the start command printed at the end")
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
	// A first look, before anything (an HSM key) is made: the lock below
	// decides, but a running replica is best reported now.
	if live, err := liveLeases(ctx, st, time.Now()); err != nil {
		return err
	} else if len(live) > 0 {
		return fmt.Errorf("refusing to migrate: %w\nnothing was changed", &store.LiveReplicasError{Leases: live})
	}
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
		return fmt.Errorf("%w\nnothing was changed", err)
	}
	defer to.Close()

	// The migration lock first: refused while a replica is alive, and
	// from then on no replica starts.
	host, _ := os.Hostname()
	holder := make([]byte, 8)
	if _, err := rand.Read(holder); err != nil {
		return err
	}
	m := store.SealMigration{Holder: hex.EncodeToString(holder), Host: host, PID: os.Getpid(), From: from.Name(), To: to.Name(), Started: time.Now()}
	prev, err := st.BeginSealMigration(ctx, m, time.Now())
	var live *store.LiveReplicasError
	if errors.As(err, &live) {
		return fmt.Errorf("refusing to migrate: %w\nnothing was changed", live)
	}
	if err != nil {
		return fmt.Errorf("taking the migration lock: %w\nnothing was changed", err)
	}
	if prev != nil {
		fmt.Fprintf(out, "dcaas seal migrate: an earlier migration (started %s on %s, pid %d) did not finish; this run finishes it.\n",
			prev.Started.UTC().Format(time.RFC3339), prev.Host, prev.PID)
	}
	r, err := sealmigrate.Migrate(ctx, st, from, to)
	if err != nil {
		return migrateFailed(ctx, st, m.Holder, from, to, err)
	}
	if err := st.EndSealMigration(ctx, m.Holder); err != nil {
		return fmt.Errorf("every item is sealed under %s, but releasing the migration lock failed (re-run dcaas seal migrate): %w", to.Name(), err)
	}
	if r.Items() == 0 {
		fmt.Fprintf(out, "dcaas seal migrate: nothing to re-seal: all %d items were already sealed under pkcs11 (token %q, key %q).\n",
			r.Already, f.to.token, f.to.keyLabel)
	} else {
		fmt.Fprintf(out, "dcaas seal migrate: re-sealed %d master key versions, %d HMAC keys, %d CA keys, %d audit key, %d import keys and %d custodian seed keys from the file seal to pkcs11 (token %q, key %q), each verified in the HSM; %d items were already under it.\n",
			r.MasterKeys, r.HMACKeys, r.CAKeys, r.AuditKeys, r.ImportKeys, r.SeedKeys, f.to.token, f.to.keyLabel, r.Already)
	}
	cmdLine, notes := f.serveCommand()
	fmt.Fprintf(out, "Start the KMS with: %s\n", cmdLine)
	for _, n := range notes {
		fmt.Fprintln(out, n)
	}
	fmt.Fprintf(out, "%s no longer opens anything in the database: keep it only as long as you keep database backups from before the migration, then destroy it.\n",
		filepath.Join(f.dataDir, rootKeyFile))
	return nil
}

// liveLeases returns the leases of st that expire after now.
func liveLeases(ctx context.Context, st store.Store, now time.Time) ([]store.Lease, error) {
	all, err := st.Leases(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the KMS replicas' leases: %w", err)
	}
	var live []store.Lease
	for _, l := range all {
		if l.Expires.After(now) {
			live = append(live, l)
		}
	}
	return live, nil
}

// migrateFailed tells the truth about a run that failed with cause: the
// run's transaction changed nothing, and the store's items are under the
// seals a census finds. The migration lock is released only when every
// item is still under the old seal (the KMS can start as before);
// otherwise it stays, so that no KMS starts on a mixed store.
func migrateFailed(ctx context.Context, st store.Store, holder string, from, to seal.Sealer, cause error) error {
	c, cerr := sealmigrate.TakeCensus(ctx, st, from, to)
	if cerr != nil {
		return fmt.Errorf("%w\nthis run changed nothing, but which seal the items are under could not be read (%v): the migration lock stays and KMS replicas will not start; re-run dcaas seal migrate", cause, cerr)
	}
	release := c.New == 0 && len(c.Neither) == 0
	if release {
		if err := st.EndSealMigration(ctx, holder); err != nil {
			return fmt.Errorf("%w\nthis run changed nothing and all %d items are under the %s seal, but releasing the migration lock failed (%v): re-run dcaas seal migrate", cause, c.Total, from.Name(), err)
		}
	}
	return fmt.Errorf("%w\n%s", cause, describeCensus(c, from.Name(), to.Name(), release))
}

// describeCensus says, after a failed run that changed nothing, where the
// store's items are and what to do next.
func describeCensus(c sealmigrate.Census, from, to string, released bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "this run changed nothing (one transaction, rolled back). The database holds %d sealed items: %d under the %s seal, %d under %s", c.Total, c.Old, from, c.New, to)
	if len(c.Neither) > 0 {
		fmt.Fprintf(&b, ", %d under neither (%s)", len(c.Neither), strings.Join(c.Neither, ", "))
	}
	b.WriteString(".\n")
	switch {
	case released:
		fmt.Fprintf(&b, "Every item is still under the %s seal: the KMS starts as before with it; fix the cause and run dcaas seal migrate again.", from)
	case c.Old == 0 && len(c.Neither) == 0:
		fmt.Fprintf(&b, "Every item is already under %s, but the migration lock stays: run dcaas seal migrate again to release it.", to)
	default:
		b.WriteString("The database is locked against KMS starts until a run finishes the migration: fix the cause and run dcaas seal migrate again (it re-seals only what is left).")
	}
	return b.String()
}

// serveCommand is the `dcaas kms serve` command line that starts the
// migrated KMS with the flags this migration was given, shell-quoted, and
// notes on what it reads from the environment. It never holds a secret:
// the PIN stays in its file or variable, a DSN with a password in
// DCAAS_POSTGRES_DSN.
func (f sealMigrateFlags) serveCommand() (string, []string) {
	args := []string{"dcaas", "kms", "serve", "--data-dir", f.dataDir, "--listen", f.listen}
	var notes []string
	if f.store != "sqlite" {
		args = append(args, "--store", f.store)
		switch {
		case f.postgresDSN == "":
			notes = append(notes, "It reads the database's DSN from DCAAS_POSTGRES_DSN, as this migration did.")
		case dsnHasPassword(f.postgresDSN):
			notes = append(notes, "Set DCAAS_POSTGRES_DSN to the DSN given to --postgres-dsn here (not printed: it holds a password).")
		default:
			args = append(args, "--postgres-dsn", f.postgresDSN)
		}
	}
	args = append(args, "--seal", "pkcs11", "--pkcs11-module", f.to.module, "--pkcs11-token", f.to.token, "--pkcs11-key-label", f.to.keyLabel)
	if f.to.pinFile != "" {
		args = append(args, "--pkcs11-pin-file", f.to.pinFile)
	} else {
		notes = append(notes, "It reads the token PIN from "+envPKCS11PIN+", as this migration did (or add --pkcs11-pin-file FILE).")
	}
	if !f.listenSet {
		notes = append(notes, "--listen is kms serve's default ("+defaultKMSListen+"): if the KMS listened elsewhere, change it (or give seal migrate --listen).")
	}
	notes = append(notes, "Add any other flag the KMS ran with (--tls-host, --metrics-listen, limits); --seal-passphrase-file is no longer needed.")
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = shellQuote(a)
	}
	return strings.Join(quoted, " "), notes
}

// dsnHasPassword reports whether a PostgreSQL DSN, URL or key=value form,
// carries a password.
func dsnHasPassword(dsn string) bool {
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		_, ok := u.User.Password()
		return ok || u.Query().Has("password")
	}
	return strings.Contains(dsn, "password")
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=@,+%", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
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
