package kms

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/audit"
	"github.com/dcaas/dcaas/internal/store"
)

// Pruning the audit log (internal/audit, Start). Every central operation is
// one record, so a KMS on the central path writes millions a day and the
// log must be able to shed its oldest records once they are archived
// (dcaas audit archive). POST /v1/audit/prune moves the log's start to a
// signed record, in one transaction with the call's own record, which
// names the new start (the record a verifier needs to trust it); the
// records below it are then deleted in the background, in batches.

const (
	// auditStartSetting holds the log's start (audit.Start.Marshal); unset
	// until the first prune.
	auditStartSetting = "audit-start"
	// pruneBatch is how many records one transaction of the deletion
	// removes, so that appends are never held up for long.
	pruneBatch = 2000
)

// auditStartIn reads the log's start from st and its stored bytes (nil:
// never pruned), for a SwapSetting from it.
func auditStartIn(ctx context.Context, st interface {
	GetSetting(ctx context.Context, name string) ([]byte, error)
}) (audit.Start, []byte, error) {
	raw, err := st.GetSetting(ctx, auditStartSetting)
	if errors.Is(err, store.ErrNotFound) {
		return audit.Start{}, nil, nil
	}
	if err != nil {
		return audit.Start{}, nil, err
	}
	s, err := audit.ParseStart(raw)
	return s, raw, err
}

// ReadAuditStart reads the signed record the audit log of a KMS database
// starts after (the zero Start: never pruned), for verifiers that read
// the database itself (dcaas audit verify). Like every row, it is only as
// good as the database: a verifier checks it (audit.VerifyAfter).
func ReadAuditStart(ctx context.Context, db interface {
	GetSetting(ctx context.Context, name string) ([]byte, error)
}) (audit.Start, error) {
	s, _, err := auditStartIn(ctx, db)
	return s, err
}

// AuditStart reads the signed record the audit log starts after (the zero
// Start: never pruned).
func (k *KMS) AuditStart(ctx context.Context) (audit.Start, error) {
	s, _, err := auditStartIn(ctx, k.st)
	return s, err
}

func (k *KMS) apiStart(s audit.Start) api.AuditStart {
	return api.AuditStart{Seq: s.Seq, Hash: s.Hash, Signature: s.Sig, Keys: s.Keys, KeyID: k.AuditKey().ID()}
}

// checkPruneRequest checks what a prune names, on its own.
func checkPruneRequest(r api.AuditPruneRequest) error {
	switch {
	case r.Through < 1:
		return api.Errorf(api.CodeInvalidArgument, "through must be the number of a record of the audit log (1 or more).")
	case len(r.Hash) != 32:
		return api.Errorf(api.CodeInvalidArgument, "hash must be the 32-byte hash of record %d (the last record of its archive).", r.Through)
	}
	return nil
}

// pruneAudit is POST /v1/audit/prune.
func (k *KMS) pruneAudit(ctx context.Context, c *call) (any, error) {
	var req api.AuditPruneRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	if err := checkPruneRequest(req); err != nil {
		return nil, err
	}
	c.keyID = fmt.Sprintf("%d:%x", req.Through, req.Hash)
	use, err := k.approvalFor(ctx, c, api.ApprovalPruneAudit, "", "", req)
	if err != nil {
		return nil, err
	}
	start, raw, err := auditStartIn(ctx, k.st)
	if err != nil {
		return nil, storeErr(err, "audit log start")
	}
	rec, keyRecs, err := k.prunable(ctx, start, req)
	if err != nil {
		return nil, err
	}
	// The start carries the records that changed the audit key up to it,
	// which a verifier of what stays needs to know which keys sign.
	next := audit.StartOf(rec)
	next.Keys = slices.Clone(start.Keys)
	for _, r := range keyRecs {
		next.Keys = append(next.Keys, audit.ToAPI(r))
	}
	c.keyID = next.String() // the record that lets a verifier trust the new start
	err = c.commit(ctx, func(tx store.Tx) error {
		if err := use.consumeIn(ctx, tx); err != nil {
			return err
		}
		if err := tx.SwapSetting(ctx, auditStartSetting, raw, next.Marshal()); err != nil {
			if errors.Is(err, store.ErrConflict) {
				return api.Errorf(api.CodeConflict, "The audit log's start moved while this prune was checked (another prune ran): read it again (GET /v1/audit/start) and retry.")
			}
			return storeErr(err, "audit log start")
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	k.log.Info("audit log pruned", "starts_after", next.String(), "caller", c.caller.DN, "records", next.Seq-start.Seq)
	select {
	case k.pruneKick <- struct{}{}:
	default:
	}
	return k.apiStart(next), nil
}

// prunable checks that the log can be pruned from start through the
// record req names, and returns that record: it is in the log after the
// start, signed (the last record of its transaction), with the hash
// given, older than Config.AuditRetention; and the records from the start
// to it are one span its signature covers (audit.CheckSegment: hashes,
// chain, its signature), so that the KMS never deletes records that a
// signature of its own does not cover.
func (k *KMS) prunable(ctx context.Context, start audit.Start, req api.AuditPruneRequest) (store.AuditRecord, []store.AuditRecord, error) {
	if req.Through <= start.Seq {
		return store.AuditRecord{}, nil, api.Errorf(api.CodeConflict, "The audit log already starts after record %d: records up to %d were pruned before.", start.Seq, start.Seq)
	}
	recs, err := k.st.AuditAfter(ctx, req.Through-1, 1)
	if err != nil {
		return store.AuditRecord{}, nil, storeErr(err, "audit log")
	}
	if len(recs) == 0 || recs[0].Seq != req.Through {
		return store.AuditRecord{}, nil, api.Errorf(api.CodeNotFound, "The audit log has no record %d.", req.Through)
	}
	rec := recs[0]
	oldest := k.now().Add(-k.cfg.AuditRetention)
	switch {
	case !bytes.Equal(rec.Hash, req.Hash):
		return store.AuditRecord{}, nil, api.Errorf(api.CodeConflict, "Record %d of the audit log does not have the hash given: the archive is not of this log, or the log changed; run dcaas audit verify.", req.Through)
	case rec.Sig == nil:
		return store.AuditRecord{}, nil, api.Errorf(api.CodeInvalidArgument, "Record %d is not signed (it is not the last record of its transaction), so the log cannot start after it: prune through a signed record (dcaas audit archive ends its archive at one).", req.Through)
	case rec.Time.After(oldest):
		return store.AuditRecord{}, nil, api.Errorf(api.CodeInvalidArgument, "Record %d was written at %s, within the audit retention (%s, kms serve --audit-retention): the KMS keeps every record younger than that. Prune through an older record.",
			req.Through, rec.Time.Format(time.RFC3339), k.cfg.AuditRetention)
	}
	_, keyRecs, err := audit.CheckSegment(ctx, k.st, k.AuditKey(), start, req.Through)
	var broken *audit.BrokenError
	switch {
	case errors.As(err, &broken), errors.Is(err, audit.ErrBadStart):
		k.log.Error("AUDIT LOG BROKEN: not pruning it", "through", req.Through, "err", err)
		return store.AuditRecord{}, nil, &wrapped{api.Errorf(api.CodeConflict, "The audit log does not verify up to record %d (%v), so it is not pruned; run dcaas audit verify.", req.Through, err), err}
	case err != nil:
		return store.AuditRecord{}, nil, storeErr(err, "audit log")
	}
	return rec, keyRecs, nil
}

// deletePruned deletes the records at or below the log's start, in
// batches of pruneBatch, until none is left or ctx ends: the janitor's
// work after a prune (and at every sweep, to finish one a stop cut short).
func (k *KMS) deletePruned(ctx context.Context) {
	start, _, err := auditStartIn(ctx, k.st)
	if err != nil || start.IsZero() {
		if err != nil && ctx.Err() == nil {
			k.log.Warn("reading the audit log's start failed", "err", err)
		}
		return
	}
	var total int64
	for ctx.Err() == nil {
		n, err := k.db.DeleteAuditThrough(ctx, start.Seq, pruneBatch)
		if err != nil {
			if ctx.Err() == nil {
				k.log.Warn("deleting pruned audit records failed", "through", start.Seq, "err", err)
			}
			break
		}
		total += n
		if n < pruneBatch {
			break
		}
	}
	if total > 0 {
		k.log.Info("deleted pruned audit records", "count", total, "through", start.Seq)
	}
}
