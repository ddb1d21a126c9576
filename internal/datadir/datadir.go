// Package datadir opens a KMS data dir where the process is wired: the
// file seal's root key (DIR/root.key) and the SQLite database
// (DIR/kms.db), unless the caller brings its own store (PostgreSQL) or
// sealer (PKCS#11), and then the KMS over them (kms.Open). internal/kms
// itself knows only the store.Store and seal.Sealer interfaces; this
// package, cmd/dcaas and the test fixtures choose the implementations.
//
// Start with Open.
package datadir

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/dcaas/dcaas/internal/atomicfile"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/kms"
	"github.com/dcaas/dcaas/internal/seal"
	"github.com/dcaas/dcaas/internal/seal/file"
	"github.com/dcaas/dcaas/internal/secret"
	"github.com/dcaas/dcaas/internal/store/sqlstore"
)

// Open opens (initializing on first use) the KMS data dir opts.DataDir:
// when opts.Sealer is nil, the file seal of DIR/root.key (created on first
// use, under opts.Passphrase if set); when opts.Store is nil, the SQLite
// database DIR/kms.db; then the KMS (kms.Open), and on first use it
// writes the admin credentials DIR/admin/{key,cert}.pem. The Server closes
// what Open opened; a Store or Sealer the caller set stays the caller's
// (unless it sets OwnStore or OwnSealer itself).
//
// A root key this start created is checked against the store before
// anything is sealed under it (kms.CheckSealer): a new replica's empty
// data dir next to a store that another root key sealed is refused, and
// every file this start made in the data dir is removed again, so the
// next attempt (with the right root.key copied in) starts clean.
func Open(ctx context.Context, opts kms.Options) (_ *kms.Server, err error) {
	if opts.DataDir == "" {
		return nil, errors.New("kms: a data dir is required")
	}
	before, err := snapshot(opts.DataDir)
	if err != nil {
		return nil, fmt.Errorf("kms: data dir: %w", err)
	}
	var closers []func() error
	defer func() {
		if err == nil {
			return
		}
		for _, c := range slices.Backward(closers) {
			_ = c()
		}
	}()
	newRoot := false
	if opts.Sealer == nil {
		if _, serr := os.Lstat(filepath.Join(opts.DataDir, kms.RootKeyFile)); errors.Is(serr, fs.ErrNotExist) {
			newRoot = true
		}
		fsl, err := file.Open(opts.DataDir, opts.Passphrase)
		if err != nil {
			return nil, err
		}
		closers = append(closers, fsl.Close)
		opts.Sealer, opts.OwnSealer = fsl, true
	}
	if opts.Store == nil {
		db, err := sqlstore.OpenSQLite(ctx, filepath.Join(opts.DataDir, kms.DBFile))
		if err != nil {
			return nil, err
		}
		closers = append(closers, db.Close)
		opts.Store, opts.OwnStore = db, true
	}
	if newRoot {
		if err := kms.CheckSealer(ctx, opts.Store, opts.Sealer); err != nil {
			return nil, refuse(opts, before, &closers, err)
		}
	}
	srv, err := kms.Open(ctx, opts)
	if err != nil {
		// Another replica may have initialized the store between the
		// check and kms.Open (two new replicas started at once, each with
		// its own new root key): if the store's CA is not ours, nothing
		// was sealed under our root key (the CA is the first thing
		// sealed), and the files go as well.
		if newRoot && errors.Is(kms.CheckSealer(ctx, opts.Store, opts.Sealer), seal.ErrOpen) {
			return nil, refuse(opts, before, &closers, err)
		}
		return nil, err
	}
	if err := ensureAdmin(ctx, srv.KMS, opts.DataDir); err != nil {
		srv.Close()
		closers = nil // the Server closed them
		return nil, err
	}
	return srv, nil
}

// ensureAdmin writes admin credentials into the data dir the first time:
// DIR/admin/key.pem (0600) and DIR/admin/cert.pem, issued by k.
func ensureAdmin(ctx context.Context, k *kms.KMS, dir string) error {
	certPath := filepath.Join(dir, kms.AdminCert)
	if _, err := os.Stat(certPath); err == nil {
		return nil
	}
	key, err := kcrypto.GenerateIdentityKey()
	if err != nil {
		return err
	}
	keyPEM, err := kcrypto.MarshalPrivateKeyPEM(key)
	if err != nil {
		return err
	}
	defer secret.Zero(keyPEM)
	der, err := k.IssueAdmin(ctx, key.Public())
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(certPath), 0o700); err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(dir, kms.AdminKey), keyPEM, 0o600); err != nil {
		return err
	}
	return atomicfile.Write(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// refuse closes what Open opened, removes every file and directory this
// start made in the data dir (nothing was sealed under its new root key)
// and returns err, saying what to do when the root key is the wrong one.
func refuse(opts kms.Options, before map[string]bool, closers *[]func() error, err error) error {
	for _, c := range slices.Backward(*closers) {
		_ = c()
	}
	*closers = nil
	if errors.Is(err, seal.ErrOpen) {
		err = fmt.Errorf("kms: %s had no %s, and the store was initialized under another root key: copy %s from a replica (or its backup) into the data dir; nothing was written: %w",
			opts.DataDir, kms.RootKeyFile, kms.RootKeyFile, err)
	}
	if rerr := removeNew(opts.DataDir, before); rerr != nil {
		return errors.Join(err, fmt.Errorf("kms: removing the files this start made in %s: %w", opts.DataDir, rerr))
	}
	return err
}

// snapshot returns the paths under dir (dir itself included) that exist;
// none if dir does not.
func snapshot(dir string) (map[string]bool, error) {
	seen := make(map[string]bool)
	err := filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			if path == dir && errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		seen[path] = true
		return nil
	})
	return seen, err
}

// removeNew removes what exists under dir (dir included) and is not in
// before, deepest first.
func removeNew(dir string, before map[string]bool) error {
	after, err := snapshot(dir)
	if err != nil {
		return err
	}
	var made []string
	for p := range after {
		if !before[p] {
			made = append(made, p)
		}
	}
	// Longer paths first: a directory's entries go before it.
	slices.SortFunc(made, func(a, b string) int { return len(b) - len(a) })
	var errs []error
	for _, p := range made {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
