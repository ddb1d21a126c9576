package faults_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
	"github.com/dcaas/dcaas/sidecar"
)

// TestSidecarAuditFailsClosed: with its data dir full, a sidecar refuses
// key management (import, seal, evict) with 503 and does nothing — before,
// it answered 200 and its local audit log stayed empty. Operations on keys
// already loaded go on. With space again, the records name the keys.
func TestSidecarAuditFailsClosed(t *testing.T) {
	dir := mountTmpfs(t, "2m")
	w := newWorld(t, nil)
	var logs bytes.Buffer
	s := w.startSidecar(t, func(c *sidecar.Config) {
		c.DataDir = dir
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	dks := w.createKeys(t, 2, 1, api.KeyAES256GCM)
	s.load(t, w, dks[:1])
	var cert api.WrappingCertificate
	s.do(t, "GET", "/v1/wrapping-certificate", nil, &cert)
	var wrapped api.WrappedKeys
	w.cust.MustDo(t, "POST", "/v1/keys/rewrap", api.RewrapRequest{EKBs: [][]byte{dks[1].EKB}, WrappingCertPEM: cert.CertPEM}, &wrapped)

	filler := fillDisk(t, dir)
	fillPage(t, filepath.Join(dir, "audit.jsonl"))
	err := s.local.Do(t.Context(), "POST", "/v1/keys/import", &wrapped, nil)
	kmstest.WantError(t, err, 503, api.CodeUnavailable)
	err = s.local.Do(t.Context(), "POST", "/v1/keys/seal", api.SealRequest{KeyIDs: []string{dks[0].KeyID}}, nil)
	kmstest.WantError(t, err, 503, api.CodeUnavailable)
	err = s.local.Do(t.Context(), "DELETE", "/v1/keys/"+dks[0].KeyID, nil, nil)
	kmstest.WantError(t, err, 503, api.CodeUnavailable)
	var keys api.LoadedKeys
	s.do(t, "GET", "/v1/keys", nil, &keys)
	if len(keys.Keys) != 1 || keys.Keys[0].KeyID != dks[0].KeyID {
		t.Fatalf("keys after the refused calls = %+v, want only %s (nothing imported, sealed or evicted)", keys.Keys, dks[0].KeyID)
	}
	// Operations are not audited locally: they go on.
	var enc api.EncryptResponse
	s.do(t, "POST", "/v1/crypto/encrypt", api.EncryptRequest{KeyRef: api.KeyRef{KeyID: dks[0].KeyID}, Plaintext: []byte("x")}, &enc)

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	var loaded api.Loaded
	if err := s.local.Do(t.Context(), "POST", "/v1/keys/import", &wrapped, &loaded); err != nil {
		t.Fatalf("import with space again: %v\n%s", err, logs.String())
	}
	var found bool
	for _, rec := range readLocalAudit(t, filepath.Join(dir, "audit.jsonl")) {
		if rec.Action == "keys.import" && rec.Outcome == "ok" && slices.Contains(rec.Keys, dks[1].KeyID) {
			found = true
		}
	}
	if !found {
		t.Errorf("no keys.import record naming %s in the local audit log", dks[1].KeyID)
	}
}

// fillPage appends newlines to the audit log until the disk refuses one:
// the last page of a file takes small appends even when the disk is full.
func fillPage(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for i := 0; ; i++ {
		if _, err := f.Write([]byte("\n")); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			return
		}
		if i > 1<<20 {
			t.Fatal("the audit log takes a mebibyte more on a full disk")
		}
	}
}

type localRecord struct {
	Action  string   `json:"action"`
	Keys    []string `json:"keys"`
	Outcome string   `json:"outcome"`
}

func readLocalAudit(t *testing.T, path string) []localRecord {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []localRecord
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue // fillPage's padding
		}
		var r localRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		out = append(out, r)
	}
	return out
}
