package kms_test

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/audit"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/kms"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
	"github.com/dcaas/dcaas/internal/store"
)

// TestAuditKeyRotation: an admin rotates the audit key; the log, verified
// with its first key alone (the one verifiers pinned, still in
// DIR/audit-key.pem and GET /v1/audit/key), brings the new key in with the
// rotation record. The earlier key is retired once replicas had the time
// to switch, and signs nothing after; a restart signs with the new key;
// a prune past the rotation keeps the log verifiable from its start.
func TestAuditKeyRotation(t *testing.T) {
	env, clock := pruneEnv(t)
	env.Tenant(t, "acme")
	cust, _ := env.App(t, "acme", "payments-api", api.RoleCustodian)
	srv := env.Server()
	first := srv.KMS.AuditKey()

	var view api.AuditKey
	env.Anonymous().MustDo(t, "GET", "/v1/audit/key", nil, &view)
	if view.KeyID != first.ID() || view.CurrentKeyID != first.ID() {
		t.Fatalf("GET /v1/audit/key before a rotation = %+v", view)
	}
	kmstest.WantError(t, cust.Do("POST", "/v1/audit/key/rotate", nil, nil), http.StatusForbidden, api.CodeForbidden)
	kmstest.WantError(t, env.Admin.Do("POST", "/v1/audit/key/retire", nil, nil), http.StatusConflict, api.CodeConflict)

	env.Admin.MustDo(t, "POST", "/v1/audit/key/rotate", nil, &view)
	second := srv.KMS.AuditSigningKey()
	if view.KeyID != first.ID() || view.CurrentKeyID != second.ID() || second.Equal(first) {
		t.Fatalf("POST /v1/audit/key/rotate = %+v; the KMS signs with %s", view, second.ID())
	}
	cust.DataKey(t, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	res, err := audit.Verify(t.Context(), srv.Store, first)
	if err != nil || len(res.KeyChanges) != 1 || res.KeyChanges[0].KeyID != second.ID() {
		t.Fatalf("Verify(first key) after the rotation = %+v, %v", res, err)
	}

	// Retiring the first key: refused until replicas had two check
	// intervals to switch, then once.
	kmstest.WantError(t, env.Admin.Do("POST", "/v1/audit/key/retire", nil, nil), http.StatusConflict, api.CodeConflict)
	clock.Advance(2*time.Minute + time.Second)
	env.Admin.MustDo(t, "POST", "/v1/audit/key/retire", nil, &view)
	kmstest.WantError(t, env.Admin.Do("POST", "/v1/audit/key/retire", nil, nil), http.StatusConflict, api.CodeConflict)
	var cp api.AuditCheckpoint
	env.Admin.MustDo(t, "POST", "/v1/audit/checkpoints", nil, &cp)
	if cp.KeyID != second.ID() {
		t.Fatalf("the checkpoint is signed by %s, want %s", cp.KeyID, second.ID())
	}
	res, err = audit.Verify(t.Context(), srv.Store, first, store.AuditCheckpoint{Seq: cp.Seq, Hash: cp.Hash, Time: cp.Time, Sig: cp.Signature})
	if err != nil || len(res.KeyChanges) != 2 || !res.KeyChanges[1].Retired || res.Checkpoints != 1 {
		t.Fatalf("Verify(first key) after the retirement = %+v, %v", res, err)
	}

	// A restart: the new key signs; verifiers still get the first.
	env.Restart()
	srv = env.Server()
	if !srv.KMS.AuditKey().Equal(first) || !srv.KMS.AuditSigningKey().Equal(second) {
		t.Fatalf("after a restart the KMS verifies with %s and signs with %s", srv.KMS.AuditKey().ID(), srv.KMS.AuditSigningKey().ID())
	}
	pemFile, err := os.ReadFile(filepath.Join(env.DataDir, kms.AuditKeyFile))
	if err != nil || !bytes.Equal(pemFile, first.PEM()) {
		t.Fatalf("DIR/%s after a rotation = %q, %v; want the first key", kms.AuditKeyFile, pemFile, err)
	}
	cust.DataKey(t, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	if _, err := audit.Verify(t.Context(), srv.Store, first); err != nil {
		t.Fatalf("Verify(first key) after a restart = %v", err)
	}

	// A prune past the rotation and the retirement.
	recs := auditRecords(t, env.Admin)
	through := lastSigned(t, recs, recs[len(recs)-1].Seq-1)
	clock.Advance(2 * time.Hour)
	var start api.AuditStart
	env.Admin.MustDo(t, "POST", "/v1/audit/prune", api.AuditPruneRequest{Through: through.Seq, Hash: through.Hash}, &start)
	s, err := srv.KMS.AuditStart(t.Context())
	if err != nil || s.Seq != through.Seq || len(s.Keys) != 2 {
		t.Fatalf("the start after a prune past the rotation = %+v, %v; want it to carry 2 key records", s, err)
	}
	cust.DataKey(t, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	if res, err := audit.VerifyAfter(t.Context(), srv.Store, first, s); err != nil || res.Start != through.Seq {
		t.Fatalf("VerifyAfter(first key) of the pruned log = %+v, %v", res, err)
	}
	// The forged key (no record) is refused: the first key only trusts
	// what the log brings in.
	other, err := kcrypto.GenerateLogKey()
	if err != nil {
		t.Fatal(err)
	}
	defer other.Wipe()
	if _, err := audit.VerifyAfter(t.Context(), srv.Store, other.Public(), s); err == nil {
		t.Fatal("the pruned log verified with another key")
	}
}
