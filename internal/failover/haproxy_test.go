package failover_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/client"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/e2e"
	"github.com/dcaas/dcaas/internal/store/pgtest"
)

// The stream of key loads through HAProxy.
const (
	lbPoll     = 200 * time.Millisecond // the sidecar's --poll-interval
	lbLoaders  = 4
	lbKeys     = 240 // data keys made up front, one per load
	lbBefore   = 40  // acknowledged loads before replica A is killed
	lbPerPhase = 8   // per loader: loads started after A was marked down, and again after it was back
	lbAttempts = 2   // a load is tried at most this often: one retry
	// lbBackoff is how long a loader waits before it retries a load: the
	// SDK's default first backoff. A retry at once can land in the
	// killed replica's last milliseconds (its sockets outlive its threads
	// until the kernel has torn the process down) and fail again.
	lbBackoff = 100 * time.Millisecond
	// lbEvictLimit is "within a couple of poll intervals": the poll that
	// was under way when the key was disabled, and the next one.
	lbEvictLimit = 3 * lbPoll
	lbTimeout    = 60 * time.Second // the whole stream
)

// TestFailoverThroughHAProxy: two replicas on one PostgreSQL database
// behind HAProxy (TCP mode, TLS passing through), and a real sidecar
// process whose --kms is HAProxy's URL. Four loaders load keys into the
// sidecar through the SDK, by the grant flow (the custodian mints a grant
// through HAProxy, the sidecar presents it to the KMS through HAProxy) and
// by rewrap (the custodian has the KMS rewrap through HAProxy, the sidecar
// imports), while the sidecar polls revocations every 200 ms. Replica A —
// the one the sidecar's connection goes to, and some of the loaders' — is
// killed with SIGKILL mid-stream, while grant loads are in the sidecar,
// and, once every loader has loaded through B alone, restarted. The SDK
// clients make one attempt per call; a load that fails is retried once by
// the loader (with a fresh grant), after the SDK's first backoff.
//
// It checks that
//
//   - every load is acknowledged within two attempts, and an attempt
//     fails only if it started before HAProxy marked A down;
//   - the sidecar holds exactly the acknowledged keys, each once, and
//     each encrypts and decrypts there;
//   - the KMS released each key at least once and at most once per
//     attempt, plus once for an attempt the kill cut (the sidecar
//     resends a grant load and the KMS answers that request again; the
//     custodian's SDK resends a rewrap, which is idempotent) (its audit
//     log), and every acknowledged grant is used up;
//   - a key disabled before the kill, right after it, and after the
//     restart is evicted from the sidecar within lbEvictLimit.
func TestFailoverThroughHAProxy(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds and runs two dcaas KMS processes, a sidecar and HAProxy; skipped in -short mode")
	}
	begin := time.Now()
	ctx := t.Context()
	dsn := pgtest.DSN(t)
	reps := e2e.StartReplicas(t, 2, dsn)
	a, b := reps[0], reps[1]
	lb := e2e.StartHAProxy(t, a, b)
	ep := lb.Endpoint()
	// The sidecar keeps one HTTP/2 connection to the KMS, through HAProxy
	// to one replica: start it while B is out of the rotation (before
	// anything connects), so that it is A's, the replica that is killed.
	lb.SetEnabled(t, b, false)
	tn := e2e.NewTenant(t, ep, "acme")
	sc := tn.StartSidecar(t, e2e.SidecarConfig{PollInterval: lbPoll})
	lb.SetEnabled(t, b, true)
	pool := tn.DataKeys(t, lbKeys+1, api.CreateDataKeyRequest{Type: api.KeyAES256GCM, Purpose: "haproxy-failover"})
	t.Logf("replicas, HAProxy %s, sidecar and %d data keys ready in %v", lb.URL(), len(pool), time.Since(begin).Round(time.Millisecond))

	// One attempt per SDK call: every retry is the loader's own, counted.
	// A client per loader, each with its own connection, which HAProxy
	// hands to A and B in turn.
	one := []client.Option{client.WithRetry(1, 0, 0), client.WithTimeout(callTimeout)}
	custs := make([]*client.KMS, lbLoaders)
	for i := range custs {
		custs[i] = ep.Client(t, []byte(tn.CustodianCreds.CertPEM), []byte(tn.CustodianCreds.KeyPEM), one...)
	}
	local := sc.Client(t, one...)
	watch := sc.Client(t) // the test's own look at the sidecar's keys

	// Revocation with nothing broken, as the baseline.
	baseline := pool[lbKeys]
	if _, err := client.LoadByRewrap(ctx, tn.Custodian, watch, [][]byte{baseline.EKB}); err != nil {
		t.Fatalf("loading the baseline key: %v", err)
	}
	if d, err := disableAndWait(ctx, tn.Custodian, watch, baseline.KeyID); err != nil {
		t.Fatalf("baseline, both replicas up: %v", err)
	} else {
		t.Logf("baseline: disabled key evicted after %v (poll interval %v)", d.Round(time.Millisecond), lbPoll)
	}

	run := &lbRun{custs: custs, local: local, instance: sc.InstanceID(), pool: pool[:lbKeys]}
	owners := [2]*client.KMS{}
	for i := range owners {
		owners[i] = ep.Client(t, []byte(tn.CustodianCreds.CertPEM), []byte(tn.CustodianCreds.KeyPEM))
	}
	run.stream(t, ctx, a, lb, owners, watch)
	loads := run.loads
	t.Logf("stream: %d loads in %v; SIGKILL of A at +%v, A gone %v later, marked down by HAProxy %v after the SIGKILL; A restarted and marked up %v after the SIGKILL",
		len(loads), run.end.Sub(run.start).Round(time.Millisecond), run.killStart.Sub(run.start).Round(time.Millisecond),
		run.killDone.Sub(run.killStart).Round(time.Millisecond), run.markedDown.Sub(run.killStart).Round(time.Millisecond),
		run.markedUp.Sub(run.killStart).Round(time.Millisecond))
	for _, r := range run.revocations {
		if r.err != nil {
			t.Errorf("revocation %s: %v", r.when, r.err)
		} else {
			t.Logf("revocation %s: evicted after %v", r.when, r.took.Round(time.Millisecond))
		}
	}

	acked := checkLBAttempts(t, run)
	checkSidecarHolds(t, ctx, watch, acked, run.revoked())
	checkReleasedOnce(t, ep.Admin(t), run)
	checkGrantsUsedUp(t, ctx, watch, acked)
	t.Run("sidecar rides out the kill", func(t *testing.T) { checkSidecarFailover(t, dsn, run) })

	sc.Stop(t)
	a.Stop(t)
	b.Stop(t)
	t.Logf("whole test: %v", time.Since(begin).Round(time.Millisecond))
}

// lbLoad is one key load of the stream: one key, by one flow, with its
// attempts.
type lbLoad struct {
	worker, n int
	key       *api.DataKey
	flow      string // "grant" or "rewrap"
	attempts  []lbAttempt
	grant     string   // the grant of the acknowledged attempt (grant flow)
	loaded    []string // the key ids the acknowledged attempt returned

	revokePicked bool // its key was picked to be disabled
}

type lbAttempt struct {
	start, end time.Time
	grant      string // the grant it got (grant flow)
	step       string // where a failure happened
	err        error
}

func (l *lbLoad) acked() bool { return len(l.attempts) > 0 && l.attempts[len(l.attempts)-1].err == nil }
func (l *lbLoad) start() time.Time {
	return l.attempts[0].start
}

// sidecarLoadStep names the sidecar's half of the grant flow in failures.
const sidecarLoadStep = "sidecar Load (the sidecar presents the grant to the KMS through HAProxy)"

type lbRevocation struct {
	when  string
	keyID string
	took  time.Duration
	err   error
}

// lbRun is the stream and what happened in it.
type lbRun struct {
	custs    []*client.KMS // one per loader
	local    *client.Sidecar
	instance string
	pool     []*api.DataKey

	sidecarLoads atomic.Int64 // sidecar Load calls in flight

	mu          sync.Mutex
	loads       []*lbLoad
	revocations []lbRevocation

	start, end, killStart, killDone time.Time
	markedDown, markedUp            time.Time
}

func (r *lbRun) revoked() map[string]bool {
	out := map[string]bool{}
	for _, rv := range r.revocations {
		out[rv.keyID] = true
	}
	return out
}

// attempt loads l.key once into the sidecar by l.flow.
func (r *lbRun) attempt(ctx context.Context, l *lbLoad) lbAttempt {
	at := lbAttempt{start: time.Now()}
	ekbs := [][]byte{l.key.EKB}
	switch l.flow {
	case "grant":
		g, err := r.custs[l.worker].CreateGrant(ctx, api.GrantRequest{InstanceID: r.instance, EKBs: ekbs})
		if err != nil {
			at.step, at.err = "custodian CreateGrant through HAProxy", err
			break
		}
		at.grant = g.Grant
		r.sidecarLoads.Add(1)
		ids, err := r.local.Load(ctx, g.Grant, ekbs, nil)
		r.sidecarLoads.Add(-1)
		if err != nil {
			at.step, at.err = sidecarLoadStep, err
			break
		}
		l.grant, l.loaded = g.Grant, ids
	case "rewrap":
		ids, err := client.LoadByRewrap(ctx, r.custs[l.worker], r.local, ekbs)
		if err != nil {
			at.step, at.err = "LoadByRewrap (rewrap through HAProxy, import into the sidecar)", err
			break
		}
		l.loaded = ids
	}
	at.end = time.Now()
	return at
}

// stream runs the loaders through the kill of a, the wait for HAProxy to
// mark it down, a phase on B alone, a pause for a's restart, and a phase
// on both again. Keys are disabled right after the kill and after the
// restart; their evictions are timed while the stream goes on.
func (r *lbRun) stream(t *testing.T, parent context.Context, a *e2e.KMS, lb *e2e.HAProxy, owners [2]*client.KMS, watch *client.Sidecar) {
	t.Helper()
	ctx, cancel := context.WithTimeout(parent, lbTimeout)
	defer cancel()
	var (
		next       atomic.Int64 // the next pool index
		okCount    atomic.Int64
		downAt     atomic.Pointer[time.Time] // once HAProxy marked A down
		upAt       atomic.Pointer[time.Time] // once it marked A up again
		perPhase   [2][lbLoaders]atomic.Int64
		phaseDone  = [2]chan struct{}{make(chan struct{}), make(chan struct{})}
		phaseOnce  [2]sync.Once
		beforeKill = make(chan struct{})
		beforeOnce sync.Once
		gate       sync.RWMutex // held for writing while A restarts: the loaders wait
		wg         sync.WaitGroup
	)
	r.start = time.Now()
	for w := range lbLoaders {
		wg.Go(func() {
			for n := 0; ctx.Err() == nil; n++ {
				gate.RLock()
				i := int(next.Add(1)) - 1
				if i >= len(r.pool) {
					gate.RUnlock()
					return
				}
				l := &lbLoad{worker: w, n: n, key: r.pool[i], flow: [2]string{"grant", "rewrap"}[i%2]}
				for len(l.attempts) < lbAttempts && !l.acked() && ctx.Err() == nil {
					if len(l.attempts) > 0 {
						time.Sleep(lbBackoff)
					}
					l.attempts = append(l.attempts, r.attempt(ctx, l))
				}
				gate.RUnlock()
				r.mu.Lock()
				r.loads = append(r.loads, l)
				r.mu.Unlock()
				if !l.acked() {
					continue
				}
				if okCount.Add(1) == lbBefore {
					beforeOnce.Do(func() { close(beforeKill) })
				}
				for p, at := range []*time.Time{downAt.Load(), upAt.Load()} {
					if at != nil && l.start().After(*at) && perPhase[p][w].Add(1) == lbPerPhase {
						done := true
						for v := range lbLoaders {
							done = done && perPhase[p][v].Load() >= lbPerPhase
						}
						if done {
							phaseOnce[p].Do(func() { close(phaseDone[p]) })
						}
					}
				}
				select {
				case <-phaseDone[1]:
					return
				default:
				}
			}
		})
	}
	allDone := make(chan struct{}) // every loader returned: the keys ran out
	go func() { wg.Wait(); close(allDone) }()
	wait := func(c chan struct{}, what string) {
		t.Helper()
		select {
		case <-c:
			return
		case <-ctx.Done():
		case <-allDone:
		}
		select {
		case <-c:
			return
		default:
		}
		cancel()
		wg.Wait()
		t.Fatalf("the stream did not reach %s within %v (%d loads, %d acknowledged, %d of %d keys used)",
			what, lbTimeout, len(r.loads), okCount.Load(), min(int(next.Load()), len(r.pool)), len(r.pool))
	}
	// Each revocation is made with a client of its own: its first call
	// opens a new connection, not one HAProxy just cut.
	revoke := func(when string, owner *client.KMS) chan lbRevocation {
		c := make(chan lbRevocation, 1)
		key := r.firstAcked()
		go func() {
			rv := lbRevocation{when: when, keyID: key}
			rv.took, rv.err = disableAndWait(parent, owner, watch, key)
			c <- rv
		}()
		return c
	}

	wait(beforeKill, fmt.Sprintf("%d acknowledged loads before the kill", lbBefore))
	// Kill A while the sidecar has grant loads under way (two: the better
	// the odds that one is at the KMS, not yet or no longer in the sidecar).
	for r.sidecarLoads.Load() < 2 && ctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
	r.killStart = time.Now()
	a.Kill9(t)
	r.killDone = time.Now()
	afterKill := revoke("right after the SIGKILL of A", owners[0])
	r.markedDown = lb.WaitBackend(t, a, false)
	downAt.Store(&r.markedDown)
	wait(phaseDone[0], fmt.Sprintf("%d loads per loader through B alone", lbPerPhase))

	func() {
		gate.Lock()
		defer gate.Unlock()
		a.Restart(t)
		r.markedUp = lb.WaitBackend(t, a, true)
		upAt.Store(&r.markedUp)
	}()
	afterRestart := revoke("after A came back", owners[1])
	wait(phaseDone[1], fmt.Sprintf("%d loads per loader after A came back", lbPerPhase))
	wg.Wait()
	r.end = time.Now()
	r.revocations = append(r.revocations, <-afterKill, <-afterRestart)
}

// firstAcked returns the key of the earliest acknowledged load not yet
// picked for a revocation.
func (r *lbRun) firstAcked() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range r.loads {
		if l.acked() && !l.revokePicked {
			l.revokePicked = true
			return l.key.KeyID
		}
	}
	return ""
}

// disableAndWait disables keyID through owner and polls the sidecar until
// the key is gone, for at most lbEvictLimit after the KMS acknowledged.
func disableAndWait(ctx context.Context, owner *client.KMS, watch *client.Sidecar, keyID string) (time.Duration, error) {
	if keyID == "" {
		return 0, errors.New("no acknowledged load to revoke")
	}
	if err := owner.DisableKey(ctx, keyID); err != nil {
		return 0, fmt.Errorf("DisableKey(%s): %w", keyID, err)
	}
	disabled := time.Now()
	for {
		keys, err := watch.Keys(ctx)
		if err != nil {
			return 0, fmt.Errorf("sidecar Keys: %w", err)
		}
		held := false
		for _, k := range keys {
			held = held || k.KeyID == keyID
		}
		took := time.Since(disabled)
		if !held {
			return took, nil
		}
		if took > lbEvictLimit {
			return took, fmt.Errorf("key %s still loaded in the sidecar %v after DisableKey was acknowledged, want evicted within %v (poll interval %v)", keyID, took.Round(time.Millisecond), lbEvictLimit, lbPoll)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkLBAttempts checks every load: acknowledged within lbAttempts, with
// failed attempts only among those that started before HAProxy marked A
// down. It returns the acknowledged loads.
func checkLBAttempts(t *testing.T, r *lbRun) []*lbLoad {
	t.Helper()
	var acked []*lbLoad
	retried := 0
	for _, l := range r.loads {
		what := fmt.Sprintf("load %d of loader %d (%s flow, key %s)", l.n, l.worker, l.flow, l.key.KeyID)
		if len(l.attempts) > 1 {
			retried++
		}
		for i, at := range l.attempts {
			if at.err == nil {
				continue
			}
			when := fmt.Sprintf("started %v after the SIGKILL, ended %v after it", at.start.Sub(r.killStart).Round(time.Microsecond), at.end.Sub(r.killStart).Round(time.Microsecond))
			if at.start.After(r.markedDown) || at.end.Before(r.killStart) {
				t.Errorf("%s: attempt %d failed although it %s, outside the kill (HAProxy marked A down %v after it): %s: %v",
					what, i+1, when, r.markedDown.Sub(r.killStart).Round(time.Millisecond), at.step, at.err)
			} else {
				t.Logf("attempt %d of %s failed in the kill (%s): %s: %v", i+1, what, when, at.step, at.err)
			}
		}
		if !l.acked() {
			t.Errorf("%s: lost: not acknowledged after %d attempts", what, len(l.attempts))
			continue
		}
		if len(l.loaded) != 1 || l.loaded[0] != l.key.KeyID {
			t.Errorf("%s: acknowledged as %v, want [%s]", what, l.loaded, l.key.KeyID)
		}
		acked = append(acked, l)
	}
	t.Logf("%d loads, %d acknowledged, %d retried once", len(r.loads), len(acked), retried)
	return acked
}

// checkSidecarHolds checks the sidecar's keys: each acknowledged,
// unrevoked load once, nothing else; each encrypts and decrypts.
func checkSidecarHolds(t *testing.T, ctx context.Context, sc *client.Sidecar, acked []*lbLoad, revoked map[string]bool) {
	t.Helper()
	keys, err := sc.Keys(ctx)
	if err != nil {
		t.Fatalf("sidecar Keys: %v", err)
	}
	held := map[string]int{}
	for _, k := range keys {
		held[k.KeyID]++
		if k.Version != 1 {
			t.Errorf("the sidecar holds %s v%d, want v1 only", k.KeyID, k.Version)
		}
	}
	want := map[string]bool{}
	for _, l := range acked {
		id := l.key.KeyID
		if revoked[id] {
			if held[id] != 0 {
				t.Errorf("revoked key %s is still in the sidecar", id)
			}
			continue
		}
		want[id] = true
		if held[id] != 1 {
			t.Errorf("acknowledged key %s is in the sidecar %d times, want once", id, held[id])
			continue
		}
		ct, err := sc.Encrypt(ctx, api.KeyRef{KeyID: id}, []byte(id), []byte("haproxy"))
		if err != nil {
			t.Errorf("Encrypt with acknowledged key %s: %v", id, err)
			continue
		}
		if pt, err := sc.Decrypt(ctx, api.KeyRef{}, ct.Ciphertext, []byte("haproxy")); err != nil || !bytes.Equal(pt, []byte(id)) {
			t.Errorf("Decrypt with acknowledged key %s = %q, %v", id, pt, err)
		}
	}
	for id := range held {
		if !want[id] {
			t.Errorf("the sidecar holds %s, which no acknowledged load loaded (or which was revoked)", id)
		}
	}
	t.Logf("the sidecar holds %d keys: every acknowledged, unrevoked load once; each encrypts and decrypts", len(keys))
}

// checkReleasedOnce reads the audit log (in PostgreSQL, through HAProxy):
// the KMS released each loaded key at least once and answered each
// attempt at most once (keys.load for the grant flow, keys.rewrap for
// rewrap) — except an attempt in flight at the SIGKILL, which may have
// been answered twice: by A, which recorded it and died before its answer
// got out, and by B, to which an SDK resent the very request (the
// sidecar's, a load that used a grant: the KMS answers it again; the
// custodian's, a rewrap: idempotent, so the SDK retries it).
func checkReleasedOnce(t *testing.T, admin *client.KMS, r *lbRun) {
	t.Helper()
	released, answered := map[string]int{}, map[string]int{}
	for _, rec := range e2e.AuditLog(t, admin) {
		if rec.Action == "keys.load" || rec.Action == "keys.rewrap" {
			answered[rec.KeyID]++
			if rec.Outcome == "ok" {
				released[rec.KeyID]++
			}
		}
	}
	resent := 0
	for _, l := range r.loads {
		id := l.key.KeyID
		if l.acked() && released[id] < 1 {
			t.Errorf("acknowledged load of %s has no audit record of its release", id)
		}
		allowed, cut := len(l.attempts), 0
		for _, at := range l.attempts {
			if at.start.Before(r.killStart) && at.end.After(r.killStart) {
				cut++
			}
		}
		if answered[id] > allowed+cut {
			t.Errorf("key %s: %d load/rewrap audit records (%d released) for %d attempts (%d of them in flight at the kill, %s): the KMS saw more requests than the loader and an SDK's resend of a cut request made",
				id, answered[id], released[id], allowed, cut, l.flow)
		}
		if answered[id] > allowed {
			resent++
		}
	}
	t.Logf("%d loads in flight at the kill were answered twice (by A before it died, and again by B)", resent)
}

// checkGrantsUsedUp presents every acknowledged grant to the sidecar
// again: the KMS must refuse it as already used.
func checkGrantsUsedUp(t *testing.T, ctx context.Context, sc *client.Sidecar, acked []*lbLoad) {
	t.Helper()
	n := 0
	for _, l := range acked {
		if l.flow != "grant" {
			continue
		}
		n++
		_, err := sc.Load(ctx, l.grant, [][]byte{l.key.EKB}, nil)
		if !errors.Is(err, client.ErrAlreadyUsed) {
			t.Errorf("the grant of acknowledged load %d of loader %d loads again: %v, want already_used", l.n, l.worker, err)
		}
	}
	t.Logf("%d acknowledged grants refused a second use", n)
}

// checkSidecarFailover: the sidecar rides out the death of the replica it
// was talking to while another one serves — no grant load it had sent to
// A when A died comes back to the custodian as an error (503 unavailable,
// "The KMS cannot be reached: … EOF"). The custodian's retry with a fresh
// grant would load the key anyway (checkLBAttempts), but the expectation
// is that the sidecar retries the cut request itself, through HAProxy,
// and that the KMS answers it again where A had used the grant up before
// it died (the one_time row in PostgreSQL says so): the SDK resends a cut
// load, and the KMS answers the request that used a grant again. It
// fails, naming the loads, where that did not happen.
func checkSidecarFailover(t *testing.T, dsn string, r *lbRun) {
	var failed []string
	for _, l := range r.loads {
		for i, at := range l.attempts {
			if at.err == nil || at.step != sidecarLoadStep {
				continue
			}
			failed = append(failed, fmt.Sprintf("load %d of loader %d, attempt %d, in flight %v before the SIGKILL: %v; grant used up at the KMS: %s",
				l.n, l.worker, i+1, r.killStart.Sub(at.start).Round(time.Millisecond), at.err, grantUsed(t, dsn, at.grant)))
		}
	}
	if len(failed) == 0 {
		t.Log("no grant load the sidecar had in flight when A died failed back to the custodian")
		return
	}
	for _, f := range failed {
		t.Error(f)
	}
	t.Errorf("%d grant loads the sidecar had sent to replica A failed back to the custodian instead of being retried through HAProxy on replica B", len(failed))
}

// grantUsed says whether the grant's one-time row is marked used.
func grantUsed(t *testing.T, dsn, grant string) string {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		return fmt.Sprintf("unknown (%v)", err)
	}
	defer conn.Close(t.Context())
	var used bool
	if err := conn.QueryRow(t.Context(), `SELECT used_at IS NOT NULL FROM one_time WHERE hash = $1`, kcrypto.HashToken(grant)).Scan(&used); err != nil {
		return fmt.Sprintf("unknown (%v)", err)
	}
	if used {
		return "yes (A used it and died before answering: only the very same request is answered again)"
	}
	return "no (a retry with the same grant through HAProxy would have loaded the key)"
}
