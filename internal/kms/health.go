package kms

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/buildinfo"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/httpapi"
	"github.com/dcaas/dcaas/internal/store"
)

// Health (issue 15). GET /healthz is liveness: 200 while the process
// serves, its body saying whether the checks pass. GET /readyz is
// readiness: 200 only when the store answers a ping within storePingTimeout
// and the seal opens the stored audit key (a success is cached for
// Config.SealCheckInterval, so an HSM is not asked on every probe); 503
// naming the failed checks otherwise.
//
// The store's state is followed by pings: every Config.HealthCheckInterval
// in the background (Open), at once after a request fails with a store
// error, and on each probe. Each change is logged once: a warning when the
// store goes away, info when it is back. A request that fails because the
// seal cannot open a tenant's material logs an error with the tenant (no
// secret), and the seal check logs its own changes the same way.

// storePingTimeout bounds one store ping: under the 2 s timeouts of the
// Kubernetes example's probes, so a hanging database fails /readyz rather
// than timing out the probe (and /healthz, a liveness probe, answers).
const storePingTimeout = time.Second

// health is the KMS's view of its dependencies.
type health struct {
	mu         sync.Mutex
	storeDown  bool
	storeSince time.Time
	sealAt     time.Time // when the seal check last ran (zero: never)
	sealErr    error     // its result
	sealStale  bool      // a request's seal failure: check again at the next probe
	kick       chan struct{}
}

func newHealth() *health { return &health{kick: make(chan struct{}, 1)} }

// storeCheck pings the store (a read of the audit key record) and records
// the result; it returns the record for the seal check.
func (k *KMS) storeCheck(parent context.Context) ([]byte, error) {
	ctx, cancel := context.WithTimeout(parent, storePingTimeout)
	defer cancel()
	raw, err := k.db.GetSetting(ctx, auditKeySetting)
	if errors.Is(err, store.ErrNotFound) {
		err = nil // the store answered
	}
	if parent.Err() == nil { // not a caller that hung up, nor the KMS stopping
		k.observeStore(err)
	}
	return raw, err
}

// observeStore records a store ping's result, logging a change.
func (k *KMS) observeStore(err error) {
	h := k.health
	h.mu.Lock()
	was := h.storeDown
	h.storeDown = err != nil
	var down time.Duration
	if was != h.storeDown {
		now := time.Now()
		down = now.Sub(h.storeSince)
		h.storeSince = now
	}
	h.mu.Unlock()
	switch {
	case err != nil && !was:
		k.log.Warn("the KMS store is unavailable: requests that need it answer 503 and /readyz fails until it is back", "err", err)
	case err == nil && was:
		k.log.Info("the KMS store is available again", "down_for", down.Round(time.Millisecond).String())
	}
}

// kickStoreCheck asks the background loop for a ping now (after a request
// failed with a store error).
func (k *KMS) kickStoreCheck() {
	select {
	case k.health.kick <- struct{}{}:
	default:
	}
}

// sealCheck opens the stored audit key record with the sealer, at most
// once per Config.SealCheckInterval (raw nil: the store did not answer,
// report the last result). It returns the result and when it was made.
func (k *KMS) sealCheck(ctx context.Context, raw []byte) (time.Time, error) {
	h := k.health
	h.mu.Lock()
	at, last, stale := h.sealAt, h.sealErr, h.sealStale
	h.mu.Unlock()
	// A success is reused for SealCheckInterval; a failure is checked
	// again at every probe, so a recovery shows at once.
	if raw == nil || (!stale && !at.IsZero() && last == nil && time.Since(at) < k.cfg.SealCheckInterval) {
		if at.IsZero() {
			return at, errors.New("not checked yet: the store has not answered")
		}
		return at, last
	}
	key, err := openAuditKey(ctx, k.sealer, raw)
	if key != nil {
		key.Wipe()
	}
	return k.observeSeal(err), err
}

// observeSeal records the seal check's result, logging a change.
func (k *KMS) observeSeal(err error) time.Time {
	h := k.health
	now := time.Now()
	h.mu.Lock()
	first := h.sealAt.IsZero()
	was := h.sealErr
	h.sealAt, h.sealErr, h.sealStale = now, err, false
	h.mu.Unlock()
	switch {
	case err != nil && (was == nil || first):
		k.log.Error("the KMS root of trust cannot open its stored material: operations that need it answer 503 and /readyz fails", "seal", k.sealer.Name(), "err", err)
	case err == nil && was != nil && !first:
		k.log.Info("the KMS root of trust opens its stored material again", "seal", k.sealer.Name())
	}
	return now
}

// sealFailed logs a request that failed because the seal could not open a
// tenant's material, and has the next probe check the seal again.
func (k *KMS) sealFailed(c *call, err error) {
	k.log.Error("a request failed: the root of trust could not open the material it needs (a wrong root key or tampered data?)",
		"action", c.action, "tenant", c.tenant, "seal", k.sealer.Name(), "err", err)
	k.health.mu.Lock()
	k.health.sealStale = true
	k.health.mu.Unlock()
}

// observeCall follows the dependencies through a call's error.
func (k *KMS) observeCall(c *call, err error) {
	switch {
	case err == nil:
	case errors.Is(err, errSeal):
		k.sealFailed(c, err)
	case errors.Is(err, store.ErrUnavailable):
		k.kickStoreCheck()
	}
}

// Health runs the readiness checks.
func (k *KMS) Health(ctx context.Context, readyz bool) api.Health {
	h := api.Health{FIPS: kcrypto.FIPS(), Seal: k.sealer.Name(), Version: buildinfo.Get().Version}
	raw, err := k.storeCheck(ctx)
	st := api.HealthCheck{Name: "store", OK: err == nil}
	if err != nil {
		st.Error = "the database did not answer a ping within " + storePingTimeout.String()
		if !errors.Is(err, context.DeadlineExceeded) {
			st.Error = "the database is unavailable"
		}
	}
	at, serr := k.sealCheck(ctx, raw)
	se := api.HealthCheck{Name: "seal", OK: serr == nil}
	if serr != nil {
		se.Error = "the " + k.sealer.Name() + " root of trust cannot open the stored audit key"
		if raw == nil && at.IsZero() {
			se.Error = "not checked yet: the store has not answered"
		}
	}
	if !at.IsZero() {
		t := at.UTC()
		se.CheckedAt = &t
	}
	h.Checks = []api.HealthCheck{st, se}
	h.Summarize(readyz)
	return h
}

func (k *KMS) healthRoutes() {
	k.router.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		httpapi.WriteJSON(w, http.StatusOK, k.Health(r.Context(), false))
	})
	k.router.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		h := k.Health(r.Context(), true)
		code := http.StatusOK
		if h.Status != api.HealthOK {
			code = http.StatusServiceUnavailable
		}
		httpapi.WriteJSON(w, code, h)
	})
}
