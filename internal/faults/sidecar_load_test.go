package faults_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/client"
	"github.com/dcaas/dcaas/internal/devenv"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
)

// Phases of the outage test.
const (
	phaseUp = iota
	phaseDown
	phaseBack
	phases
)

var phaseNames = [phases]string{"KMS up", "KMS down", "KMS back"}

// loadStats counts a closed-loop load's operations per phase and keeps
// the first failures.
type loadStats struct {
	phase  atomic.Int32
	ops    [phases]atomic.Int64
	failed atomic.Int64

	mu       sync.Mutex
	failures []string
}

func (l *loadStats) fail(format string, args ...any) {
	l.failed.Add(1)
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.failures) < 20 {
		l.failures = append(l.failures, fmt.Sprintf("[%s] ", phaseNames[l.phase.Load()])+fmt.Sprintf(format, args...))
	}
}

// client runs encrypt → decrypt → MAC → MAC verify over the socket until
// ctx ends. Each request has its own deadline (the client's HTTP timeout)
// and is never cancelled by ctx: a request in flight when the load stops
// still has to succeed.
func (l *loadStats) client(ctx context.Context, c *client.Sidecar, id int, aes []string, hmac string) {
	bg := context.Background()
	for i := 0; ctx.Err() == nil; i++ {
		key := aes[(id+i)%len(aes)]
		pt := []byte(fmt.Sprintf("client %d operation %d: %s", id, i, strings.Repeat("x", i%200)))
		aad := []byte(fmt.Sprintf("order-%d-%d", id, i))
		var enc api.EncryptResponse
		if err := c.Do(bg, "POST", "/v1/crypto/encrypt", api.EncryptRequest{KeyRef: api.KeyRef{KeyID: key}, Plaintext: pt, AAD: aad}, &enc); err != nil {
			l.fail("client %d: encrypt with %s: %v", id, key, err)
			continue
		}
		var dec api.DecryptResponse
		if err := c.Do(bg, "POST", "/v1/crypto/decrypt", api.DecryptRequest{Ciphertext: enc.Ciphertext, AAD: aad}, &dec); err != nil {
			l.fail("client %d: decrypt with %s: %v", id, key, err)
			continue
		}
		if !bytes.Equal(dec.Plaintext, pt) {
			l.fail("client %d: decrypt with %s returned other plaintext", id, key)
			continue
		}
		var mac api.MACResponse
		if err := c.Do(bg, "POST", "/v1/crypto/mac", api.MACRequest{KeyRef: api.KeyRef{KeyID: hmac}, Message: pt}, &mac); err != nil {
			l.fail("client %d: mac: %v", id, err)
			continue
		}
		var v api.ValidResponse
		if err := c.Do(bg, "POST", "/v1/crypto/mac/verify", api.MACVerifyRequest{KeyRef: api.KeyRef{KeyID: hmac}, Message: pt, MAC: mac.MAC}, &v); err != nil || !v.Valid {
			l.fail("client %d: mac verify = %v, %v", id, v.Valid, err)
			continue
		}
		l.ops[l.phase.Load()].Add(4)
	}
}

// TestSidecarLoadKMSOutage keeps closed-loop clients busy on a sidecar's
// socket while the KMS stops and comes back: no operation on a loaded key
// may fail, the sidecar's status must say the KMS is unreachable while it
// is down and reachable once it is back, and what needs the KMS (loading
// a key) must fail cleanly with 503 while it is down and work after.
func TestSidecarLoadKMSOutage(t *testing.T) {
	const (
		clients  = 4
		upFor    = 1500 * time.Millisecond // load before the outage
		downFor  = 2500 * time.Millisecond // load while the KMS is down
		backFor  = 1500 * time.Millisecond // load after it came back
		minPhase = 40                      // operations each phase must see, at least
	)
	w := newWorld(t, nil)
	s := w.startSidecar(t, nil)
	dks := w.createKeys(t, 8, 4, api.KeyAES256GCM)
	hm := w.createKeys(t, 1, 1, api.KeyHMACSHA256)
	s.load(t, w, append(dks, hm...))
	aes := make([]string, len(dks))
	for i, dk := range dks {
		aes[i] = dk.KeyID
	}
	if st := s.status(t); !st.KMSReachable || st.KeysLoaded != len(dks)+1 {
		t.Fatalf("status before the load = %+v, want the KMS reachable and %d keys", st, len(dks)+1)
	}

	var stats loadStats
	ctx, stopLoad := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for id := range clients {
		c := devenv.UnixClient(s.socket) // one connection pool per client, like separate processes
		t.Cleanup(func() { c.Close() })
		wg.Go(func() { stats.client(ctx, c, id, aes, hm[0].KeyID) })
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			stopLoad()
			wg.Wait()
		}
	}
	t.Cleanup(stop) // a t.Fatal below must not leave clients running

	time.Sleep(upFor)

	// The KMS goes away.
	stats.phase.Store(phaseDown)
	w.env.Stop()
	downAt := time.Now()
	st := s.waitStatus(t, "kms_reachable false", func(st api.Status) bool { return !st.KMSReachable })
	t.Logf("status reports the KMS unreachable %v after it stopped", time.Since(downAt).Round(time.Millisecond))
	if st.KeysLoaded != len(dks)+1 {
		t.Errorf("status with the KMS down = %+v, want %d keys still loaded", st, len(dks)+1)
	}
	// What needs the KMS fails cleanly: 503 unavailable, naming the KMS.
	err := s.local.Do(t.Context(), "POST", "/v1/keys/load", api.SidecarLoadRequest{Grant: "dcgr_whatever", EKBs: [][]byte{dks[0].EKB}}, nil)
	kmstest.WantError(t, err, 503, api.CodeUnavailable)
	if e := kmstest.APIError(err); !strings.Contains(e.Message, "KMS") {
		t.Errorf("load with the KMS down: message %q does not say the KMS is unreachable", e.Message)
	}
	time.Sleep(max(0, downFor-time.Since(downAt)))

	// It comes back on the same address and data dir.
	w.env.Restart()
	stats.phase.Store(phaseBack)
	backAt := time.Now()
	s.waitStatus(t, "kms_reachable true", func(st api.Status) bool { return st.KMSReachable })
	t.Logf("status reports the KMS reachable %v after it restarted", time.Since(backAt).Round(time.Millisecond))
	time.Sleep(max(0, backFor-time.Since(backAt)))
	stop()

	total := int64(0)
	for p := range phases {
		n := stats.ops[p].Load()
		total += n
		t.Logf("%s: %d operations", phaseNames[p], n)
		if n < minPhase {
			t.Errorf("%s: only %d operations ran; the load did not cover this phase", phaseNames[p], n)
		}
	}
	if n := stats.failed.Load(); n > 0 {
		t.Errorf("%d operations on loaded keys failed (of %d); first ones:\n%s", n, total+n, strings.Join(stats.failures, "\n"))
	}

	// Loading works again once the KMS is back: a key made now loads and
	// serves.
	fresh := w.createKeys(t, 1, 1, api.KeyAES256GCM)
	s.load(t, w, fresh)
	var enc api.EncryptResponse
	s.do(t, "POST", "/v1/crypto/encrypt", api.EncryptRequest{KeyRef: api.KeyRef{KeyID: fresh[0].KeyID}, Plaintext: []byte("after")}, &enc)
	if st := s.status(t); !st.KMSReachable || st.KeysLoaded != len(dks)+2 {
		t.Errorf("status at the end = %+v, want the KMS reachable and %d keys", st, len(dks)+2)
	}
}
