package sqlstore_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/audit"
	"github.com/dcaas/dcaas/internal/audit/audittest"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/kms"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
	"github.com/dcaas/dcaas/internal/store"
	"github.com/dcaas/dcaas/internal/store/sqlstore"
)

// auditScene is a KMS database, on a stopped KMS, whose audit log someone
// with write access to the database tampers with, and what a verifier
// holds: the audit key's public half and the checkpoint the KMS wrote to
// its data dir at its clean stop.
type auditScene struct {
	st   *sqlstore.DB  // the store, as the verifier reads it
	raw  *audittest.DB // the attacker's own connection
	key  kcrypto.LogVerifyKey
	kept store.AuditCheckpoint // DIR/audit-checkpoint.json, kept outside the database
	orig []audittest.Record
}

// newAuditScene runs a KMS on the backend, makes it write a dozen
// audit records and stops it.
func newAuditScene(t *testing.T, b backend) *auditScene {
	t.Helper()
	addr := b.fresh(t)
	st := b.mustOpen(t, addr)
	env := kmstest.Start(t, func(o *kms.Options) { o.Store = st })
	env.Tenant(t, "acme")
	cust, _ := env.App(t, "acme", "payments", api.RoleCustodian)
	for range 6 {
		cust.MustDo(t, "POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: api.KeyAES256GCM}, nil)
	}
	kmstest.WantError(t, cust.Do("POST", "/v1/tenants", api.CreateTenantRequest{Name: "x"}, nil), 403, api.CodeForbidden)
	env.Admin.MustDo(t, "GET", "/v1/audit", nil, nil)
	s := &auditScene{st: st, key: env.Server().KMS.AuditKey()}
	env.Stop() // a clean stop signs a last checkpoint

	raw, err := os.ReadFile(filepath.Join(env.DataDir, kms.AuditCheckpointFile))
	if err != nil {
		t.Fatal(err)
	}
	var cp api.AuditCheckpoint
	if err := json.Unmarshal(raw, &cp); err != nil {
		t.Fatal(err)
	}
	s.kept = store.AuditCheckpoint{Seq: cp.Seq, Hash: cp.Hash, Time: cp.Time, Sig: cp.Signature}
	if b.name == "sqlite" {
		s.raw, err = audittest.OpenSQLite(addr)
	} else {
		s.raw, err = audittest.OpenPostgres(addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.raw.Close() })
	if s.orig, err = s.raw.Records(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := int64(len(s.orig)); n < 10 || s.kept.Seq != n {
		t.Fatalf("the KMS wrote %d audit records and a last checkpoint of record %d; want at least 10, all checkpointed", n, s.kept.Seq)
	}
	return s
}

// restore puts the original log back.
func (s *auditScene) restore(t *testing.T) {
	t.Helper()
	if err := s.raw.Replace(t.Context(), s.orig); err != nil {
		t.Fatal(err)
	}
}

func (s *auditScene) verify(t *testing.T, cps ...store.AuditCheckpoint) (audit.Result, error) {
	t.Helper()
	latest, err := s.st.LatestAuditCheckpoint(t.Context())
	if err == nil {
		cps = append(cps, latest)
	} else if !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}
	return audit.Verify(t.Context(), s.st, s.key, cps...)
}

// TestKMSAuditTamper: someone with write access to the database, but not
// the audit key, rewrites, deletes, inserts, reorders, duplicates and
// truncates audit records of a real KMS, with SQL on the SQLite file or
// the PostgreSQL database, recomputing every later hash as the published
// format allows. audit.Verify, holding only the public key, names the
// first record changed; truncation is caught up to the latest checkpoint
// the verifier has, and not after it.
func TestKMSAuditTamper(t *testing.T) {
	each(t, func(t *testing.T, b backend) {
		s := newAuditScene(t, b)
		if res, err := s.verify(t, s.kept); err != nil || res.Records != int64(len(s.orig)) || res.Legacy != 0 || res.Checkpoints != 2 {
			t.Fatalf("Verify(untouched log) = %+v, %v", res, err)
		}
		i := len(s.orig) / 2
		for _, a := range audittest.Attacks {
			t.Run(a.Name, func(t *testing.T) {
				defer s.restore(t)
				recs, err := s.raw.Records(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				if err := s.raw.Replace(t.Context(), a.Apply(recs, i)); err != nil {
					t.Fatal(err)
				}
				var broken *audit.BrokenError
				_, err = s.verify(t, s.kept)
				if !errors.As(err, &broken) || broken.Seq != a.Broken(i) {
					t.Errorf("Verify() = %v, want a *BrokenError at record %d", err, a.Broken(i))
				}
			})
		}

		head := int64(len(s.orig))
		t.Run("truncated, checkpoints left", func(t *testing.T) {
			defer s.restore(t)
			if err := s.raw.Truncate(t.Context(), head-3, false); err != nil {
				t.Fatal(err)
			}
			var trunc *audit.TruncatedError
			if _, err := s.verify(t); !errors.As(err, &trunc) || trunc.Head != head-3 || trunc.Checkpoint.Seq != head {
				t.Errorf("Verify() = %v, want a *TruncatedError at %d of %d (the stored checkpoint)", err, head-3, head)
			}
		})
		t.Run("truncated with the stored checkpoints", func(t *testing.T) {
			defer func() {
				s.restore(t)
				if _, err := s.st.PutAuditCheckpoint(t.Context(), s.kept); err != nil {
					t.Fatal(err)
				}
			}()
			if err := s.raw.Truncate(t.Context(), head-3, true); err != nil {
				t.Fatal(err)
			}
			// What the database alone shows cannot tell: the verifier needs
			// a checkpoint from outside it.
			if res, err := s.verify(t); err != nil || res.Records != head-3 {
				t.Errorf("Verify(no outside checkpoint) = %d, %v; want %d, nil (undetectable)", res.Records, err, head-3)
			}
			var trunc *audit.TruncatedError
			if _, err := s.verify(t, s.kept); !errors.As(err, &trunc) || trunc.Head != head-3 {
				t.Errorf("Verify(kept checkpoint) = %v, want a *TruncatedError at %d", err, head-3)
			}
		})
		t.Run("signatures stripped", func(t *testing.T) {
			defer s.restore(t)
			if err := s.raw.StripSignatures(t.Context()); err != nil {
				t.Fatal(err)
			}
			if _, err := s.verify(t); !errors.Is(err, audit.ErrNotSigned) {
				t.Errorf("Verify() = %v, want ErrNotSigned", err)
			}
		})
		t.Run("checkpoint forged", func(t *testing.T) {
			defer func() {
				if _, err := s.raw.Exec(t.Context(), `UPDATE audit_checkpoints SET seq = seq - 1 WHERE seq = ?`, head+1); err != nil {
					t.Fatal(err)
				}
			}()
			if err := s.raw.ForgeCheckpoint(t.Context()); err != nil {
				t.Fatal(err)
			}
			if _, err := s.verify(t); !errors.Is(err, audit.ErrBadCheckpoint) {
				t.Errorf("Verify() = %v, want ErrBadCheckpoint", err)
			}
		})
		if res, err := s.verify(t, s.kept); err != nil || res.Records != head {
			t.Errorf("Verify(restored log) = %+v, %v", res, err)
		}
	})
}
