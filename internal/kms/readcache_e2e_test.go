package kms_test

import (
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/kms"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
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
	err = encrypt()
	switch {
	case time.Since(warmed) < time.Second && err != nil:
		t.Fatalf("within the cache's second of the last read, the cached identity was not used: %v", err)
	case err != nil:
		t.Logf("the machine took over a second: the cached identity had expired (%v)", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for err == nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		err = encrypt()
	}
	kmstest.WantError(t, err, http.StatusForbidden, api.CodeRevoked)
}
