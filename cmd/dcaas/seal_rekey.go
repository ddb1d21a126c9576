package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

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
		return fmt.Errorf("%s has no %s split into shares: seal rekey changes the split dcaas seal init made", f.dataDir, kms.RootKeyFile)
	}
	n, k := orDefault(f.shares, cur.Shares), orDefault(f.threshold, cur.Threshold)
	if n < 1 || n > 255 {
		return fmt.Errorf("--shares %d: want 1 to 255", n)
	}
	if k < 1 || k > n {
		return fmt.Errorf("--threshold %d: want 1 to --shares (%d)", k, n)
	}
	if k < 2 && !f.singleShare {
		return errors.New("--threshold 1 lets any one share holder open the root key: dual control needs at least 2 (--allow-single-share permits 1 for development)")
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
	if err := os.MkdirAll(f.sharesDir, 0o700); err != nil {
		return fmt.Errorf("--shares-dir: %w", err)
	}
	if old, _ := filepath.Glob(filepath.Join(f.sharesDir, "unseal-share-*")); len(old) > 0 {
		return fmt.Errorf("--shares-dir %s already holds share files (%s): choose an empty directory", f.sharesDir, filepath.Base(old[0]))
	}
	var written []string
	set, err := file.Rekey(f.dataDir, shares, n, k, func(set file.ShareSet, files [][]byte) error {
		for i, data := range files {
			p := filepath.Join(f.sharesDir, shareFileName(set, i+1))
			if err := writeOnce(p, data); err != nil {
				return fmt.Errorf("writing new share %d: %w", i+1, err)
			}
			written = append(written, p)
		}
		return syncDir(f.sharesDir)
	})
	if err != nil {
		for _, w := range written {
			os.Remove(w)
		}
		if errors.Is(err, file.ErrUnsealKey) {
			return fmt.Errorf("the %d shares given do not open %s: at least one of them is not a share of this key (which one is not known); nothing was changed", len(shares), kms.RootKeyFile)
		}
		return fmt.Errorf("%w; nothing was changed: the current shares (share set %s) still open %s", err, cur.IDString(), kms.RootKeyFile)
	}
	out := cmd.OutOrStdout()
	dir, _ := filepath.Abs(f.dataDir)
	fmt.Fprintf(out, "dcaas seal rekey: data-dir=%s share-set=%s threshold=%d shares=%d (was share set %s, %d of %d)\n",
		dir, set.IDString(), set.Threshold, set.Shares, cur.IDString(), cur.Threshold, cur.Shares)
	for _, w := range written {
		fmt.Fprintf(out, "  %s\n", w)
	}
	fmt.Fprintf(out, "The shares of set %s no longer open this root.key. Give each new share file to its custodian and delete it here;\n"+
		"copy %s into every replica's data dir and replace backups of the old one; restart a KMS that is sealed.\n",
		cur.IDString(), filepath.Join(dir, kms.RootKeyFile))
	return nil
}

// orDefault is v, or def when v is 0 (a flag left at its default).
func orDefault(v, def int) int {
	if v == 0 {
		return def
	}
	return v
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

// syncDir makes the files created in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
