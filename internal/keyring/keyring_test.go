package keyring

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/enclave"
	"github.com/dcaas/dcaas/internal/enclave/software"
	"github.com/dcaas/dcaas/internal/format"
	"github.com/dcaas/dcaas/internal/secret"
)

// bound is the custodian every test ring serves.
const bound = "CN=payments-api,O=acme"

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// clock is an injectable Config.Now that tests move by hand.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(t0.UnixNano())
	return c
}

func (c *clock) Now() time.Time               { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Add(d time.Duration)          { c.ns.Add(int64(d)) }
func (c *clock) Set(t time.Time)              { c.ns.Store(t.UnixNano()) }
func (c *clock) At(d time.Duration) time.Time { return t0.Add(d) }

// newRing returns a ring over a real software enclave, closed with the test.
func newRing(t testing.TB, cfg Config) *Ring {
	t.Helper()
	enc, err := software.New()
	if err != nil {
		t.Fatalf("software.New() = %v", err)
	}
	t.Cleanup(func() { enc.Close() })
	if cfg.BoundDN == "" {
		cfg.BoundDN = bound
	}
	r := New(enc, cfg)
	t.Cleanup(r.Close)
	return r
}

func meta(keyID string, version int, typ api.KeyType) api.KeyMetadata {
	return api.KeyMetadata{KeyID: keyID, Version: version, Tenant: "acme", Type: typ, Owner: bound, CreatedAt: t0}
}

// material returns new key material the test keeps (and wipes at the end).
func material(t testing.TB, typ api.KeyType) *secret.Bytes {
	t.Helper()
	m, err := kcrypto.GenerateKey(typ)
	if err != nil {
		t.Fatalf("GenerateKey(%s) = %v", typ, err)
	}
	t.Cleanup(m.Wipe)
	return m
}

// put loads a copy of m (Put takes ownership of what it gets).
func put(t testing.TB, r *Ring, md api.KeyMetadata, m *secret.Bytes, lease time.Time) {
	t.Helper()
	if err := r.Put(md, m.Clone(), lease); err != nil {
		t.Fatalf("Put(%s v%d) = %v", md.KeyID, md.Version, err)
	}
}

// freshKey builds an operation handle from m outside the ring: the
// reference every ring handle is checked against.
func freshKey(t testing.TB, md api.KeyMetadata, m *secret.Bytes) *kcrypto.Key {
	t.Helper()
	k, err := kcrypto.NewKey(md.Type, md.KeyID, uint32(md.Version), m)
	if err != nil {
		t.Fatalf("NewKey = %v", err)
	}
	t.Cleanup(k.Wipe)
	return k
}

func acquire(t testing.TB, r *Ring, keyID string, version int, a api.Action) Handle {
	t.Helper()
	h, err := r.Acquire(keyID, version, a)
	if err != nil {
		t.Fatalf("Acquire(%s, %d, %s) = %v", keyID, version, a, err)
	}
	return h
}

func wantCode(t testing.TB, err error, want api.Code) {
	t.Helper()
	var e *api.Error
	if !errors.As(err, &e) || e.Code != want {
		t.Fatalf("error = %v, want API code %s", err, want)
	}
}

var (
	msg = []byte("pay 100 EUR to acct 42")
	aad = []byte("order-7")
)

// checkSame proves k is the key ref is: what one produces, the other
// accepts (or reproduces, for deterministic algorithms).
func checkSame(t testing.TB, k, ref *kcrypto.Key) {
	t.Helper()
	switch k.Type() {
	case api.KeyAES256GCM:
		ct, err := k.Encrypt(nil, msg, aad)
		if err != nil {
			t.Fatalf("Encrypt = %v", err)
		}
		if pt, err := ref.Decrypt(nil, ct, aad); err != nil || !bytes.Equal(pt, msg) {
			t.Fatalf("reference Decrypt = %q, %v", pt, err)
		}
		ct, err = ref.Encrypt(nil, msg, aad)
		if err != nil {
			t.Fatal(err)
		}
		if pt, err := k.Decrypt(nil, ct, aad); err != nil || !bytes.Equal(pt, msg) {
			t.Fatalf("Decrypt(reference ciphertext) = %q, %v", pt, err)
		}
	case api.KeyHMACSHA256:
		got, err := k.MAC(msg)
		if err != nil {
			t.Fatalf("MAC = %v", err)
		}
		want, _ := ref.MAC(msg)
		if !bytes.Equal(got, want) {
			t.Fatalf("MAC = %x, want %x", got, want)
		}
	case api.KeyEd25519, api.KeyECDSAP256:
		sig, err := k.Sign(msg)
		if err != nil {
			t.Fatalf("Sign = %v", err)
		}
		if ok, err := ref.Verify(msg, sig); err != nil || !ok {
			t.Fatalf("reference Verify = %v, %v", ok, err)
		}
	default:
		t.Fatalf("no check for %s", k.Type())
	}
}

// checkWiped proves k was wiped: every method of its type says ErrClosed.
func checkWiped(t testing.TB, k *kcrypto.Key) {
	t.Helper()
	var err error
	switch k.Type() {
	case api.KeyAES256GCM:
		_, err = k.Encrypt(nil, msg, nil)
	case api.KeyHMACSHA256:
		_, err = k.MAC(msg)
	default:
		_, err = k.Sign(msg)
	}
	if !errors.Is(err, kcrypto.ErrClosed) {
		t.Fatalf("operation on a released key = %v, want ErrClosed", err)
	}
}

// actionFor is an action each key type supports.
func actionFor(typ api.KeyType) api.Action {
	switch typ {
	case api.KeyAES256GCM:
		return api.ActionEncrypt
	case api.KeyHMACSHA256:
		return api.ActionMAC
	}
	return api.ActionSign
}

var keyTypes = []api.KeyType{api.KeyAES256GCM, api.KeyHMACSHA256, api.KeyEd25519, api.KeyECDSAP256}

func TestPutAcquire(t *testing.T) {
	for _, typ := range keyTypes {
		t.Run(string(typ), func(t *testing.T) {
			r := newRing(t, Config{})
			md := meta("key_"+string(typ[:3]), 1, typ)
			md.Labels = map[string]string{"team": "payments"}
			m := material(t, typ)
			given := m.Clone()
			if err := r.Put(md, given, time.Time{}); err != nil {
				t.Fatalf("Put = %v", err)
			}
			if given.Len() != 0 {
				t.Errorf("Put left the caller's material in place (%d bytes)", given.Len())
			}
			h := acquire(t, r, md.KeyID, 0, actionFor(typ))
			defer h.Release()
			if h.Key.Type() != typ || h.Key.KeyID() != md.KeyID || h.Key.Version() != 1 {
				t.Errorf("Key = %v, want %s %s v1", h.Key, typ, md.KeyID)
			}
			if h.MD.KeyID != md.KeyID || h.MD.Version != 1 || h.MD.Type != typ || h.MD.Labels["team"] != "payments" {
				t.Errorf("MD = %+v", h.MD)
			}
			checkSame(t, h.Key, freshKey(t, md, m))
		})
	}
}

func TestPutRefuses(t *testing.T) {
	aes := material(t, api.KeyAES256GCM)
	tests := []struct {
		name string
		md   api.KeyMetadata
		m    *secret.Bytes
		want error
	}{
		{"unknown type", meta("key_x", 1, "rot13"), aes, kcrypto.ErrUnsupported},
		{"short material", meta("key_s", 1, api.KeyAES256GCM), secret.Copy(aes.Expose()[:16]), kcrypto.ErrInvalidKey},
		{"ecdsa scalar out of range", meta("key_e", 1, api.KeyECDSAP256), secret.New(bytes.Repeat([]byte{0xff}, 32)), kcrypto.ErrInvalidKey},
		{"empty key id", meta("", 1, api.KeyAES256GCM), aes, format.ErrMalformed},
		{"version 0", meta("key_v", 0, api.KeyAES256GCM), aes, format.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRing(t, Config{})
			given := tt.m.Clone()
			err := r.Put(tt.md, given, time.Time{})
			if !errors.Is(err, tt.want) {
				t.Fatalf("Put = %v, want %v", err, tt.want)
			}
			if given.Len() != 0 {
				t.Errorf("a refused Put left the material in place")
			}
			if r.Len() != 0 || len(r.List()) != 0 {
				t.Errorf("a refused Put loaded something: %v", r.IDs())
			}
		})
	}
}

// TestPutRefusesVersionsNoCiphertextCanName: a version a ciphertext header
// cannot carry (below 1, above 2^32-1) must be refused like version 0.
func TestPutRefusesVersionsNoCiphertextCanName(t *testing.T) {
	for _, v := range []int{-1, 1<<32 + 1} {
		t.Run(fmt.Sprint(v), func(t *testing.T) {
			r := newRing(t, Config{})
			if err := r.Put(meta("key_v", v, api.KeyAES256GCM), material(t, api.KeyAES256GCM).Clone(), time.Time{}); err == nil {
				h, _ := r.Acquire("key_v", v, api.ActionEncrypt)
				t.Errorf("Put(version %d) = nil; loaded as metadata v%d, key v%d", v, v, h.Key.Version())
				h.Release()
			}
		})
	}
}

func TestAcquireVersion(t *testing.T) {
	r := newRing(t, Config{})
	mats := map[int]*secret.Bytes{}
	// Loaded out of order: "newest" is the highest version, not the last Put.
	for _, v := range []int{1, 3, 2} {
		mats[v] = material(t, api.KeyAES256GCM)
		put(t, r, meta("key_a", v, api.KeyAES256GCM), mats[v], time.Time{})
	}
	put(t, r, meta("key_b", 1, api.KeyAES256GCM), material(t, api.KeyAES256GCM), time.Time{})

	for _, tt := range []struct {
		version, want int
	}{{0, 3}, {1, 1}, {2, 2}, {3, 3}} {
		t.Run(fmt.Sprintf("v%d", tt.version), func(t *testing.T) {
			h := acquire(t, r, "key_a", tt.version, api.ActionEncrypt)
			defer h.Release()
			if int(h.Key.Version()) != tt.want || h.MD.Version != tt.want {
				t.Fatalf("Acquire(key_a, %d) = v%d (MD v%d), want v%d", tt.version, h.Key.Version(), h.MD.Version, tt.want)
			}
			checkSame(t, h.Key, freshKey(t, meta("key_a", tt.want, api.KeyAES256GCM), mats[tt.want]))
		})
	}
	for _, tt := range []struct {
		name    string
		keyID   string
		version int
	}{
		{"unknown key", "key_nope", 0},
		{"unknown key, explicit version", "key_nope", 1},
		{"unloaded version", "key_a", 4},
		{"negative version", "key_a", -1},
		{"other key's version", "key_b", 2},
		{"empty id", "", 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := r.Acquire(tt.keyID, tt.version, api.ActionEncrypt)
			wantCode(t, err, api.CodeNotFound)
		})
	}
}

func TestAcquirePolicy(t *testing.T) {
	decryptOnly := &api.Policy{Rules: []api.PolicyRule{{Principals: []string{bound}, Actions: []api.Action{api.ActionDecrypt}}}}
	others := &api.Policy{Rules: []api.PolicyRule{{Principals: []string{"CN=reporting,O=acme"}, Actions: []api.Action{api.ActionEncrypt, api.ActionDecrypt}}}}
	pattern := &api.Policy{Rules: []api.PolicyRule{
		{Principals: []string{"CN=payments-*,O=acme"}, Actions: []api.Action{api.ActionEncrypt}},
		{Principals: []string{"CN=reporting,O=acme"}, Actions: []api.Action{api.ActionDecrypt}},
	}}
	all := []api.Action{api.ActionEncrypt, api.ActionDecrypt, api.ActionSign, api.ActionVerify, api.ActionMAC}
	tests := []struct {
		name    string
		owner   string
		policy  *api.Policy
		allowed []api.Action
	}{
		{"no policy, bound DN owns it", bound, nil, all},
		{"no policy, owner DN in another spelling", "cn=payments-api, o=acme", nil, all},
		{"no policy, another owner", "CN=reporting,O=acme", nil, nil},
		{"policy grants the bound DN decrypt only", bound, decryptOnly, []api.Action{api.ActionDecrypt}},
		{"policy names others: the owner has no implicit rights", bound, others, nil},
		{"pattern grants encrypt", "CN=reporting,O=acme", pattern, []api.Action{api.ActionEncrypt}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRing(t, Config{})
			md := meta("key_p", 1, api.KeyAES256GCM)
			md.Owner, md.Policy = tt.owner, tt.policy
			put(t, r, md, material(t, api.KeyAES256GCM), time.Time{})
			for _, a := range append(all, "export", "") {
				h, err := r.Acquire("key_p", 0, a)
				if slices.Contains(tt.allowed, a) {
					if err != nil {
						t.Errorf("Acquire(%q) = %v, want allowed", a, err)
						continue
					}
					h.Release()
					continue
				}
				if api.CodeOf(err) != api.CodePolicyDenied {
					t.Errorf("Acquire(%q) = %v, want %s", a, err, api.CodePolicyDenied)
				}
			}
		})
	}
}

func TestLease(t *testing.T) {
	c := newClock()
	r := newRing(t, Config{Now: c.Now})
	expires := c.At(90 * time.Minute)
	tests := []struct {
		name      string
		expiresAt *time.Time
		lease     time.Time
		wantLease time.Time // zero: none
	}{
		{"lease only", nil, c.At(time.Hour), c.At(time.Hour)},
		{"lease before expiry", &expires, c.At(time.Hour), c.At(time.Hour)},
		{"lease past expiry is cut to it", &expires, c.At(5 * time.Hour), expires},
		{"no lease: the key's expiry", &expires, time.Time{}, expires},
		{"no lease, no expiry", nil, time.Time{}, time.Time{}},
	}
	for i, tt := range tests {
		md := meta(fmt.Sprintf("key_%d", i), 1, api.KeyAES256GCM)
		md.ExpiresAt = tt.expiresAt
		put(t, r, md, material(t, api.KeyAES256GCM), tt.lease)
		t.Run(tt.name, func(t *testing.T) {
			lk := r.List()[i]
			if lk.KeyID != md.KeyID {
				t.Fatalf("List()[%d] = %s, want %s", i, lk.KeyID, md.KeyID)
			}
			switch {
			case tt.wantLease.IsZero() && lk.LeaseExpiresAt != nil:
				t.Fatalf("lease = %v, want none", lk.LeaseExpiresAt)
			case !tt.wantLease.IsZero() && (lk.LeaseExpiresAt == nil || !lk.LeaseExpiresAt.Equal(tt.wantLease)):
				t.Fatalf("lease = %v, want %v", lk.LeaseExpiresAt, tt.wantLease)
			}
			c.Set(t0)
			h := acquire(t, r, md.KeyID, 0, api.ActionEncrypt)
			h.Release()
			if tt.wantLease.IsZero() {
				c.Set(t0.Add(10 * 365 * 24 * time.Hour))
				h := acquire(t, r, md.KeyID, 0, api.ActionEncrypt)
				h.Release()
				return
			}
			c.Set(tt.wantLease.Add(-time.Nanosecond))
			h = acquire(t, r, md.KeyID, 0, api.ActionEncrypt)
			h.Release()
			c.Set(tt.wantLease)
			_, err := r.Acquire(md.KeyID, 0, api.ActionEncrypt)
			wantCode(t, err, api.CodeExpired)
		})
	}
}

func TestRenew(t *testing.T) {
	c := newClock()
	r := newRing(t, Config{Now: c.Now})
	expires := c.At(3 * time.Hour)
	for v := 1; v <= 2; v++ {
		md := meta("key_r", v, api.KeyAES256GCM)
		md.ExpiresAt = &expires
		put(t, r, md, material(t, api.KeyAES256GCM), c.At(time.Hour))
	}
	put(t, r, meta("key_other", 1, api.KeyAES256GCM), material(t, api.KeyAES256GCM), c.At(time.Hour))

	c.Set(c.At(time.Hour))
	for _, v := range []int{0, 1, 2} {
		_, err := r.Acquire("key_r", v, api.ActionEncrypt)
		wantCode(t, err, api.CodeExpired)
	}
	r.Renew("key_r", c.At(2*time.Hour))
	r.Renew("key_unknown", c.At(2*time.Hour)) // no-op, no panic
	for _, v := range []int{1, 2} {
		h := acquire(t, r, "key_r", v, api.ActionEncrypt)
		h.Release()
	}
	// Renewing one key leaves the others alone.
	_, err := r.Acquire("key_other", 0, api.ActionEncrypt)
	wantCode(t, err, api.CodeExpired)

	// Never past the key's expiry.
	r.Renew("key_r", c.At(48*time.Hour))
	for _, lk := range r.List() {
		if lk.KeyID == "key_r" && !lk.LeaseExpiresAt.Equal(expires) {
			t.Errorf("lease of v%d = %v, want the key's expiry %v", lk.Version, lk.LeaseExpiresAt, expires)
		}
	}
	c.Set(expires)
	_, err = r.Acquire("key_r", 0, api.ActionEncrypt)
	wantCode(t, err, api.CodeExpired)
}

// TestRenewZero: Put reads a zero lease as "until the key's expiry, if
// any"; Renew should read it the same way, not as a lease that ran out in
// year 1.
func TestRenewZero(t *testing.T) {
	c := newClock()
	r := newRing(t, Config{Now: c.Now})
	put(t, r, meta("key_z", 1, api.KeyAES256GCM), material(t, api.KeyAES256GCM), time.Time{})
	r.Renew("key_z", time.Time{})
	h, err := r.Acquire("key_z", 0, api.ActionEncrypt)
	if err != nil {
		t.Fatalf("Acquire after Renew(zero) = %v, want the lease Put gives a zero time", err)
	}
	h.Release()
}

func TestEvict(t *testing.T) {
	r := newRing(t, Config{})
	for v := 1; v <= 2; v++ {
		put(t, r, meta("key_e", v, api.KeyAES256GCM), material(t, api.KeyAES256GCM), time.Time{})
	}
	put(t, r, meta("key_keep", 1, api.KeyAES256GCM), material(t, api.KeyAES256GCM), time.Time{})
	// Build the operation handle, so eviction has one to wipe.
	h := acquire(t, r, "key_e", 0, api.ActionEncrypt)
	k := h.Key
	h.Release()

	if !r.Evict("key_e") {
		t.Fatal("Evict(key_e) = false, want true")
	}
	checkWiped(t, k)
	for _, v := range []int{0, 1, 2} {
		_, err := r.Acquire("key_e", v, api.ActionEncrypt)
		wantCode(t, err, api.CodeNotFound)
	}
	if r.Evict("key_e") {
		t.Error("second Evict(key_e) = true, want false")
	}
	if r.Evict("key_never") {
		t.Error("Evict(key_never) = true, want false")
	}
	if got := r.IDs(); !slices.Equal(got, []string{"key_keep"}) || r.Len() != 1 || len(r.List()) != 1 {
		t.Errorf("after Evict: IDs = %v, Len = %d, List = %d entries", got, r.Len(), len(r.List()))
	}
	h = acquire(t, r, "key_keep", 0, api.ActionEncrypt)
	h.Release()
}

// TestHandleOutlivesEviction: a handle acquired before Evict, Sweep, Close or
// a replacing Put keeps working until its last Release, which wipes it.
func TestHandleOutlivesEviction(t *testing.T) {
	events := []struct {
		name string
		do   func(t *testing.T, r *Ring, c *clock, typ api.KeyType)
	}{
		{"Evict", func(_ *testing.T, r *Ring, _ *clock, _ api.KeyType) { r.Evict("key_h") }},
		{"Close", func(_ *testing.T, r *Ring, _ *clock, _ api.KeyType) { r.Close() }},
		{"Sweep", func(_ *testing.T, r *Ring, c *clock, _ api.KeyType) { c.Add(time.Hour); r.Sweep() }},
		{"Put of the same version", func(t *testing.T, r *Ring, _ *clock, typ api.KeyType) {
			put(t, r, meta("key_h", 1, typ), material(t, typ), time.Time{})
		}},
	}
	for _, ev := range events {
		for _, typ := range keyTypes {
			t.Run(ev.name+"/"+string(typ), func(t *testing.T) {
				c := newClock()
				r := newRing(t, Config{Now: c.Now})
				md := meta("key_h", 1, typ)
				m := material(t, typ)
				put(t, r, md, m, time.Time{})
				ref := freshKey(t, md, m)
				h1 := acquire(t, r, "key_h", 0, actionFor(typ))
				h2 := acquire(t, r, "key_h", 0, actionFor(typ))
				if h1.Key != h2.Key {
					t.Fatal("two acquisitions of a busy key built two handles")
				}
				ev.do(t, r, c, typ)
				checkSame(t, h1.Key, ref)
				h1.Release()
				checkSame(t, h2.Key, ref) // one reference left
				h2.Release()
				checkWiped(t, h2.Key)
			})
		}
	}
}

func TestPutReplacesVersion(t *testing.T) {
	r := newRing(t, Config{})
	md := meta("key_p", 1, api.KeyAES256GCM)
	oldM, newM := material(t, api.KeyAES256GCM), material(t, api.KeyAES256GCM)
	put(t, r, md, oldM, time.Time{})
	put(t, r, md, newM, time.Time{})
	if r.Len() != 1 || len(r.List()) != 1 {
		t.Fatalf("Len = %d, List = %d entries; want one key version", r.Len(), len(r.List()))
	}
	h := acquire(t, r, "key_p", 1, api.ActionEncrypt)
	defer h.Release()
	checkSame(t, h.Key, freshKey(t, md, newM))
}

func TestSweep(t *testing.T) {
	for _, typ := range keyTypes {
		t.Run(string(typ), func(t *testing.T) {
			c := newClock()
			r := newRing(t, Config{Now: c.Now, IdleTTL: time.Minute})
			md := meta("key_s", 1, typ)
			m := material(t, typ)
			put(t, r, md, m, time.Time{})
			ref := freshKey(t, md, m)

			h := acquire(t, r, "key_s", 0, actionFor(typ))
			first := h.Key
			h.Release()
			// Used within the idle TTL: the handle stays.
			c.Add(30 * time.Second)
			r.Sweep()
			h = acquire(t, r, "key_s", 0, actionFor(typ))
			if h.Key != first {
				t.Fatal("Sweep dropped the handle of a key used 30s ago (idle TTL 1m)")
			}
			h.Release()
			checkSame(t, first, ref) // still cached: usable by the ring's reference

			// Idle past the TTL: Sweep drops and wipes it.
			c.Add(61 * time.Second)
			r.Sweep()
			checkWiped(t, first)
			// The next Acquire rebuilds from the enclave.
			h = acquire(t, r, "key_s", 0, actionFor(typ))
			defer h.Release()
			if h.Key == first {
				t.Fatal("Acquire after Sweep returned the wiped handle")
			}
			checkSame(t, h.Key, ref)
			if r.Len() != 1 {
				t.Errorf("Len after Sweep = %d, want 1 (Sweep drops handles, not keys)", r.Len())
			}
		})
	}
}

func TestListLenIDs(t *testing.T) {
	c := newClock()
	r := newRing(t, Config{Now: c.Now})
	if l := r.List(); l == nil || len(l) != 0 || r.Len() != 0 || len(r.IDs()) != 0 {
		t.Fatalf("empty ring: List = %v, Len = %d, IDs = %v", l, r.Len(), r.IDs())
	}
	var mats []*secret.Bytes
	loads := []struct {
		id      string
		version int
		typ     api.KeyType
	}{
		{"key_c", 1, api.KeyEd25519},
		{"key_a", 2, api.KeyAES256GCM},
		{"key_b", 1, api.KeyHMACSHA256},
		{"key_a", 1, api.KeyAES256GCM},
		{"key_a", 10, api.KeyAES256GCM},
		{"key_d", 1, api.KeyECDSAP256},
	}
	for i, l := range loads {
		m := material(t, l.typ)
		mats = append(mats, m)
		md := meta(l.id, l.version, l.typ)
		md.Labels = map[string]string{"n": fmt.Sprint(i)}
		put(t, r, md, m, c.At(time.Duration(i+1)*time.Hour))
		// Operation handles exist too: List must not reach them either.
		h := acquire(t, r, l.id, l.version, actionFor(l.typ))
		h.Release()
	}
	if got, want := r.IDs(), []string{"key_a", "key_b", "key_c", "key_d"}; !slices.Equal(got, want) {
		t.Errorf("IDs() = %v, want %v", got, want)
	}
	if r.Len() != 4 {
		t.Errorf("Len() = %d, want 4 (keys, not versions)", r.Len())
	}
	list := r.List()
	type idv struct {
		id string
		v  int
	}
	var got []idv
	for _, lk := range list {
		got = append(got, idv{lk.KeyID, lk.Version})
	}
	want := []idv{{"key_a", 1}, {"key_a", 2}, {"key_a", 10}, {"key_b", 1}, {"key_c", 1}, {"key_d", 1}}
	if !slices.Equal(got, want) {
		t.Fatalf("List order = %v, want %v", got, want)
	}
	for _, lk := range list {
		var i int
		fmt.Sscan(lk.Labels["n"], &i)
		wantLease := c.At(time.Duration(i+1) * time.Hour)
		if lk.LeaseExpiresAt == nil || !lk.LeaseExpiresAt.Equal(wantLease) || lk.LeaseExpiresAt.Location() != time.UTC {
			t.Errorf("%s v%d lease = %v, want %v UTC", lk.KeyID, lk.Version, lk.LeaseExpiresAt, wantLease)
		}
		if lk.Type != loads[i].typ || lk.Owner != bound || lk.Tenant != "acme" {
			t.Errorf("%s v%d metadata = %+v", lk.KeyID, lk.Version, lk.KeyMetadata)
		}
	}

	js, err := json.Marshal(api.LoadedKeys{Keys: list})
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range mats {
		k := m.Expose()
		for _, form := range [][]byte{k, []byte(hex.EncodeToString(k)), []byte(base64.StdEncoding.EncodeToString(k)), []byte(base64.RawStdEncoding.EncodeToString(k)), []byte(base64.RawURLEncoding.EncodeToString(k))} {
			if bytes.Contains(js, form) {
				t.Fatalf("List JSON holds the material of key %d: %s", i, js)
			}
		}
	}
	for _, field := range []string{`"material"`, `"key_material"`, `"secret"`} {
		if bytes.Contains(js, []byte(field)) {
			t.Errorf("List JSON has a %s field: %s", field, js)
		}
	}
}

// TestListReturnsCopies: what List returns is the caller's; changing it
// must not change the ring (here: stretch the expiry that caps Renew).
func TestListReturnsCopies(t *testing.T) {
	c := newClock()
	r := newRing(t, Config{Now: c.Now})
	expires := c.At(time.Hour)
	md := meta("key_x", 1, api.KeyAES256GCM)
	md.ExpiresAt = &expires
	md.Labels = map[string]string{"team": "payments"}
	put(t, r, md, material(t, api.KeyAES256GCM), time.Time{})
	lk := r.List()[0]
	*lk.ExpiresAt = c.At(100 * time.Hour)
	lk.Labels["team"] = "mallory"
	r.Renew("key_x", c.At(50*time.Hour))
	got := r.List()[0]
	if !got.LeaseExpiresAt.Equal(expires) || !got.ExpiresAt.Equal(expires) || got.Labels["team"] != "payments" {
		t.Fatalf("after changing a List result: lease %v, expires %v, labels %v; want %v, %v, team=payments",
			got.LeaseExpiresAt, got.ExpiresAt, got.Labels, expires, expires)
	}
}

func TestClose(t *testing.T) {
	r := newRing(t, Config{})
	for _, id := range []string{"key_1", "key_2", "key_3"} {
		put(t, r, meta(id, 1, api.KeyAES256GCM), material(t, api.KeyAES256GCM), time.Time{})
	}
	h := acquire(t, r, "key_2", 0, api.ActionEncrypt)
	r.Close()
	if r.Len() != 0 || len(r.List()) != 0 || len(r.IDs()) != 0 {
		t.Fatalf("after Close: Len = %d, List = %v", r.Len(), r.List())
	}
	for _, id := range []string{"key_1", "key_2", "key_3"} {
		_, err := r.Acquire(id, 0, api.ActionEncrypt)
		wantCode(t, err, api.CodeNotFound)
	}
	if _, err := h.Key.Encrypt(nil, msg, nil); err != nil {
		t.Fatalf("a handle held across Close = %v, want it to work until Release", err)
	}
	h.Release()
	checkWiped(t, h.Key)
	r.Close() // idempotent
}

// TestConcurrentUse races operations against loads, evictions and sweeps.
// Every encryption that succeeds must open under a key built separately
// from the same version's material: a handle is never wiped, swapped or
// mixed up under its user.
func TestConcurrentUse(t *testing.T) {
	const (
		versions = 6
		workers  = 6
		rounds   = 1000
	)
	r := newRing(t, Config{IdleTTL: time.Nanosecond}) // every Sweep drops every idle handle
	mats := make([]*secret.Bytes, versions+1)
	refs := make([]*kcrypto.Key, versions+1)
	for v := 1; v <= versions; v++ {
		mats[v] = material(t, api.KeyAES256GCM)
		refs[v] = freshKey(t, meta("key_hot", v, api.KeyAES256GCM), mats[v])
	}
	put(t, r, meta("key_hot", 1, api.KeyAES256GCM), mats[1], time.Time{})

	var (
		stop            = make(chan struct{})
		wg              sync.WaitGroup
		encrypts, opens atomic.Int64
		failures        atomic.Int64
	)
	fail := func(format string, args ...any) {
		if failures.Add(1) <= 10 {
			t.Errorf(format, args...)
		}
	}
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pt := []byte(fmt.Sprintf("worker %d", w))
			for {
				select {
				case <-stop:
					return
				default:
				}
				h, err := r.Acquire("key_hot", 0, api.ActionEncrypt)
				if err != nil {
					if api.CodeOf(err) != api.CodeNotFound {
						fail("Acquire = %v, want success or %s", err, api.CodeNotFound)
					}
					runtime.Gosched()
					continue
				}
				v := h.Key.Version()
				if int(v) != h.MD.Version || h.Key.KeyID() != "key_hot" {
					fail("handle key %v, metadata v%d", h.Key, h.MD.Version)
				}
				if w%2 == 0 {
					runtime.Gosched() // hold the handle across mutations
				}
				ct, err := h.Key.Encrypt(nil, pt, aad)
				h.Release()
				if err != nil {
					fail("Encrypt on an acquired handle = %v", err)
					continue
				}
				encrypts.Add(1)
				if got, err := refs[v].Decrypt(nil, ct, aad); err != nil || !bytes.Equal(got, pt) {
					fail("reference Decrypt of a v%d ciphertext = %q, %v", v, got, err)
				}
				// And back through the ring, at the version the header names.
				h, err = r.Acquire("key_hot", int(v), api.ActionDecrypt)
				if err != nil {
					if api.CodeOf(err) != api.CodeNotFound {
						fail("Acquire(v%d) = %v", v, err)
					}
					continue
				}
				got, err := h.Key.Decrypt(nil, ct, aad)
				h.Release()
				if err != nil || !bytes.Equal(got, pt) {
					fail("ring Decrypt of its own v%d ciphertext = %q, %v", v, got, err)
				}
				opens.Add(1)
			}
		}()
	}

	for i := range rounds {
		v := i%versions + 1
		switch i % 7 {
		case 0, 3:
			if err := r.Put(meta("key_hot", v, api.KeyAES256GCM), mats[v].Clone(), time.Time{}); err != nil {
				fail("Put = %v", err)
			}
		case 1:
			r.Sweep()
		case 2:
			r.Evict("key_hot")
			if err := r.Put(meta("key_hot", v, api.KeyAES256GCM), mats[v].Clone(), time.Time{}); err != nil {
				fail("Put = %v", err)
			}
		case 4:
			r.Renew("key_hot", time.Now().Add(time.Hour))
			_ = r.List()
			_ = r.IDs()
		case 5:
			r.Sweep()
			runtime.Gosched()
		case 6:
			r.Evict("key_hot")
			runtime.Gosched()
			if err := r.Put(meta("key_hot", 1, api.KeyAES256GCM), mats[1].Clone(), time.Time{}); err != nil {
				fail("Put = %v", err)
			}
		}
	}
	close(stop)
	wg.Wait()
	r.Close()
	if r.Len() != 0 {
		t.Errorf("Len after Close = %d", r.Len())
	}
	if encrypts.Load() == 0 || opens.Load() == 0 {
		t.Errorf("encrypts = %d, opens = %d: the race never ran", encrypts.Load(), opens.Load())
	}
	t.Logf("%d encryptions, %d ring decryptions", encrypts.Load(), opens.Load())
}

func BenchmarkAcquireRelease(b *testing.B) {
	r := newRing(b, Config{})
	put(b, r, meta("key_bench", 1, api.KeyAES256GCM), material(b, api.KeyAES256GCM), time.Time{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			h, err := r.Acquire("key_bench", 0, api.ActionEncrypt)
			if err != nil {
				b.Error(err)
				return
			}
			h.Release()
		}
	})
}

// TestReadWhileReplaced: All and Current read a key while another
// goroutine keeps replacing its version (as a sidecar's refresh does when
// it loads a version again). Each read gets the old or the new material,
// never an error: before, a reader could open the protected material of
// the version being replaced after it was destroyed ("protected material
// destroyed", a 500 from POST /v1/keys/seal). AllOf over two keys reads
// them in one enclave call (enclave.BatchOpener), without the entries'
// locks: a version destroyed under it is read again.
func TestReadWhileReplaced(t *testing.T) {
	r := newRing(t, Config{})
	md := meta("key_r", 1, api.KeyAES256GCM)
	m := material(t, api.KeyAES256GCM)
	put(t, r, md, m, time.Time{})
	md2 := meta("key_s", 1, api.KeyAES256GCM)
	m2 := material(t, api.KeyAES256GCM)
	put(t, r, md2, m2, time.Time{})
	if _, ok := r.enc.(enclave.BatchOpener); !ok {
		t.Fatal("the test enclave does not open in batches: AllOf's batch path is not exercised")
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			if err := r.Put(md, m.Clone(), time.Time{}); err != nil {
				t.Error(err)
				return
			}
			if err := r.Put(md2, m2.Clone(), time.Time{}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	defer func() { close(done); wg.Wait() }()
	for range 2000 {
		all, err := r.All("key_r")
		if err != nil {
			t.Fatalf("All while the version is replaced: %v", err)
		}
		if len(all) != 1 || !all[0].Material.Equal(m) {
			t.Fatalf("All = %d versions, or other material", len(all))
		}
		all[0].Material.Wipe()
		both, err := r.AllOf([]string{"key_r", "key_s"})
		if err != nil {
			t.Fatalf("AllOf while the versions are replaced: %v", err)
		}
		if len(both) != 2 || !both[0].Material.Equal(m) || !both[1].Material.Equal(m2) || both[1].MD.KeyID != "key_s" {
			t.Fatalf("AllOf = %d versions, or other material", len(both))
		}
		both[0].Material.Wipe()
		both[1].Material.Wipe()
		_, cur, _, err := r.Current("key_r")
		if err != nil {
			t.Fatalf("Current while the version is replaced: %v", err)
		}
		cur.Wipe()
	}
}

// countingOpener is a software enclave that counts its batch opens.
type countingOpener struct {
	*software.Enclave
	batches, keys int
}

func (c *countingOpener) OpenAll(ps []enclave.Protected) ([]*secret.Bytes, error) {
	c.batches++
	c.keys += len(ps)
	return c.Enclave.OpenAll(ps)
}

// TestAllOfOpensOnce: AllOf opens every version of every key named in one
// enclave call (enclave.BatchOpener), in the keys' order, each key's
// versions oldest first; a single version opens on its own; a key not
// loaded refuses the whole call and opens nothing.
func TestAllOfOpensOnce(t *testing.T) {
	enc, err := software.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { enc.Close() })
	c := &countingOpener{Enclave: enc}
	r := New(c, Config{BoundDN: bound})
	t.Cleanup(r.Close)
	want := map[string]*secret.Bytes{}
	for _, id := range []string{"key_a", "key_b", "key_c"} {
		for v := 1; v <= 2; v++ {
			m := material(t, api.KeyAES256GCM)
			put(t, r, meta(id, v, api.KeyAES256GCM), m, time.Time{})
			want[fmt.Sprintf("%s v%d", id, v)] = m
		}
	}
	got, err := r.AllOf([]string{"key_c", "key_a", "key_b"})
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, l := range got {
		name := fmt.Sprintf("%s v%d", l.MD.KeyID, l.MD.Version)
		order = append(order, name)
		if !l.Material.Equal(want[name]) {
			t.Errorf("%s: other material", name)
		}
		l.Material.Wipe()
	}
	if fmt.Sprint(order) != "[key_c v1 key_c v2 key_a v1 key_a v2 key_b v1 key_b v2]" {
		t.Errorf("AllOf order = %v", order)
	}
	if c.batches != 1 || c.keys != 6 {
		t.Errorf("AllOf made %d batch opens of %d keys, want 1 of 6", c.batches, c.keys)
	}
	if _, err := r.AllOf([]string{"key_a", "key_zz"}); api.CodeOf(err) != api.CodeNotFound || c.batches != 1 {
		t.Errorf("AllOf with a key not loaded = %v (%d batch opens), want not_found and no open", err, c.batches)
	}
	r.Evict("key_b")
	put(t, r, meta("key_b", 1, api.KeyAES256GCM), want["key_b v1"], time.Time{})
	one, err := r.All("key_b")
	if err != nil || len(one) != 1 || c.batches != 1 {
		t.Errorf("All of a one-version key = %d, %v (%d batch opens), want it opened on its own", len(one), err, c.batches)
	}
	for _, l := range one {
		l.Material.Wipe()
	}
}
