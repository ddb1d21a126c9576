package console

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/dcaas/dcaas/client"
	"github.com/dcaas/dcaas/internal/audit"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/store"
)

// auditFollower keeps a copy of the audit log, read through GET /v1/audit
// page by page from where it stopped, and verifies it the way `dcaas
// audit verify` does (audit.Verify: hashes, chain, signatures, the KMS's
// latest checkpoint).
type auditFollower struct {
	kms    *client.KMS
	pinned kcrypto.LogVerifyKey

	mu      sync.Mutex
	records []store.AuditRecord
}

// verification is what the audit page shows about the chain.
type verification struct {
	OK       bool
	Records  int64
	Head     string
	KeyID    string
	Pinned   bool
	Legacy   int64
	Problem  string
	Checkpt  int64 // the checkpoint's record, 0 when there is none
	Verified time.Time
}

// refresh reads the records after the last one held. Reading is audited,
// so each page adds a record: it stops at a page of nothing but reads.
func (f *auditFollower) refresh(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for {
		var after int64
		if n := len(f.records); n > 0 {
			after = f.records[n-1].Seq
		}
		page, err := f.kms.Audit(ctx, after)
		if err != nil {
			return err
		}
		onlyReads := true
		for _, r := range page.Records {
			f.records = append(f.records, store.AuditRecord{
				Seq: r.Seq, Time: r.Time, Caller: r.Caller, Role: r.Role, Action: r.Action, Tenant: r.Tenant,
				KeyID: r.KeyID, Outcome: r.Outcome, Code: r.Code, PrevHash: r.PrevHash, Hash: r.Hash, Sig: r.Signature,
			})
			onlyReads = onlyReads && r.Action == "audit.read"
		}
		if len(page.Records) == 0 || onlyReads {
			return nil
		}
	}
}

// AuditAfter implements audit.Reader over the copy (f.mu held).
func (f *auditFollower) AuditAfter(_ context.Context, after int64, limit int) ([]store.AuditRecord, error) {
	i := 0
	for i < len(f.records) && f.records[i].Seq <= after {
		i++
	}
	return f.records[i:min(len(f.records), i+limit)], nil
}

// verify checks the copy with the pinned key, or else the KMS's.
func (f *auditFollower) verify(ctx context.Context, now time.Time) verification {
	v := verification{Verified: now, Pinned: !f.pinned.IsZero()}
	key := f.pinned
	if key.IsZero() {
		ak, err := f.kms.AuditKey(ctx)
		if err != nil {
			v.Problem = "The audit key could not be read from the KMS: " + err.Error()
			return v
		}
		if key, err = kcrypto.ParseLogVerifyKeyPEM([]byte(ak.PublicKeyPEM)); err != nil {
			v.Problem = "The KMS's audit key does not parse: " + err.Error()
			return v
		}
	}
	v.KeyID = key.ID()
	var cps []store.AuditCheckpoint
	cp, err := f.kms.AuditCheckpoint(ctx)
	switch {
	case err == nil:
		cps = append(cps, store.AuditCheckpoint{Seq: cp.Seq, Hash: cp.Hash, Time: cp.Time, Sig: cp.Signature})
		v.Checkpt = cp.Seq
	case !errors.Is(err, client.ErrNotFound):
		v.Problem = "The latest checkpoint could not be read: " + err.Error()
		return v
	}
	f.mu.Lock()
	res, err := audit.Verify(ctx, f, key, cps...)
	f.mu.Unlock()
	v.Records, v.Legacy = res.Records, res.Legacy
	v.Head = fmt.Sprintf("%x", res.Head)
	if err != nil {
		v.Problem = err.Error()
		return v
	}
	v.OK = true
	return v
}

// auditFilter selects records by actor (caller DN, substring), action
// (prefix) and key id (exact).
type auditFilter struct {
	Actor, Action, Key string
}

// match returns up to limit records that pass, newest first.
func (f *auditFollower) match(flt auditFilter, limit int) (out []store.AuditRecord, total int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := len(f.records) - 1; i >= 0; i-- {
		r := f.records[i]
		if flt.Actor != "" && !strings.Contains(r.Caller, flt.Actor) ||
			flt.Action != "" && !strings.HasPrefix(r.Action, flt.Action) ||
			flt.Key != "" && r.KeyID != flt.Key {
			continue
		}
		total++
		if len(out) < limit {
			out = append(out, r)
		}
	}
	return out, total
}
