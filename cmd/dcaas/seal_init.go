package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/dcaas/dcaas/internal/datadir"
	"github.com/dcaas/dcaas/internal/kms"
	"github.com/dcaas/dcaas/internal/seal/file"
)

type sealInitFlags struct {
	dataDir     string
	sharesDir   string
	shares      int
	threshold   int
	singleShare bool
	listen      string
	tlsHosts    []string
	store       string
	postgresDSN string
}

func newSealInitCmd() *cobra.Command {
	var f sealInitFlags
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Initialize a KMS data dir whose root key exists only as N key shares (K to unseal)",
		Long: `Initialize a KMS data dir exactly as a first "dcaas kms serve" would (root
key, database, CA, audit key, admin credentials, and a TLS server
certificate for the sealed listener), except that root.key is wrapped under
a random unseal key that is never stored: it exists only as --shares Shamir
shares, any --threshold of which recover it. Each share is written once to
its own file in --shares-dir (mode 0600); hand one to each custodian and
delete them from this machine.

"dcaas kms serve --data-dir D" then starts sealed and opens only when
--threshold distinct shares are posted ("dcaas kms unseal --share-file F",
admin certificate). Every restart seals it again.

The threshold must be at least 2 (dual control); --allow-single-share
permits 1, for development only: every share then is the unseal key.
Give --listen and --tls-host as for kms serve: the sealed listener's
certificate covers them. With --store postgres the CA and everything else
go into that (new) database; further replicas get a copy of root.key (it
opens only with the shares) and unseal each on its own.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runSealInit(cmd.Context(), cmd.OutOrStdout(), f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.dataDir, "data-dir", "", "the new KMS data directory (required; must hold no root.key)")
	fl.StringVar(&f.sharesDir, "shares-dir", "", "directory for the share files (required; created 0700)")
	f.splitFlags(fl, "database: sqlite (DIR/kms.db) or postgres (a new database shared by replicas)")
	return cmd
}

// splitFlags registers the flags of a split of the root key into shares
// (seal init, seal split): N, K, and the sealed listener's certificate and
// the store, for storeHelp's database.
func (f *sealInitFlags) splitFlags(fl *pflag.FlagSet, storeHelp string) {
	fl.IntVar(&f.shares, "shares", 5, "number of shares N (1-255)")
	fl.IntVar(&f.threshold, "threshold", 3, "shares needed to unseal K (2-N)")
	fl.BoolVar(&f.singleShare, "allow-single-share", false, "development only: allow --threshold 1 (any one share unseals)")
	fl.StringVar(&f.listen, "listen", defaultKMSListen, "the KMS's --listen address, for the sealed listener's certificate")
	fl.StringSliceVar(&f.tlsHosts, "tls-host", nil, "extra DNS names or IPs for the sealed listener's certificate")
	fl.StringVar(&f.store, "store", "sqlite", storeHelp)
	fl.StringVar(&f.postgresDSN, "postgres-dsn", "", "PostgreSQL DSN for --store postgres (else DCAAS_POSTGRES_DSN)")
}

// shareFileName is the file of share index of a set: the set id's first 8
// hex digits keep two ceremonies' files apart.
func shareFileName(set file.ShareSet, index int) string {
	return fmt.Sprintf("unseal-share-%s-%d-of-%d.txt", set.IDString()[:8], index, set.Shares)
}

func runSealInit(ctx context.Context, out io.Writer, f sealInitFlags) error {
	if f.dataDir == "" || f.sharesDir == "" {
		return errors.New("seal init needs --data-dir and --shares-dir")
	}
	if err := checkShareCounts(f.shares, f.threshold, f.singleShare); err != nil {
		return err
	}
	hosts, err := serverHosts(f.listen, f.tlsHosts)
	if err != nil {
		return err
	}
	if _, err := os.Lstat(filepath.Join(f.dataDir, kms.RootKeyFile)); err == nil {
		return fmt.Errorf("%s already has a %s: seal init makes a new data dir", f.dataDir, kms.RootKeyFile)
	}
	// The share files are written once: refuse a directory that already
	// holds some, before anything is made.
	w, err := newShareWriter(f.sharesDir)
	if err != nil {
		return err
	}
	opts := kms.Options{DataDir: f.dataDir, ServerHosts: hosts}
	st, err := openStore(ctx, kmsServeFlags{store: f.store, postgresDSN: f.postgresDSN})
	if err != nil {
		return err
	}
	if st != nil {
		defer st.Close()
		opts.Store = st
	}
	_, statErr := os.Stat(f.dataDir)
	newDir := errors.Is(statErr, fs.ErrNotExist)
	set, files, err := datadir.Init(ctx, opts, f.shares, f.threshold)
	defer func() {
		for _, d := range files {
			clear(d)
		}
	}()
	if err != nil {
		return err
	}
	if err := w.write(set, files); err != nil {
		w.undo()
		undo := fmt.Sprintf("remove %s (its root key is unrecoverable without the shares) and run seal init again", f.dataDir)
		if newDir {
			if rerr := os.RemoveAll(f.dataDir); rerr == nil {
				undo = "the data dir was removed again; run seal init again"
			}
		}
		return fmt.Errorf("%w; %s", err, undo)
	}
	dir, _ := filepath.Abs(f.dataDir)
	fmt.Fprintf(out, "dcaas seal init: data-dir=%s share-set=%s threshold=%d shares=%d\n", dir, set.IDString(), set.Threshold, set.Shares)
	w.list(out)
	fmt.Fprintf(out, "Give each share file to its custodian and delete it here. Start the KMS (it starts sealed) with\n  dcaas kms serve --data-dir %s\nand unseal it with %d of the shares: dcaas kms unseal --share-file FILE\n", dir, set.Threshold)
	return nil
}

// writeOnce creates path (mode 0600) with data, refusing an existing file.
func writeOnce(path string, data []byte) error {
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := fh.Write(data); err != nil {
		fh.Close()
		os.Remove(path)
		return err
	}
	if err := fh.Sync(); err != nil {
		fh.Close()
		os.Remove(path)
		return err
	}
	return fh.Close()
}
