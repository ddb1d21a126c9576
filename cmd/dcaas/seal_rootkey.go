package main

import (
	"cmp"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/dcaas/dcaas/internal/atomicfile"
	"github.com/dcaas/dcaas/internal/datadir"
	"github.com/dcaas/dcaas/internal/kms"
	"github.com/dcaas/dcaas/internal/seal/file"
)

type sealRekeyFlags struct {
	dataDir     string
	sharesDir   string
	shareFiles  []string
	shares      int
	threshold   int
	singleShare bool
}

func newSealRekeyCmd() *cobra.Command {
	var f sealRekeyFlags
	cmd := &cobra.Command{
		Use:   "rekey --data-dir D --shares-dir NEW --share-file F ...",
		Short: "Split the root key into a new set of unseal key shares (custodians change, a share is lost)",
		Long: `Split the root key of a data dir that "dcaas seal init" made into a new
set of shares: the threshold of the current shares (--share-file, one per
share; - reads one from standard input) open root.key, a fresh unseal key
wraps the same root key, and its --shares new share files are written once
to --shares-dir (mode 0600), before root.key is replaced atomically. From
then on only the new shares open root.key; every key sealed under the root
key stays as it is (the root key does not change).

--shares and --threshold default to the current split. A refusal (too few
shares, a wrong one, one of another set, a share file that cannot be
written) changes nothing and the current shares stay valid.

A running, unsealed KMS is unaffected. A KMS that is sealed must be
restarted to take the new shares. Replicas keep their own copy of root.key:
copy the new one into each. The current shares still open any old copy of
root.key (backups, other data dirs): replace or destroy those copies.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runSealRekey(cmd, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.dataDir, "data-dir", "", "the KMS data directory whose root.key is split into shares (required)")
	fl.StringVar(&f.sharesDir, "shares-dir", "", "directory for the new share files (required; created 0700, must hold none)")
	fl.StringArrayVar(&f.shareFiles, "share-file", nil, "a current share file (repeat for each; - for standard input, once)")
	fl.IntVar(&f.shares, "shares", 0, "number of new shares N (1-255; default: as now)")
	fl.IntVar(&f.threshold, "threshold", 0, "new shares needed to unseal K (2-N; default: as now)")
	fl.BoolVar(&f.singleShare, "allow-single-share", false, "development only: allow --threshold 1 (any one share unseals)")
	return cmd
}

func runSealRekey(cmd *cobra.Command, f sealRekeyFlags) error {
	if f.dataDir == "" || f.sharesDir == "" {
		return errors.New("seal rekey needs --data-dir and --shares-dir")
	}
	cur, ok, err := file.SharesOf(f.dataDir)
	switch {
	case err != nil:
		return err
	case !ok:
		return fmt.Errorf("%s has no %s split into shares: seal rekey changes the split that seal init or seal split made (seal split moves a passphrase-protected root key to shares)", f.dataDir, kms.RootKeyFile)
	}
	n, k := cmp.Or(f.shares, cur.Shares), cmp.Or(f.threshold, cur.Threshold) // 0: as now
	if err := checkShareCounts(n, k, f.singleShare); err != nil {
		return err
	}
	shares, err := readShares(cmd, f.shareFiles)
	defer func() {
		for _, s := range shares {
			s.Value.Wipe()
		}
	}()
	if err != nil {
		return err
	}
	if len(shares) < cur.Threshold {
		return fmt.Errorf("%d share files given; the current split (share set %s) needs %d", len(shares), cur.IDString(), cur.Threshold)
	}
	w, err := newShareWriter(f.sharesDir)
	if err != nil {
		return err
	}
	set, err := file.Rekey(f.dataDir, shares, n, k, w.write)
	if err != nil {
		w.undo()
		if errors.Is(err, file.ErrUnsealKey) {
			return fmt.Errorf("the %d shares given do not open %s: at least one of them is not a share of this key (which one is not known); nothing was changed", len(shares), kms.RootKeyFile)
		}
		return fmt.Errorf("%w; nothing was changed: the current shares (share set %s) still open %s", err, cur.IDString(), kms.RootKeyFile)
	}
	out := cmd.OutOrStdout()
	dir, _ := filepath.Abs(f.dataDir)
	fmt.Fprintf(out, "dcaas seal rekey: data-dir=%s share-set=%s threshold=%d shares=%d (was share set %s, %d of %d)\n",
		dir, set.IDString(), set.Threshold, set.Shares, cur.IDString(), cur.Threshold, cur.Shares)
	w.list(out)
	fmt.Fprintf(out, "The shares of set %s no longer open this root.key. Give each new share file to its custodian and delete it here;\n"+
		"copy %s into every replica's data dir and replace backups of the old one; restart a KMS that is sealed.\n",
		cur.IDString(), filepath.Join(dir, kms.RootKeyFile))
	return nil
}

// checkShareCounts refuses N and K that cannot split the root key, and K
// = 1 unless single (development) allows it.
func checkShareCounts(n, k int, single bool) error {
	if n < 1 || n > 255 {
		return fmt.Errorf("--shares %d: want 1 to 255", n)
	}
	if k < 1 || k > n {
		return fmt.Errorf("--threshold %d: want 1 to --shares (%d)", k, n)
	}
	if k < 2 && !single {
		return errors.New("--threshold 1 lets any one share holder open the root key: dual control needs at least 2 (--allow-single-share permits 1 for development)")
	}
	return nil
}

// shareWriter writes a new share set's files, once each, into a
// directory that holds none.
type shareWriter struct {
	dir     string
	written []string
}

// newShareWriter creates dir (0700) and refuses one holding share files.
func newShareWriter(dir string) (*shareWriter, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("--shares-dir: %w", err)
	}
	if old, _ := filepath.Glob(filepath.Join(dir, "unseal-share-*")); len(old) > 0 {
		return nil, fmt.Errorf("--shares-dir %s already holds share files (%s): choose an empty directory", dir, filepath.Base(old[0]))
	}
	return &shareWriter{dir: dir}, nil
}

// write writes the files of set (seal init's, and file.Rekey's and
// file.Split's write).
func (w *shareWriter) write(set file.ShareSet, files [][]byte) error {
	for i, data := range files {
		p := filepath.Join(w.dir, shareFileName(set, i+1))
		if err := writeOnce(p, data); err != nil {
			return fmt.Errorf("writing new share %d: %w", i+1, err)
		}
		w.written = append(w.written, p)
	}
	return atomicfile.SyncDir(w.dir)
}

// undo removes what write wrote, after a failure.
func (w *shareWriter) undo() {
	for _, p := range w.written {
		os.Remove(p)
	}
}

// list prints the files written, one a line.
func (w *shareWriter) list(out io.Writer) {
	for _, p := range w.written {
		fmt.Fprintf(out, "  %s\n", p)
	}
}

// readShares parses the share files (- once for standard input).
func readShares(cmd *cobra.Command, names []string) ([]file.UnsealShare, error) {
	var shares []file.UnsealShare
	stdin := false
	for _, name := range names {
		if name == "-" {
			if stdin {
				return shares, errors.New("--share-file -: standard input holds one share; give the others as files")
			}
			stdin = true
		}
		data, err := readInput(cmd, name)
		if err != nil {
			return shares, fmt.Errorf("--share-file %s: %w", name, err)
		}
		s, err := file.ParseShare(data)
		clear(data)
		if err != nil {
			return shares, fmt.Errorf("--share-file %s: %w", name, err)
		}
		for _, o := range shares {
			if o.Index == s.Index && o.Set == s.Set {
				s.Value.Wipe()
				return shares, fmt.Errorf("--share-file %s: share %d is given twice", name, s.Index)
			}
		}
		shares = append(shares, s)
	}
	return shares, nil
}

type sealSplitFlags struct {
	sealInitFlags
	passphraseFile string
}

func newSealSplitCmd() *cobra.Command {
	var f sealSplitFlags
	cmd := &cobra.Command{
		Use:   "split --data-dir D --shares-dir S",
		Short: "Move a file-sealed root key from its passphrase to N unseal key shares (K to unseal)",
		Long: `Move the root key of a data dir that a first "dcaas kms serve" made (root.key
in clear, or wrapped under the passphrase) to dual control, as "dcaas seal
init" would have made it: a fresh unseal key wraps the same root key and
exists only as --shares Shamir shares, any --threshold of which open it.
The passphrase (DCAAS_SEAL_PASSPHRASE or --seal-passphrase-file) must open
root.key. The share files are written once to --shares-dir (mode 0600)
before root.key is replaced atomically; a refusal changes nothing.

First it opens the data dir's KMS to issue the certificate a sealed start
serves (DIR/unseal/, for --listen and --tls-host, as seal init does). The
root key does not change, so nothing sealed under it is touched and a
running KMS is unaffected; from its next start it starts sealed and opens
with K shares ("dcaas kms unseal"), without a passphrase. Replicas keep
their own copy of root.key: copy the new one (and DIR/unseal/) into each,
and replace backups of the old one (the passphrase still opens an old
copy).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runSealSplit(cmd, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.dataDir, "data-dir", "", "the KMS data directory (required)")
	fl.StringVar(&f.sharesDir, "shares-dir", "", "directory for the share files (required; created 0700, must hold none)")
	fl.StringVar(&f.passphraseFile, "seal-passphrase-file", "", "file holding root.key's passphrase (else "+envSealPassphrase+"; none for a root key in clear)")
	f.splitFlags(fl, "database: sqlite (DIR/kms.db) or postgres")
	return cmd
}

func runSealSplit(cmd *cobra.Command, f sealSplitFlags) error {
	if f.dataDir == "" || f.sharesDir == "" {
		return errors.New("seal split needs --data-dir and --shares-dir")
	}
	if err := checkShareCounts(f.shares, f.threshold, f.singleShare); err != nil {
		return err
	}
	if _, ok, err := file.SharesOf(f.dataDir); err != nil {
		return err
	} else if ok {
		return fmt.Errorf("%s's %s is split into shares already: dcaas seal rekey changes the split", f.dataDir, kms.RootKeyFile)
	}
	hosts, err := serverHosts(f.listen, f.tlsHosts)
	if err != nil {
		return err
	}
	pass, err := readPassphrase(f.passphraseFile, envSealPassphrase)
	if err != nil {
		return fmt.Errorf("--seal-passphrase-file: %w", err)
	}
	defer pass.Wipe()
	w, err := newShareWriter(f.sharesDir)
	if err != nil {
		return err
	}
	opts := kms.Options{DataDir: f.dataDir, ServerHosts: hosts, Passphrase: pass,
		Logger: slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelWarn}))}
	st, err := openStore(cmd.Context(), kmsServeFlags{store: f.store, postgresDSN: f.postgresDSN})
	if err != nil {
		return err
	}
	if st != nil {
		defer st.Close()
		opts.Store = st
	}
	set, err := datadir.Split(cmd.Context(), opts, f.shares, f.threshold, w.write)
	if err != nil {
		w.undo()
		return fmt.Errorf("%w; %s was not changed", err, kms.RootKeyFile)
	}
	out := cmd.OutOrStdout()
	dir, _ := filepath.Abs(f.dataDir)
	fmt.Fprintf(out, "dcaas seal split: data-dir=%s share-set=%s threshold=%d shares=%d\n", dir, set.IDString(), set.Threshold, set.Shares)
	w.list(out)
	fmt.Fprintf(out, "Give each share file to its custodian and delete it here. The KMS starts sealed from its next start:\n"+
		"  dcaas kms serve --data-dir %s   (no passphrase)\nand opens with %d of the shares: dcaas kms unseal --share-file FILE.\n"+
		"Copy %s and %s into every replica's data dir and replace backups of the old root.key.\n",
		dir, set.Threshold, filepath.Join(dir, kms.RootKeyFile), filepath.Join(dir, filepath.Dir(datadir.UnsealCertFile)))
	return nil
}

type sealPassphraseFlags struct {
	dataDir           string
	passphraseFile    string
	newPassphraseFile string
	remove            bool
}

// envSealNewPassphrase holds the new passphrase of seal passphrase.
const envSealNewPassphrase = "DCAAS_SEAL_NEW_PASSPHRASE"

func newSealPassphraseCmd() *cobra.Command {
	var f sealPassphraseFlags
	cmd := &cobra.Command{
		Use:   "passphrase --data-dir D",
		Short: "Change the passphrase of a file-sealed root key (or add one)",
		Long: `Wrap the root key of a data dir under a new passphrase: the current one
(DCAAS_SEAL_PASSPHRASE or --seal-passphrase-file; none for a root key in
clear) opens root.key, the new one (` + envSealNewPassphrase + ` or
--new-passphrase-file) wraps it (PBKDF2-HMAC-SHA-256, 600,000 iterations,
AES-256-GCM), and root.key is replaced atomically. --remove leaves the root
key in clear instead (development only). A refusal changes nothing.

The root key does not change, so nothing sealed under it is touched and a
running KMS is unaffected: give it the new passphrase for its next start.
Replicas keep their own copy of root.key: copy the new one into each, and
replace backups of the old one (the old passphrase still opens an old
copy). A root key split into shares has no passphrase: see seal rekey.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runSealPassphrase(cmd, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.dataDir, "data-dir", "", "the KMS data directory (required)")
	fl.StringVar(&f.passphraseFile, "seal-passphrase-file", "", "file holding the current passphrase (else "+envSealPassphrase+"; none for a root key in clear)")
	fl.StringVar(&f.newPassphraseFile, "new-passphrase-file", "", "file holding the new passphrase (else "+envSealNewPassphrase+")")
	fl.BoolVar(&f.remove, "remove", false, "development only: leave the root key in clear (mode 0600 only)")
	return cmd
}

func runSealPassphrase(cmd *cobra.Command, f sealPassphraseFlags) error {
	if f.dataDir == "" {
		return errors.New("seal passphrase needs --data-dir")
	}
	if _, ok, err := file.SharesOf(f.dataDir); err != nil {
		return err
	} else if ok {
		return fmt.Errorf("%s's %s is split into unseal key shares, which have no passphrase: dcaas seal rekey changes the split", f.dataDir, kms.RootKeyFile)
	}
	old, err := readPassphrase(f.passphraseFile, envSealPassphrase)
	if err != nil {
		return fmt.Errorf("--seal-passphrase-file: %w", err)
	}
	defer old.Wipe()
	next, err := readPassphrase(f.newPassphraseFile, envSealNewPassphrase)
	if err != nil {
		return fmt.Errorf("--new-passphrase-file: %w", err)
	}
	defer next.Wipe()
	switch {
	case f.remove && next.Len() > 0:
		return errors.New("--remove leaves the root key without a passphrase: give no new passphrase with it")
	case !f.remove && next.Len() == 0:
		return fmt.Errorf("no new passphrase: give --new-passphrase-file or %s (or --remove, development only)", envSealNewPassphrase)
	case next.Len() > 0 && old.Len() > 0 && subtle.ConstantTimeCompare(next.Expose(), old.Expose()) == 1:
		return errors.New("the new passphrase is the current one; nothing was changed")
	}
	if err := file.ChangePassphrase(f.dataDir, old, next); err != nil {
		return fmt.Errorf("%w; nothing was changed", err)
	}
	dir, _ := filepath.Abs(f.dataDir)
	out := cmd.OutOrStdout()
	if f.remove {
		fmt.Fprintf(out, "dcaas seal passphrase: %s holds the root key in clear now (development only): anyone who can read it has every key\n", filepath.Join(dir, kms.RootKeyFile))
	} else {
		fmt.Fprintf(out, "dcaas seal passphrase: %s is wrapped under the new passphrase\n", filepath.Join(dir, kms.RootKeyFile))
	}
	fmt.Fprintf(out, "The root key did not change. Give the KMS the new passphrase for its next start (%s or --seal-passphrase-file);\n"+
		"copy root.key into every replica's data dir and replace backups of the old one (the old passphrase still opens an old copy).\n", envSealPassphrase)
	return nil
}
