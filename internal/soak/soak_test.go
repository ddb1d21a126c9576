// Package soak is "a year in minutes": a fleet with lifetimes of seconds
// (sidecar certificates 10 s, KMS certificate 20 s, leases 5 s, a key
// rotated every 7 s) run for a while through everything a year brings —
// KMS replicas killed and restarted behind a load balancer, sidecars
// killed with SIGKILL and brought back by their enrollment agents, a key
// disabled, an instance revoked, rotations and renewals — while clients
// encrypt and decrypt all along.
//
// It counts three kinds of wrong outcome, each of which fails it:
//
//   - an operation that should succeed but did not within a retry window
//     (the window covers a sidecar's restart and re-enrollment: a few
//     seconds of 503 are expected there, a lost key is not);
//   - an operation on a disabled key or a revoked instance that succeeded
//     after the revocation had had time to reach the sidecar (one poll
//     interval plus slack);
//   - a decryption that returned other bytes than were encrypted.
//
// And at the end the replicas' audit log must verify: every record signed
// with the audit key pinned before the run, the chain whole up to a
// checkpoint taken after it.
//
// The run lasts DCAAS_SOAK_DURATION (default 40s; `make soak` sets
// minutes) and prints a summary; DCAAS_SOAK_SUMMARY names a file to write
// it to as well.
package soak_test

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/client"
	"github.com/dcaas/dcaas/internal/e2e"
	"github.com/dcaas/dcaas/internal/kms"
	"github.com/dcaas/dcaas/internal/store/pgtest"
)

func TestMain(m *testing.M) { e2e.Main(m) }

const (
	pollInterval = time.Second
	// retryWindow is how long an operation that should succeed may keep
	// failing: a sidecar killed, restarted, re-enrolled by its agent and
	// reloaded, then refreshed to the newest versions, takes a few
	// seconds.
	retryWindow = 20 * time.Second
	// propagation is how long after a revocation at the KMS a sidecar may
	// still serve: a poll interval, a poll's own time, slack for a loaded
	// machine.
	propagation = pollInterval + 4*time.Second
)

func soakDuration(t *testing.T) time.Duration {
	s := os.Getenv("DCAAS_SOAK_DURATION")
	if s == "" {
		if testing.Short() {
			t.Skip("the soak test runs for minutes; DCAAS_SOAK_DURATION sets how long")
		}
		return 40 * time.Second
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 20*time.Second {
		t.Fatalf("DCAAS_SOAK_DURATION=%q: want a Go duration of at least 20s", s)
	}
	return d
}

// tally counts what happened; every field is updated atomically.
type tally struct {
	encrypts, decrypts       atomic.Int64
	retried                  atomic.Int64 // operations that succeeded after failing first
	failed                   atomic.Int64 // should have succeeded, never did
	wrong                    atomic.Int64 // a decryption gave other bytes
	refusedAfterRevocation   atomic.Int64 // correctly refused: disabled key, revoked instance
	servedAfterRevocation    atomic.Int64 // wrongly served
	sidecarKills, kmsKills   atomic.Int64
	agentRounds, agentErrors atomic.Int64
	enrollments              atomic.Int64
	maxVersion               atomic.Int64
}

// sealed is a ciphertext and what it must decrypt to.
type sealed struct {
	ct, pt, aad []byte
	key         string
}

type world struct {
	t         *testing.T
	tn        *e2e.Tenant
	lb        *e2e.HAProxy
	reps      []*e2e.KMS
	store     *client.EKBStore
	sidecars  []*e2e.Sidecar
	tal       tally
	mu        sync.Mutex
	made      []sealed // a uniform sample of what was encrypted (keep)
	nMade     int64    // how many were
	failures  []string
	disabled  atomic.Int64 // unix nanos when the doomed key was disabled (0: not yet)
	doomed    string
	rotated   string
	steady    string
	victim    *e2e.Sidecar
	revokedAt atomic.Int64
}

func (w *world) fail(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.failures) < 50 {
		w.failures = append(w.failures, fmt.Sprintf(time.Now().Format("15:04:05.000 ")+format, args...))
	}
}

func TestSoak(t *testing.T) {
	d := soakDuration(t)
	start := time.Now()
	dsn := pgtest.DSN(t)
	reps := e2e.StartReplicas(t, 2, dsn,
		"--sidecar-cert-ttl", "10s", "--server-cert-ttl", "20s", "--cert-check-interval", "500ms",
		"--rotation-check-interval", "1s", "--min-rotation-period", "5s")
	lb := e2e.StartHAProxy(t, reps...)
	ep := lb.Endpoint()
	tn := e2e.NewTenant(t, ep, "acme")
	auditKey := pinAuditKey(t, ep, reps)
	w := &world{t: t, tn: tn, lb: lb, reps: reps, store: &client.EKBStore{Dir: t.TempDir()}}

	mk := func(req api.CreateDataKeyRequest) string {
		dk, err := tn.Custodian.CreateDataKey(t.Context(), req)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.store.Put(dk.KeyID, dk.Version, dk.EKB); err != nil {
			t.Fatal(err)
		}
		return dk.KeyID
	}
	w.rotated = mk(api.CreateDataKeyRequest{Type: api.KeyAES256GCM, RotationPeriodSeconds: 7})
	w.steady = mk(api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	w.doomed = mk(api.CreateDataKeyRequest{Type: api.KeyAES256GCM})

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var wg sync.WaitGroup
	for i := range 2 {
		sc := tn.StartSidecar(t, e2e.SidecarConfig{
			Name: fmt.Sprintf("sidecar-%d", i), KMSURL: lb.URL(), Waiting: true, PollInterval: pollInterval,
			Flags: []string{"--lease", "5s"},
		})
		w.sidecars = append(w.sidecars, sc)
		wg.Go(func() { w.agent(ctx, sc) })
	}
	w.victim = tn.StartSidecar(t, e2e.SidecarConfig{Name: "victim", KMSURL: lb.URL(), Waiting: true, PollInterval: pollInterval, Flags: []string{"--lease", "5s"}})
	wg.Go(func() { w.agent(ctx, w.victim) })
	w.waitLoaded(ctx)
	t.Logf("fleet up in %v: 2 replicas behind HAProxy, 3 sidecars with their agents", time.Since(start).Round(time.Millisecond))

	end := time.Now().Add(d)
	for i, sc := range w.sidecars {
		for j := range 2 {
			wg.Go(func() { w.worker(ctx, end, sc, fmt.Sprintf("w%d.%d", i, j)) })
		}
	}
	wg.Go(func() { w.victimWatch(ctx, end) })
	w.chaos(ctx, d)
	for time.Now().Before(end) {
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	wg.Wait()

	// Every ciphertext made in the run still decrypts, through each
	// sidecar (the doomed key's excepted: it must not).
	w.finalCheck(t.Context())
	// The replicas share one database, one chain, signed with one audit
	// key. A checkpoint of its head now, kept outside the database, is
	// what the log must still reach when it is verified.
	cp, err := ep.Admin(t).NewAuditCheckpoint(t.Context())
	if err != nil {
		t.Fatalf("a checkpoint of the audit log after the run: %v", err)
	}
	verifyAudit(t, dsn, auditKey, cp)
	w.summary(time.Since(start), d)
}

// agent is the enrollment agent next to one sidecar (what `dcaas sidecar
// enroll --watch` runs), every 300 ms.
func (w *world) agent(ctx context.Context, sc *e2e.Sidecar) {
	a := &client.Agent{KMS: w.tn.Custodian, Sidecar: sc.Client(w.t, client.WithTimeout(5*time.Second)), Store: w.store}
	tick := time.NewTicker(300 * time.Millisecond)
	defer tick.Stop()
	for {
		r, err := a.Reconcile(ctx)
		w.tal.agentRounds.Add(1)
		if r.Enrolled != "" {
			w.tal.enrollments.Add(1)
		}
		if err != nil && ctx.Err() == nil {
			w.tal.agentErrors.Add(1)
			if errors.Is(err, client.ErrRevoked) && sc != w.victim {
				w.fail("agent: a sidecar that nobody revoked reports revoked: %v", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// waitLoaded waits until every sidecar holds the three keys.
func (w *world) waitLoaded(ctx context.Context) {
	deadline := time.Now().Add(60 * time.Second)
	for _, sc := range append(append([]*e2e.Sidecar(nil), w.sidecars...), w.victim) {
		c := sc.Client(w.t)
		for {
			keys, err := c.Keys(ctx)
			if err == nil && len(keys) >= 3 {
				break
			}
			if time.Now().After(deadline) {
				w.t.Fatalf("%s did not load the store: %v, %v", sc.Socket(), keys, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// retry runs op until it succeeds or the retry window closes; it reports
// whether it succeeded and counts a success after a failure.
func retry(ctx context.Context, op func() error) (bool, error) {
	deadline := time.Now().Add(retryWindow)
	var last error
	for tries := 0; ; tries++ {
		if err := op(); err == nil {
			return true, nil
		} else {
			last = err
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return false, last
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func pick[T any](xs []T) T {
	i, _ := rand.Int(rand.Reader, big.NewInt(int64(len(xs))))
	return xs[i.Int64()]
}

// worker encrypts under the live keys and decrypts what anyone made,
// through its sidecar, until end; once the doomed key is disabled it
// checks that it is refused.
func (w *world) worker(ctx context.Context, end time.Time, sc *e2e.Sidecar, name string) {
	c := sc.Client(w.t, client.WithTimeout(5*time.Second))
	for time.Now().Before(end) && ctx.Err() == nil {
		key := pick([]string{w.rotated, w.steady, w.doomed})
		if key == w.doomed && w.disabled.Load() != 0 {
			w.tryDoomed(ctx, c, name)
			continue
		}
		pt, aad := randBytes(48), []byte(name)
		var ct *api.EncryptResponse
		tries := 0
		ok, err := retry(ctx, func() error {
			tries++
			var err error
			ct, err = c.Encrypt(ctx, api.KeyRef{KeyID: key}, pt, aad)
			return err
		})
		switch {
		case ctx.Err() != nil:
			return
		case !ok && key == w.doomed && w.disabled.Load() != 0:
			// Disabled while this retried: refused, as it should be.
			continue
		case !ok:
			w.tal.failed.Add(1)
			w.fail("%s: encrypt with %s failed for %v: %v", name, key, retryWindow, err)
			continue
		}
		w.tal.encrypts.Add(1)
		if tries > 1 {
			w.tal.retried.Add(1)
		}
		if key == w.rotated {
			for m := w.tal.maxVersion.Load(); int64(ct.KeyVersion) > m; m = w.tal.maxVersion.Load() {
				if w.tal.maxVersion.CompareAndSwap(m, int64(ct.KeyVersion)) {
					break
				}
			}
		}
		w.mu.Lock()
		w.keep(sealed{ct: ct.Ciphertext, pt: pt, aad: aad, key: key})
		s := pick(w.made)
		w.mu.Unlock()
		if s.key == w.doomed {
			continue // its fate is checked in finalCheck
		}
		w.decrypt(ctx, c, name, s)
	}
}

// keepSample is how many ciphertexts the run keeps to decrypt again: a
// long run makes millions.
const keepSample = 20000

// keep adds s to the sample (reservoir sampling: every ciphertext of the
// run is equally likely to be in it). w.mu must be held.
func (w *world) keep(s sealed) {
	w.nMade++
	if len(w.made) < keepSample {
		w.made = append(w.made, s)
		return
	}
	if i, _ := rand.Int(rand.Reader, big.NewInt(w.nMade)); i.Int64() < keepSample {
		w.made[i.Int64()] = s
	}
}

// decrypt checks that s decrypts to its plaintext through c.
func (w *world) decrypt(ctx context.Context, c *client.Sidecar, name string, s sealed) {
	var got []byte
	tries := 0
	ok, err := retry(ctx, func() error {
		tries++
		var err error
		got, err = c.Decrypt(ctx, api.KeyRef{}, s.ct, s.aad)
		return err
	})
	switch {
	case ctx.Err() != nil:
	case !ok:
		w.tal.failed.Add(1)
		w.fail("%s: decrypt of a %s ciphertext failed for %v: %v", name, s.key, retryWindow, err)
	case !bytes.Equal(got, s.pt):
		w.tal.wrong.Add(1)
		w.fail("%s: a %s ciphertext decrypted to other bytes", name, s.key)
	default:
		w.tal.decrypts.Add(1)
		if tries > 1 {
			w.tal.retried.Add(1)
		}
	}
}

// tryDoomed uses the disabled key: refused once the revocation has had
// time to arrive.
func (w *world) tryDoomed(ctx context.Context, c *client.Sidecar, name string) {
	_, err := c.Encrypt(ctx, api.KeyRef{KeyID: w.doomed}, []byte("x"), nil)
	since := time.Since(time.Unix(0, w.disabled.Load()))
	switch {
	case err != nil:
		w.tal.refusedAfterRevocation.Add(1)
	case since > propagation:
		w.tal.servedAfterRevocation.Add(1)
		w.fail("%s: the key disabled %v ago still encrypts", name, since.Round(time.Millisecond))
	}
	time.Sleep(50 * time.Millisecond)
}

// victimWatch uses the victim sidecar until it is revoked, then checks
// that it refuses everything.
func (w *world) victimWatch(ctx context.Context, end time.Time) {
	c := w.victim.Client(w.t, client.WithTimeout(5*time.Second))
	for time.Now().Before(end) && ctx.Err() == nil {
		_, err := c.Encrypt(ctx, api.KeyRef{KeyID: w.steady}, []byte("victim"), nil)
		at := w.revokedAt.Load()
		switch {
		case at == 0:
		case err != nil:
			w.tal.refusedAfterRevocation.Add(1)
		case time.Since(time.Unix(0, at)) > propagation:
			w.tal.servedAfterRevocation.Add(1)
			w.fail("victim: the revoked instance still encrypts %v after its revocation", time.Since(time.Unix(0, at)).Round(time.Millisecond))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// chaos runs the year's events over d, from the test's goroutine (the
// fixture may fail the test), one after the other at their times.
func (w *world) chaos(ctx context.Context, d time.Duration) {
	t := w.t
	type event struct {
		frac float64
		what string
		do   func()
	}
	var evs []event
	// Sidecar crashes: one every 15 s (at least 5), alternating between
	// the two, SIGKILL, started again a second later (its agent enrolls
	// and reloads it).
	n := max(5, int(d/(15*time.Second)))
	for i := 1; i <= n; i++ {
		sc := w.sidecars[i%2]
		evs = append(evs, event{float64(i) / float64(n+1), fmt.Sprintf("kill -9 sidecar-%d", i%2), func() {
			sc.Kill9(t)
			w.tal.sidecarKills.Add(1)
			time.Sleep(time.Second)
			sc.Restart(t)
		}})
	}
	// Replica crashes: one a minute (at least 2), A and B in turn, each
	// back after 3 s.
	m := max(2, int(d/time.Minute))
	for i := range m {
		r := w.reps[i%2]
		evs = append(evs, event{(float64(i) + 0.6) / float64(m), "kill -9 replica " + r.Name(), func() {
			r.Kill9(t)
			w.tal.kmsKills.Add(1)
			time.Sleep(3 * time.Second)
			r.Restart(t)
		}})
	}
	evs = append(evs, event{0.45, "disable the doomed key", func() {
		if err := w.tn.Custodian.DisableKey(ctx, w.doomed); err != nil {
			w.fail("DisableKey: %v", err)
			return
		}
		w.disabled.Store(time.Now().UnixNano())
	}}, event{0.55, "revoke the victim sidecar", func() {
		st, err := w.victim.Client(t).Status(ctx)
		if err != nil {
			w.fail("victim status: %v", err)
			return
		}
		if err := w.tn.Custodian.RevokeInstance(ctx, st.InstanceID); err != nil {
			w.fail("RevokeInstance: %v", err)
			return
		}
		w.revokedAt.Store(time.Now().UnixNano())
	}})
	slices.SortFunc(evs, func(a, b event) int { return cmp.Compare(a.frac, b.frac) })
	start := time.Now()
	for _, e := range evs {
		if wait := time.Until(start.Add(time.Duration(e.frac * float64(d)))); wait > 0 {
			time.Sleep(wait)
		}
		if ctx.Err() != nil {
			return
		}
		t.Logf("%s: %s", time.Now().Format("15:04:05.000"), e.what)
		e.do()
	}
}

// finalCheck decrypts every ciphertext of the run through each sidecar:
// all of them, except the doomed key's, which none may decrypt.
func (w *world) finalCheck(ctx context.Context) {
	// At most 2,000 of them and 500 of the doomed key's (a long run makes
	// far more), spread over the run.
	var check, doomed []sealed
	for n, s := range w.made {
		switch {
		case s.key == w.doomed:
			if len(doomed) < 500 { // the first ones: made long before the disable
				doomed = append(doomed, s)
			} else if i, _ := rand.Int(rand.Reader, big.NewInt(int64(n+1))); i.Int64() < 500 {
				doomed[i.Int64()] = s
			}
		case len(check) < 2000:
			check = append(check, s)
		default: // reservoir sampling: a uniform spread over the run
			if i, _ := rand.Int(rand.Reader, big.NewInt(int64(n+1))); i.Int64() < 2000 {
				check[i.Int64()] = s
			}
		}
	}
	check = append(check, doomed...)
	for _, sc := range w.sidecars {
		c := sc.Client(w.t, client.WithTimeout(5*time.Second))
		for _, s := range check {
			if s.key == w.doomed {
				if _, err := c.Decrypt(ctx, api.KeyRef{}, s.ct, s.aad); err == nil {
					w.tal.servedAfterRevocation.Add(1)
					w.fail("final: a ciphertext of the disabled key decrypts")
				} else {
					w.tal.refusedAfterRevocation.Add(1)
				}
				continue
			}
			w.decrypt(ctx, c, "final", s)
		}
	}
}

// pinAuditKey reads the public key of the audit log through the load
// balancer before the run, as a verifier pins it, and checks that every
// replica wrote that same key to its data dir (replicas on one database
// sign with one key). It returns the key's file.
func pinAuditKey(t *testing.T, ep e2e.Endpoint, reps []*e2e.KMS) string {
	t.Helper()
	ak, err := ep.Anonymous(t).AuditKey(t.Context())
	if err != nil {
		t.Fatalf("GET /v1/audit/key: %v", err)
	}
	for _, r := range reps {
		if got := string(r.ReadFile(t, kms.AuditKeyFile)); got != ak.PublicKeyPEM {
			t.Fatalf("%s's %s differs from the audit key the KMS serves (%s)", r.DataDir(), kms.AuditKeyFile, ak.KeyID)
		}
	}
	f := filepath.Join(t.TempDir(), "audit-key.pem")
	if err := os.WriteFile(f, []byte(ak.PublicKeyPEM), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("audit key pinned: %s", ak.KeyID)
	return f
}

// verifyAudit runs `dcaas audit verify` on the replicas' database with
// the audit key pinned before the run and the checkpoint cp taken after
// it: every record must be signed by that key (a log of unsigned records
// does not verify), chained, and reach cp's record with its hash.
func verifyAudit(t *testing.T, dsn, keyFile string, cp *api.AuditCheckpoint) {
	t.Helper()
	b, err := json.Marshal(cp)
	if err != nil {
		t.Fatal(err)
	}
	cpFile := filepath.Join(t.TempDir(), "checkpoint.json")
	if err := os.WriteFile(cpFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(e2e.Binary(t), "audit", "verify", "--store", "postgres", "--key", keyFile, "--expect-checkpoint", cpFile)
	cmd.Env = append(os.Environ(), "DCAAS_POSTGRES_DSN="+dsn)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("dcaas audit verify: %v\n%s", err, out)
		return
	}
	want := fmt.Sprintf("checkpoint of record %d signed at", cp.Seq)
	if !strings.Contains(string(out), "audit log OK") || !strings.Contains(string(out), cp.KeyID) || !strings.Contains(string(out), want) {
		t.Errorf("dcaas audit verify = %s; want OK with key %s and the checkpoint of record %d", out, cp.KeyID, cp.Seq)
	}
	t.Logf("dcaas audit verify: %s", strings.TrimSpace(string(out)))
}

// summary logs (and with DCAAS_SOAK_SUMMARY writes) the run's figures and
// fails the test on any wrong outcome.
func (w *world) summary(took, d time.Duration) {
	t, c := w.t, &w.tal
	lines := []string{
		fmt.Sprintf("soak: %v of load (%v in all)", d, took.Round(time.Second)),
		fmt.Sprintf("  operations: %d encrypts, %d decrypts (%d succeeded after retrying)", c.encrypts.Load(), c.decrypts.Load(), c.retried.Load()),
		fmt.Sprintf("  events: %d sidecar kill -9, %d replica kill -9, %d enrollments by the agents (%d rounds, %d with an error), 1 key disabled, 1 instance revoked", c.sidecarKills.Load(), c.kmsKills.Load(), c.enrollments.Load(), c.agentRounds.Load(), c.agentErrors.Load()),
		fmt.Sprintf("  rotations: the rotating key reached version %d", c.maxVersion.Load()),
		fmt.Sprintf("  refused after a revocation (correct): %d", c.refusedAfterRevocation.Load()),
		fmt.Sprintf("  WRONG: %d failed that should have succeeded, %d served after a revocation, %d decrypted to other bytes", c.failed.Load(), c.servedAfterRevocation.Load(), c.wrong.Load()),
	}
	text := strings.Join(lines, "\n")
	t.Log("\n" + text)
	if f := os.Getenv("DCAAS_SOAK_SUMMARY"); f != "" {
		if err := os.WriteFile(f, []byte(text+"\n"), 0o644); err != nil {
			t.Error(err)
		}
	}
	for _, f := range w.failures {
		t.Error(f)
	}
	if c.failed.Load()+c.servedAfterRevocation.Load()+c.wrong.Load() != 0 {
		t.Error("wrong outcomes (see above)")
	}
	if c.maxVersion.Load() < 2 {
		t.Errorf("the key with a 7 s rotation period never reached sidecars at version 2 or more (max %d)", c.maxVersion.Load())
	}
	if c.refusedAfterRevocation.Load() == 0 {
		t.Error("nothing was tried after the revocations")
	}
}
