package kms

import (
	"context"
	"time"
)

// janitorInterval is how often expired single-use secrets are deleted;
// janitorGrace how long after expiry they are kept (so a late caller still
// gets "expired" rather than "invalid").
const (
	janitorInterval = 10 * time.Minute
	janitorGrace    = time.Hour
)

// startJanitor deletes expired enrollment tokens, grants, challenges and
// import tokens in the background, so anonymous challenge requests cannot
// grow the database without bound, wipes master keys idle for longer than
// tmkCacheTTL (every minute), and rotates keys whose rotation is due
// (every Config.RotationCheckInterval), and pings the store (every
// Config.HealthCheckInterval, and when a request kicks it: health.go). The
// returned function stops it.
func (k *KMS) startJanitor() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		sweep := time.NewTicker(janitorInterval)
		defer sweep.Stop()
		rot := time.NewTicker(k.cfg.RotationCheckInterval)
		defer rot.Stop()
		ping := time.NewTicker(k.cfg.HealthCheckInterval)
		defer ping.Stop()
		caches := time.NewTicker(time.Minute)
		defer caches.Stop()
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
			}
		}
	}()
	return func() { cancel(); <-done }
}

// approvalRetention is how long after its expiry an approval request
// (executed, denied, cancelled or never approved) stays readable with
// GET /v1/approvals before the janitor deletes it; the audit log keeps
// every step for good.
const approvalRetention = 30 * 24 * time.Hour

func (k *KMS) sweepOneTime(ctx context.Context) {
	k.sweepCeremonies(ctx)
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
