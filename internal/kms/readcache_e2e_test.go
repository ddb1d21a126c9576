package kms_test

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/datadir"
	"github.com/dcaas/dcaas/internal/kms"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
	"github.com/dcaas/dcaas/internal/store"
	"github.com/dcaas/dcaas/internal/store/sqlstore"
)

// TestReadCacheOnTheCentralPath: on SQLite the KMS remembers the caller's
// identity and the key's registry entry between central operations
// (readcache.go). A change made through the KMS takes effect at the very
// next request; one made behind its back (another handle on the SQLite
// file, which is not supported) is unseen for at most the cache's second —
// which is how this test sees that the cache is used at all.
func TestReadCacheOnTheCentralPath(t *testing.T) {
	w := newWorld(t, kcrypto.DefaultKEM())
	dk := w.dataKey(t, w.cust, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	ref := api.KeyRef{EKB: dk.EKB}
	encrypt := func() error {
		_, err := centralEncrypt(w.cust, ref, []byte("pan 4111"))
		return err
	}

	// Through the KMS: disabling the key is seen at once.
	if err := encrypt(); err != nil {
		t.Fatal(err)
	}
	w.cust.MustDo(t, "DELETE", "/v1/datakeys/"+dk.KeyID, nil, nil)
	kmstest.WantError(t, encrypt(), http.StatusForbidden, api.CodeRevoked)

	// Behind its back: a revocation written to the file by another
	// handle is not seen while the identity is cached, and is seen once
	// the entry expires.
	other := w.dataKey(t, w.cust, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	ref = api.KeyRef{EKB: other.EKB}
	db, err := sqlstore.OpenSQLite(t.Context(), filepath.Join(w.env.DataDir, kms.DBFile))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	warmed := time.Now()
	if err := encrypt(); err != nil {
		t.Fatal(err)
	}
	if err := db.RevokeCert(t.Context(), w.custCreds.Serial, time.Now()); err != nil {
		t.Fatal(err)
	}
	err = unseenThenSeen(t, warmed, "identity", encrypt)
	kmstest.WantError(t, err, http.StatusForbidden, api.CodeRevoked)
}

// TestSecondKMSOnOneDatabaseRefused: the embedded store serves one KMS
// process, and the read cache counts on it: a second KMS opened on the
// same data dir while the first runs is refused with what to do; once the
// first has stopped, it opens.
func TestSecondKMSOnOneDatabaseRefused(t *testing.T) {
	env := kmstest.Start(t, nil)
	_, err := datadir.Open(t.Context(), env.Opts)
	if err == nil || !errors.Is(err, store.ErrClaimed) || !strings.Contains(err.Error(), "the database is in use by another KMS process") ||
		!strings.Contains(err.Error(), "process "+strconv.Itoa(os.Getpid())) || !strings.Contains(err.Error(), "--store postgres") {
		t.Fatalf("second Open = %v; want a refusal naming this process and --store postgres", err)
	}
	env.Admin.MustDo(t, "GET", "/v1/tenants", nil, nil) // the first serves on
	env.Stop()
	srv, err := datadir.Open(t.Context(), env.Opts)
	if err != nil {
		t.Fatalf("Open after the first stopped: %v", err)
	}
	srv.Close()
}

// TestReleaseFromTheReadCache: releases read the registry through the
// cache too (a rollout loading the same keys into many sidecars reads
// them once a second). A change the cache cannot see (written to the file
// behind the KMS's back) goes unseen for at most that second, and a key
// disabled that way is still refused at once: each cached entry carries
// where the revocation feed stood when it was read, and the release's
// transaction looks at the events since (stillReleasable).
func TestReleaseFromTheReadCache(t *testing.T) {
	w := lifecycleWorld(t, 8)
	cert := w.side.Enrollment.WrappingCertPEM
	db, err := sqlstore.OpenSQLite(t.Context(), filepath.Join(w.env.DataDir, kms.DBFile))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	// Usage stored behind the KMS's back (no feed event): the cached
	// count is used for up to a second, then the stored one refuses.
	used := w.dataKey(t, w.cust, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	warmed := time.Now()
	if _, err := w.rewrap(w.cust, cert, used.EKB); err != nil {
		t.Fatal(err)
	}
	if _, err := db.AddKeyUsage(t.Context(), "acme", []store.KeyUsage{{KeyID: used.KeyID, Version: 1, Encryptions: 8, Bytes: 80}}); err != nil {
		t.Fatal(err)
	}
	err = unseenThenSeen(t, warmed, "registry entry", func() error {
		_, err := w.rewrap(w.cust, cert, used.EKB)
		return err
	})
	kmstest.WantError(t, err, http.StatusForbidden, api.CodeUsageLimitExceeded)

	// Disabled behind the KMS's back (with its feed event): refused at
	// the very next release, cached entry or not.
	disabled := w.dataKey(t, w.cust, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	if _, err := w.rewrap(w.cust, cert, disabled.EKB); err != nil {
		t.Fatal(err)
	}
	if err := db.DisableKey(t.Context(), disabled.KeyID, time.Now()); err != nil {
		t.Fatal(err)
	}
	_, err = w.rewrap(w.cust, cert, disabled.EKB)
	kmstest.WantError(t, err, http.StatusForbidden, api.CodeRevoked)
}

// unseenThenSeen calls call right after a change made behind the KMS's
// back: it must succeed while the cached what, read at warmed, is within
// its second (unless the machine took longer than that); then call is
// repeated until it fails (the entry expired), and that error returned.
func unseenThenSeen(t *testing.T, warmed time.Time, what string, call func() error) error {
	t.Helper()
	err := call()
	switch {
	case time.Since(warmed) < time.Second && err != nil:
		t.Fatalf("within the cache's second of the last read, the cached %s was not used: %v", what, err)
	case err != nil:
		t.Logf("the machine took over a second: the cached %s had expired (%v)", what, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for err == nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		err = call()
	}
	return err
}
