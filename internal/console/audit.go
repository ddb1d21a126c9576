package console

import (
	"bytes"
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

// keepRecords is how many of the newest records the console holds for the
// audit page's list and filters. Every record is verified once, as it is
// read, and then only the newest are kept: a year of a KMS's log does not
// fit in a console's memory, nor its verification in a page view.
const keepRecords = 10000

// fullEvery is how often the console verifies the whole log again from its
// first record, as `dcaas audit verify` does: records it verified already
// are not read again in between, so a change to one of them (not to the
// chain's end, which new records must extend) shows from the next full
// pass.
const fullEvery = time.Hour

// auditFollower follows the audit log, read through GET /v1/audit page by
// page from where it stopped, and verifies it the way `dcaas audit verify`
// does (hashes, chain, signatures, the KMS's latest checkpoint), each
// record once, with an audit.Verifier it feeds as the log grows.
type auditFollower struct {
	kms    *client.KMS
	pinned kcrypto.LogVerifyKey

	keep int // records kept, keepRecords (tests set fewer)

	mu     sync.Mutex
	v      *audit.Verifier       // fed every record from the first (nil: none yet)
	fullAt time.Time             // when v started from the first record
	cp     store.AuditCheckpoint // the latest checkpoint v holds
	last   int64                 // the last record read
	recent []store.AuditRecord   // the newest records read (up to keepRecords), oldest first
}

// verification is what the audit page shows about the chain.
type verification struct {
	OK       bool
	Records  int64
	Head     string
	KeyID    string
	Pinned   bool
	Legacy   int64
	Start    int64 // records 1 to Start were pruned (archived)
	Keys     int   // rotations and retirements of the audit key the log records
	Problem  string
	Checkpt  int64 // the checkpoint's record, 0 when there is none
	Verified time.Time
	FullAt   time.Time // when the whole log was last read from its first record
}

// follow reads the records written since the last call and verifies them
// with the pinned audit key, or else the KMS's, after those read before
// (the whole log again when the key changed, or when a new checkpoint of
// the KMS covers a record older than those kept). An error is a failure
// to read the log; what the verification found is in the verification.
func (f *auditFollower) follow(ctx context.Context, now time.Time) (verification, error) {
	v := verification{Verified: now, Pinned: !f.pinned.IsZero()}
	key, cp, start, problem := f.trust(ctx)
	f.mu.Lock()
	defer f.mu.Unlock()
	if problem != "" {
		// Without a key the records are read for the list only; the next
		// verification starts again from the first record.
		f.v = nil
		v.Problem = problem
		return v, f.read(ctx)
	}
	v.KeyID = key.ID()
	// A prune past the records read (or the first read) starts again from
	// the log's start.
	if f.v == nil || f.v.Key().ID() != key.ID() || now.Sub(f.fullAt) >= fullEvery || start.Seq > f.last {
		f.restart(key, start, now)
	}
	if cp != nil && (cp.Seq != f.cp.Seq || !bytes.Equal(cp.Sig, f.cp.Sig)) {
		err := f.v.AddCheckpoint(*cp) // any other failure is the Result's
		if r, ok := f.kept(cp.Seq); errors.Is(err, audit.ErrCheckpointBehind) && (!ok || !bytes.Equal(r.Hash, cp.Hash)) {
			// Not among the records kept (or not matching one): verify the
			// whole log again, holding the checkpoint.
			f.restart(key, start, now)
			_ = f.v.AddCheckpoint(*cp)
		}
		f.cp = *cp
	}
	if cp != nil {
		v.Checkpt = cp.Seq
	}
	if err := f.read(ctx); err != nil {
		return v, err
	}
	res, err := f.v.Result()
	v.FullAt = f.fullAt
	v.Records, v.Legacy, v.Start, v.Keys = res.Records, res.Legacy, res.Start, len(res.KeyChanges)
	v.Head = fmt.Sprintf("%x", res.Head)
	if err != nil {
		v.Problem = err.Error()
		return v, nil
	}
	v.OK = true
	return v, nil
}

// trust reads the audit key (the pinned one, or the KMS's), the KMS's
// latest checkpoint (nil: none yet) and the log's start (the zero Start:
// never pruned), or says why it could not.
func (f *auditFollower) trust(ctx context.Context) (kcrypto.LogVerifyKey, *store.AuditCheckpoint, audit.Start, string) {
	key := f.pinned
	if key.IsZero() {
		ak, err := f.kms.AuditKey(ctx)
		if err != nil {
			return key, nil, audit.Start{}, "The audit key could not be read from the KMS: " + err.Error()
		}
		if key, err = kcrypto.ParseLogVerifyKeyPEM([]byte(ak.PublicKeyPEM)); err != nil {
			return key, nil, audit.Start{}, "The KMS's audit key does not parse: " + err.Error()
		}
	}
	st, err := f.kms.AuditStart(ctx)
	if err != nil {
		return key, nil, audit.Start{}, "The audit log's start could not be read: " + err.Error()
	}
	start := audit.Start{Seq: st.Seq, Hash: st.Hash, Sig: st.Signature, Keys: st.Keys}
	cp, err := f.kms.AuditCheckpoint(ctx)
	switch {
	case err == nil:
		return key, &store.AuditCheckpoint{Seq: cp.Seq, Hash: cp.Hash, Time: cp.Time, Sig: cp.Signature}, start, ""
	case errors.Is(err, client.ErrNotFound):
		return key, nil, start, ""
	}
	return key, nil, start, "The latest checkpoint could not be read: " + err.Error()
}

// restart starts verifying from the log's start again at now (f.mu held):
// the next read reads the whole log the database holds, and its start
// must be explained by the record of the prune that set it.
func (f *auditFollower) restart(key kcrypto.LogVerifyKey, start audit.Start, now time.Time) {
	f.v, _ = audit.NewVerifier(key) // a zero key is refused in its Result
	_ = f.v.StartAfter(start, true) // a start the key did not sign sticks as the failure
	f.fullAt = now
	f.cp = store.AuditCheckpoint{}
	f.last, f.recent = start.Seq, nil
}

// read reads the records after the last one read (f.mu held), feeds each
// to the verifier and keeps the newest. Reading is audited, so each page
// adds a record: it stops at a page of nothing but reads.
func (f *auditFollower) read(ctx context.Context) error {
	for {
		page, err := f.kms.Audit(ctx, f.last)
		if err != nil {
			return err
		}
		onlyReads := true
		for _, r := range page.Records {
			rec := audit.FromAPI(r)
			if f.v != nil {
				_ = f.v.Add(rec) // the first failure sticks: Result reports it
			}
			f.recent = append(f.recent, rec)
			f.last = rec.Seq
			onlyReads = onlyReads && r.Action == "audit.read"
		}
		if n := len(f.recent); n > 2*f.keep {
			f.recent = append(f.recent[:0:0], f.recent[n-f.keep:]...)
		}
		if len(page.Records) == 0 || onlyReads {
			return nil
		}
	}
}

// kept is record seq if it is among those kept (f.mu held).
func (f *auditFollower) kept(seq int64) (store.AuditRecord, bool) {
	if len(f.recent) == 0 {
		return store.AuditRecord{}, false
	}
	i := seq - f.recent[0].Seq
	if i < 0 || i >= int64(len(f.recent)) || f.recent[i].Seq != seq {
		return store.AuditRecord{}, false
	}
	return f.recent[i], true
}

// auditFilter selects records by actor (caller DN, substring), action
// (prefix) and key id (exact).
type auditFilter struct {
	Actor, Action, Key string
}

// match returns up to limit records that pass among the newest kept
// (f.keep), newest first, and how many of those pass.
func (f *auditFollower) match(flt auditFilter, limit int) (out []store.AuditRecord, total int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := len(f.recent) - 1; i >= max(0, len(f.recent)-f.keep); i-- {
		r := f.recent[i]
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
