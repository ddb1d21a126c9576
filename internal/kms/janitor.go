package kms

import (
	"context"
	"time"

	"github.com/dcaas/dcaas/internal/audit"
	"github.com/dcaas/dcaas/internal/store"
)

// janitorGrace is how long after expiry single-use secrets are kept (so a
// late caller still gets "expired" rather than "invalid"); lapsedBatch how
// many lapsed instances one sweep deletes at most.
const (
	janitorGrace = time.Hour
	lapsedBatch  = 500
)

// actionInstanceDeleted is the record of a lapsed instance's deletion.
const actionInstanceDeleted = "instance.deleted"

// startJanitor deletes expired enrollment tokens, grants, challenges and
// import tokens in the background, so anonymous challenge requests cannot
// grow the database without bound, wipes master keys idle for longer than
// tmkCacheTTL (every minute), and rotates keys whose rotation is due
// (every Config.RotationCheckInterval), pings the store (every
// Config.HealthCheckInterval, and when a request kicks it: health.go) and
// stores the quiet revocation polls (every Config.PollFlushInterval:
// polls.go), and deletes the audit records a prune left below the log's
// start (auditprune.go), at once after a prune and at every sweep. The
// returned function stops it and stores the polls left.
func (k *KMS) startJanitor() (stop func()) {
	stopLoop := background(func(ctx context.Context) {
		sweep := time.NewTicker(k.cfg.JanitorInterval)
		defer sweep.Stop()
		rot := time.NewTicker(k.cfg.RotationCheckInterval)
		defer rot.Stop()
		ping := time.NewTicker(k.cfg.HealthCheckInterval)
		defer ping.Stop()
		caches := time.NewTicker(time.Minute)
		defer caches.Stop()
		polls := time.NewTicker(k.cfg.PollFlushInterval)
		defer polls.Stop()
		k.sweepOneTime(ctx)
		for {
			select {
			case <-ctx.Done():
				return
			case <-ping.C:
				_, _ = k.storeCheck(ctx)
			case <-k.health.kick:
				_, _ = k.storeCheck(ctx)
			case <-sweep.C:
				k.sweepOneTime(ctx)
			case <-rot.C:
				k.rotateDue(ctx)
			case <-caches.C:
				k.tmks.sweep(k.now())
			case <-polls.C:
				_ = k.flushPolls(ctx)
			case <-k.pruneKick:
				k.deletePruned(ctx)
			}
		}
	})
	return func() {
		stopLoop()
		fctx, fcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer fcancel()
		_ = k.flushPolls(fctx)
	}
}

// approvalRetention is how long after its expiry an approval request
// (executed, denied, cancelled or never approved) stays readable with
// GET /v1/approvals before the janitor deletes it; the audit log keeps
// every step for good.
const approvalRetention = 30 * 24 * time.Hour

func (k *KMS) sweepOneTime(ctx context.Context) {
	k.deletePruned(ctx)
	k.sweepCeremonies(ctx)
	k.sweepLapsedInstances(ctx)
	if n, err := k.db.DeleteApprovalsExpiredBefore(ctx, k.now().Add(-approvalRetention)); err != nil && ctx.Err() == nil {
		k.log.Warn("deleting old approval requests failed", "err", err)
	} else if n > 0 {
		k.log.Debug("deleted old approval requests", "count", n)
	}
	n, err := k.db.DeleteExpiredOneTime(ctx, k.now().Add(-janitorGrace))
	switch {
	case err != nil && ctx.Err() == nil:
		k.log.Warn("deleting expired single-use secrets failed", "err", err)
	case n > 0:
		k.log.Debug("deleted expired single-use secrets", "count", n)
	}
}

// sweepLapsedInstances deletes the instances whose identity certificate
// expired more than Config.LapsedInstanceRetention ago, with the records
// of what was released to them, each with an audit record of its own
// (instance.deleted, by the KMS), in batches of lapsedBatch. A sidecar
// whose certificates lapsed can authenticate no more and enrolls again as
// a new instance, so without this every restart of a pod (a software
// enclave enrolls afresh each time) would leave an instance and a release
// record per key loaded behind for good.
func (k *KMS) sweepLapsedInstances(ctx context.Context) {
	before := k.now().Add(-k.cfg.LapsedInstanceRetention)
	for {
		var gone []store.Instance
		var last int64
		err := k.db.InTx(ctx, func(tx store.Tx) error {
			var err error
			if gone, err = tx.DeleteLapsedInstances(ctx, before, lapsedBatch); err != nil {
				return err
			}
			for _, in := range gone {
				r, err := k.audit.Append(context.WithoutCancel(ctx), tx, audit.Event{Caller: kmsCaller, Action: actionInstanceDeleted, Tenant: in.Tenant, KeyID: in.ID, Outcome: "ok"})
				if err != nil {
					return err
				}
				last = r.Seq
			}
			return nil
		})
		if err != nil {
			if ctx.Err() == nil {
				k.log.Warn("deleting lapsed instances failed", "err", err)
			}
			return
		}
		if len(gone) == 0 {
			return
		}
		k.audit.Stored(last)
		k.log.Info("deleted lapsed instances", "count", len(gone), "certificates_expired_before", before)
		if len(gone) < lapsedBatch {
			return
		}
	}
}
