package main_test

// Fault tests of the dcaas binary under load (issue 7, "Faults under
// load"): a KMS killed with SIGKILL in the middle of a mix of data-key
// creations, grants, grant loads and rewraps, and a data dir that is
// read-only at start. The other fault tests (sidecar under load while the
// KMS goes away, a full disk, a read-only store, memory) run in-process in
// internal/faults.

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/e2e"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
)

// mixTimeout bounds how long a round of the mixed load may take to reach
// its mark; the load itself runs for seconds.
const mixTimeout = 40 * time.Second

// ackedGrant is a grant whose creation the KMS acknowledged, with what it
// binds and whether its one use was acknowledged too.
type ackedGrant struct {
	grant string
	ekbs  [][]byte
	keys  []e2e.AckedKey
	used  bool // a load with it was acknowledged: it must never load again
}

// mixLedger is what the KMS acknowledged under load.
type mixLedger struct {
	mu      sync.Mutex
	keys    []e2e.AckedKey
	grants  []*ackedGrant
	unknown int // grants whose use was in flight at the kill: either state is right
	rewraps int // acknowledged rewraps
	loads   int // acknowledged grant loads
}

func (l *mixLedger) pick(r *rand.Rand, n int) []e2e.AckedKey {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]e2e.AckedKey, 0, n)
	for range min(n, len(l.keys)) {
		out = append(out, l.keys[r.IntN(len(l.keys))])
	}
	return out
}

// mixOps counts acknowledged operations of each kind in one round.
type mixOps struct{ creates, grants, loads, rewraps atomic.Int64 }

func (m *mixOps) String() string {
	return fmt.Sprintf("%d data keys, %d grants, %d grant loads, %d rewraps", m.creates.Load(), m.grants.Load(), m.loads.Load(), m.rewraps.Load())
}

// reached reports whether every kind reached perKind acknowledgements.
func (m *mixOps) reached(perKind int64) bool {
	return m.creates.Load() >= perKind && m.grants.Load() >= perKind && m.loads.Load() >= perKind && m.rewraps.Load() >= perKind
}

// sidecarClient is a KMS client authenticating as the enrolled fake
// sidecar.
func sidecarClient(t *testing.T, p *e2e.KMS, side *kmstest.FakeSidecar) *kmstest.Client {
	t.Helper()
	keyPEM, err := kcrypto.MarshalPrivateKeyPEM(side.Key)
	if err != nil {
		t.Fatal(err)
	}
	return rawClient(t, p, []byte(side.Enrollment.CertPEM), keyPEM)
}

// grantLoad is the sidecar's half of the grant flow: it presents the grant
// and the EKBs with a fresh ephemeral HPKE key and returns what the KMS
// sealed to it, and the key that opens it.
func grantLoad(c *kmstest.Client, kem api.KEM, grant string, ekbs [][]byte) (*api.WrappedKeys, kcrypto.KEMPrivateKey, error) {
	priv, err := kcrypto.GenerateKEMKey(kem)
	if err != nil {
		return nil, nil, err
	}
	pub, err := kcrypto.MarshalKEMPublicKey(priv.PublicKey())
	if err != nil {
		return nil, nil, err
	}
	var out api.WrappedKeys
	if err := c.Do("POST", "/v1/keys/load", api.LoadRequest{Grant: grant, EKBs: ekbs, Recipient: pub}, &out); err != nil {
		return nil, nil, err
	}
	return &out, priv, nil
}

// openGrantLoad opens keys a grant load sealed to priv for side and checks
// they are the acknowledged keys the grant named.
func openGrantLoad(t *testing.T, side *kmstest.FakeSidecar, priv kcrypto.KEMPrivateKey, got *api.WrappedKeys, want []e2e.AckedKey) {
	t.Helper()
	if len(got.Keys) != len(want) {
		t.Fatalf("grant load returned %d keys, want %d", len(got.Keys), len(want))
	}
	deks := side.UnwrapWith(t, priv, got) // fills in the metadata the batch binds
	for i, k := range got.Keys {
		dek := deks[i]
		if k.KeyID != want[i].KeyID || k.Version != want[i].Version || k.Metadata.Type != want[i].Type {
			t.Errorf("grant load key %d = %s v%d %s, want %s v%d %s", i, k.KeyID, k.Version, k.Metadata.Type, want[i].KeyID, want[i].Version, want[i].Type)
		} else if want[i].Type.Signing() {
			kmstest.CheckPublicKey(t, want[i].Type, dek.Expose(), want[i].PublicKeyPEM)
		}
		dek.Wipe()
	}
}

// runMix runs workers that create data keys, create grants (and use half
// of them at once), and rewrap acknowledged keys, until every kind has
// perKind acknowledgements; then it SIGKILLs the KMS under them. Anything
// that fails before the kill fails the test.
func runMix(t *testing.T, p *e2e.KMS, w *tenantWorld, side *kmstest.FakeSidecar, led *mixLedger, round int) {
	t.Helper()
	const workers, perKind = 6, 25
	sc := sidecarClient(t, p, side)
	types := []api.KeyType{api.KeyAES256GCM, api.KeyHMACSHA256, api.KeyEd25519, api.KeyECDSAP256}
	var (
		ops      mixOps
		killed   atomic.Bool
		reached  = make(chan struct{})
		reachOne sync.Once
		wg       sync.WaitGroup
		errc     = make(chan error, workers)
	)
	// fail reports err unless the KMS was killed under the request (which
	// then was never acknowledged); the worker stops either way.
	fail := func(err error) {
		if !killed.Load() {
			errc <- err
		}
	}
	for g := range workers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(round), uint64(g)))
			for i := 0; ; i++ {
				switch i % 4 {
				case 0, 1: // create a data key
					typ := types[r.IntN(len(types))]
					var dk api.DataKey
					err := w.cust.Do("POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: typ, Labels: map[string]string{"round": strconv.Itoa(round), "worker": strconv.Itoa(g)}}, &dk)
					if err != nil {
						fail(fmt.Errorf("worker %d: create data key: %w", g, err))
						return
					}
					led.mu.Lock()
					led.keys = append(led.keys, e2e.AckedKey{DataKey: dk, Type: typ})
					led.mu.Unlock()
					ops.creates.Add(1)
				case 2: // a grant for one or two acknowledged keys; half are used at once
					keys := led.pick(r, 1+r.IntN(2))
					ag := &ackedGrant{keys: keys}
					for _, k := range keys {
						ag.ekbs = append(ag.ekbs, k.EKB)
					}
					var gr api.Grant
					err := w.cust.Do("POST", "/v1/grants", api.GrantRequest{InstanceID: side.Enrollment.InstanceID, EKBs: ag.ekbs}, &gr)
					if err != nil {
						fail(fmt.Errorf("worker %d: create grant: %w", g, err))
						return
					}
					ag.grant = gr.Grant
					ops.grants.Add(1)
					if r.IntN(2) == 0 {
						led.mu.Lock()
						led.grants = append(led.grants, ag)
						led.mu.Unlock()
						continue
					}
					got, _, err := grantLoad(sc, side.KEM, ag.grant, ag.ekbs)
					if err != nil {
						led.mu.Lock()
						led.unknown++ // consumed or not: the kill decides
						led.mu.Unlock()
						fail(fmt.Errorf("worker %d: load with a fresh grant: %w", g, err))
						return
					}
					if len(got.Keys) != len(keys) {
						fail(fmt.Errorf("worker %d: grant load returned %d keys, want %d", g, len(got.Keys), len(keys)))
						return
					}
					ag.used = true
					led.mu.Lock()
					led.grants = append(led.grants, ag)
					led.loads++
					led.mu.Unlock()
					ops.loads.Add(1)
				case 3: // rewrap acknowledged keys to the sidecar
					keys := led.pick(r, 1+r.IntN(8))
					ekbs := make([][]byte, len(keys))
					for j, k := range keys {
						ekbs[j] = k.EKB
					}
					var got api.WrappedKeys
					err := w.cust.Do("POST", "/v1/keys/rewrap", api.RewrapRequest{EKBs: ekbs, WrappingCertPEM: side.Enrollment.WrappingCertPEM}, &got)
					if err != nil {
						fail(fmt.Errorf("worker %d: rewrap: %w", g, err))
						return
					}
					if len(got.Keys) != len(keys) {
						fail(fmt.Errorf("worker %d: rewrap of %d EKBs answered %d keys", g, len(keys), len(got.Keys)))
						return
					}
					for j, k := range got.Keys {
						if k.KeyID != keys[j].KeyID {
							fail(fmt.Errorf("worker %d: rewrap answered key %d = %s, want %s", g, j, k.KeyID, keys[j].KeyID))
							return
						}
					}
					led.mu.Lock()
					led.rewraps++
					led.mu.Unlock()
					ops.rewraps.Add(1)
				}
				if ops.reached(perKind) {
					reachOne.Do(func() { close(reached) })
				}
			}
		})
	}
	killAtMark(t, p, &wg, &killed, reached, errc, mixTimeout, func() error {
		return fmt.Errorf("the mix did not reach %d of each kind within %v: %v", perKind, mixTimeout, &ops)
	})
	t.Logf("round %d: SIGKILL after %v acknowledged", round, &ops)
}

// auditCounts reads the whole audit log through the SDK as the admin and
// counts the successful records of each action, and which data keys were
// created.
func auditCounts(t *testing.T, p *e2e.KMS) (map[string]int, map[string]bool) {
	t.Helper()
	counts, created := map[string]int{}, map[string]bool{}
	for _, r := range e2e.AuditLog(t, p.Endpoint(t).Admin(t)) {
		if r.Outcome == "ok" {
			counts[r.Action]++
			if r.Action == "datakey.create" {
				created[r.KeyID] = true
			}
		}
	}
	return counts, created
}

func auditVerify(t *testing.T, dataDir, when string) {
	t.Helper()
	out, errOut, code := runDcaas(t, "audit", "verify", "--data-dir", dataDir)
	if code != 0 || !strings.Contains(out, "audit log OK") {
		t.Errorf("dcaas audit verify %s = exit %d, stdout %q, stderr %q; want 0 and \"audit log OK\"", when, code, out, errOut)
	}
}

// TestFaultKMSKill9UnderMixedLoad kills the KMS with SIGKILL twice in the
// middle of a sustained mix of data-key creations, grant creations, grant
// loads and rewraps from several workers (the second time right after
// recovering from the first). After the restart every acknowledged write
// is there: every acknowledged key rewraps and opens, every acknowledged
// grant that was not used loads exactly once, every used one never again,
// every acknowledged operation has its audit record, and `dcaas audit
// verify` passes.
func TestFaultKMSKill9UnderMixedLoad(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(t.TempDir(), "kms")
	p := startKMS(t, dataDir)
	w := newTenantWorld(t, p, "acme")
	side := kmstest.NewFakeSidecar(t, kcrypto.DefaultKEM())
	side.Enroll(t, rawClient(t, p, nil, nil), w.token(t).Token)
	led := &mixLedger{}
	// Keys for the first grants and rewraps to name.
	for _, typ := range []api.KeyType{api.KeyAES256GCM, api.KeyHMACSHA256, api.KeyEd25519, api.KeyECDSAP256} {
		var dk api.DataKey
		w.cust.MustDo(t, "POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: typ, Purpose: "before the load"}, &dk)
		led.keys = append(led.keys, e2e.AckedKey{DataKey: dk, Type: typ})
	}

	const rounds = 2
	for round := range rounds {
		runMix(t, p, w, side, led, round)
		p = startKMS(t, dataDir)
		w = w.reconnect(t, p)
	}
	t.Logf("acknowledged in all: %d data keys, %d grants (%d used), %d rewraps; %d grant uses in flight at a kill",
		len(led.keys), len(led.grants), led.loads, led.rewraps, led.unknown)

	// The tenant is still there.
	err := w.admin.Do("POST", "/v1/tenants", api.CreateTenantRequest{Name: "acme"}, nil)
	kmstest.WantError(t, err, 409, api.CodeConflict)

	// Every acknowledged key rewraps to the sidecar enrolled before the
	// crashes and to one enrolled now, and opens there.
	fresh := kmstest.NewFakeSidecar(t, kcrypto.DefaultKEM())
	fresh.Enroll(t, rawClient(t, p, nil, nil), w.token(t).Token)
	for _, s := range []*kmstest.FakeSidecar{side, fresh} {
		checkReleases(t, w.cust, s, led.keys)
	}

	// Acknowledged grants: the unused ones load once, and no grant loads
	// twice.
	sc := sidecarClient(t, p, side)
	unused := 0
	for i, g := range led.grants {
		if !g.used {
			unused++
			got, priv, err := grantLoad(sc, side.KEM, g.grant, g.ekbs)
			if err != nil {
				t.Errorf("acknowledged, unused grant %d does not load after the crashes: %v", i, err)
				continue
			}
			openGrantLoad(t, side, priv, got, g.keys)
		}
		_, _, err := grantLoad(sc, side.KEM, g.grant, g.ekbs)
		var ae *api.Error
		if !errors.As(err, &ae) || ae.Status != 409 || ae.Code != api.CodeAlreadyUsed {
			t.Errorf("grant %d (used under load: %v) loads again after the crashes: %v; want 409 already_used", i, g.used, err)
		}
	}
	t.Logf("%d unused grants loaded once after the crashes; %d grants refused a second use", unused, len(led.grants))

	// Every acknowledged operation was audited; the chain is intact.
	counts, created := auditCounts(t, p)
	for _, k := range led.keys {
		if !created[k.KeyID] {
			t.Errorf("key %s was acknowledged but has no datakey.create audit record", k.KeyID)
		}
	}
	for _, c := range []struct {
		action string
		acked  int
	}{
		{"grant.create", len(led.grants)},
		{"keys.load", led.loads + unused},
		{"keys.rewrap", led.rewraps},
	} {
		if counts[c.action] < c.acked {
			t.Errorf("%d %s acknowledged, but only %d audit records of it", c.acked, c.action, counts[c.action])
		}
	}
	auditVerify(t, dataDir, "on the live KMS")
	p.Stop(t)
	auditVerify(t, dataDir, "after it stopped")
}

// TestFaultKMSReadOnlyDataDir starts `dcaas kms serve` on a data dir on a
// file system that is read-only: it must exit non-zero at once, naming
// the problem, and serve again once the file system is writable.
func TestFaultKMSReadOnlyDataDir(t *testing.T) {
	t.Parallel()
	mnt := mountTmpfsE2E(t, "32m")
	dataDir := filepath.Join(mnt, "kms")
	p := startKMS(t, dataDir)
	w := newTenantWorld(t, p, "acme")
	var dk api.DataKey
	w.cust.MustDo(t, "POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: api.KeyAES256GCM}, &dk)
	p.Stop(t)

	remountE2E(t, mnt, "ro")
	out, errOut, code := runDcaas(t, "kms", "serve", "--data-dir", dataDir, "--listen", "127.0.0.1:0")
	if code == 0 {
		t.Fatalf("dcaas kms serve on a read-only data dir exited 0; stdout %q", out)
	}
	if !strings.Contains(errOut, "read-only") {
		t.Errorf("dcaas kms serve on a read-only data dir: stderr %q does not say the file system is read-only", errOut)
	}
	if strings.Contains(out, "ready") {
		t.Errorf("stdout = %q, want no ready line", out)
	}
	t.Logf("dcaas kms serve on a read-only data dir: exit %d, %s", code, strings.TrimSpace(errOut))

	remountE2E(t, mnt, "rw")
	p = startKMS(t, dataDir)
	w = w.reconnect(t, p)
	fresh := kmstest.NewFakeSidecar(t, kcrypto.DefaultKEM())
	fresh.Enroll(t, rawClient(t, p, nil, nil), w.token(t).Token)
	checkReleases(t, w.cust, fresh, []e2e.AckedKey{{DataKey: dk, Type: api.KeyAES256GCM}})
	p.Stop(t)
	auditVerify(t, dataDir, "after the read-only start")
}

// mountTmpfsE2E mounts a small tmpfs for a data dir and unmounts it when
// the test ends, after the KMS started on it was killed (cleanups run last
// registered first, and the mount is registered before any KMS). It skips
// where mounting is not permitted.
func mountTmpfsE2E(t *testing.T, size string) string {
	t.Helper()
	e2e.Binary(t) // build first: a skip for -short comes before the mount
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs that can be made read-only (CI runs the tests as root)")
	}
	dir := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v: %s); this test needs root with CAP_SYS_ADMIN", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
			if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
				t.Errorf("umount -l %s: %v: %s", dir, err, out)
			}
		}
	})
	return dir
}

func remountE2E(t *testing.T, dir, mode string) {
	t.Helper()
	if out, err := exec.Command("mount", "-o", "remount,"+mode, dir).CombinedOutput(); err != nil {
		t.Fatalf("mount -o remount,%s %s: %v: %s", mode, dir, err, out)
	}
}
