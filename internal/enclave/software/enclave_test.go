package software

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/awnumar/memguard"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/enclave"
	"github.com/dcaas/dcaas/internal/enclave/enclavetest"
	"github.com/dcaas/dcaas/internal/secret"
)

func open(t testing.TB) *Enclave {
	t.Helper()
	e, err := New()
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

func TestConformance(t *testing.T) {
	enclavetest.Run(t, func(t *testing.T) enclave.Enclave { return open(t) })
}

func TestKind(t *testing.T) {
	if k := open(t).Kind(); k != api.EnclaveSoftware {
		t.Errorf("Kind() = %q, want %q", k, api.EnclaveSoftware)
	}
}

func TestLocalOpenOtherEnclave(t *testing.T) {
	a, b := open(t), open(t)
	pt := secret.Copy([]byte("data key"))
	defer pt.Wipe()
	blob, err := a.LocalSeal(t.Context(), pt, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.LocalOpen(t.Context(), blob, nil); !errors.Is(err, enclave.ErrOpen) {
		t.Errorf("LocalOpen() of another enclave's blob = %v, want ErrOpen", err)
	}
}

func TestProtectRefusesEmpty(t *testing.T) {
	e := open(t)
	for _, m := range []*secret.Bytes{nil, secret.New(nil), secret.Copy([]byte{})} {
		if p, err := e.Protect(m); err == nil {
			p.Destroy()
			t.Error("Protect(empty) succeeded, want an error")
		}
	}
}

func TestProtectWipesOnFailure(t *testing.T) {
	e := open(t)
	_ = e.Close()
	raw := []byte("data key")
	if _, err := e.Protect(secret.New(raw)); !errors.Is(err, enclave.ErrClosed) {
		t.Fatalf("Protect() after Close() = %v, want ErrClosed", err)
	}
	if string(raw) != string(make([]byte, len(raw))) {
		t.Error("Protect() failed and left the material in clear")
	}
}

// TestProtectAll: a batch sealed with one open of the protection key
// opens key by key to the same bytes; the sealed bytes are not the key and
// a change to them is refused; one empty item refuses the batch and every
// material is wiped either way.
func TestProtectAll(t *testing.T) {
	e := open(t)
	raws := [][]byte{[]byte("first data key.................."), []byte("second"), []byte("third data key")}
	want := make([]string, len(raws))
	in := make([]*secret.Bytes, len(raws))
	for i, r := range raws {
		want[i] = string(r)
		in[i] = secret.New(r)
	}
	ps, err := e.ProtectAll(in)
	if err != nil || len(ps) != len(raws) {
		t.Fatalf("ProtectAll() = %d, %v", len(ps), err)
	}
	for i, r := range raws {
		if string(r) != string(make([]byte, len(r))) {
			t.Errorf("item %d left in clear after ProtectAll", i)
		}
		got, err := ps[i].Open()
		if err != nil || string(got.Expose()) != want[i] {
			t.Errorf("item %d: Open() = %q, %v; want %q", i, got.Expose(), err, want[i])
		}
		got.Wipe()
		if ct := ps[i].(*protected).ct; bytes.Contains(ct, []byte(want[i])) {
			t.Errorf("item %d: the sealed bytes hold the key", i)
		}
	}
	p := ps[0].(*protected)
	p.ct[len(p.ct)-1] ^= 1
	if _, err := p.Open(); err == nil {
		t.Error("Open() of altered sealed bytes succeeded")
	}
	mixed := []byte("a key")
	if _, err := e.ProtectAll([]*secret.Bytes{secret.New(mixed), secret.Copy(nil)}); err == nil {
		t.Error("ProtectAll() with an empty item succeeded")
	}
	if string(mixed) != string(make([]byte, len(mixed))) {
		t.Error("a refused ProtectAll left a material in clear")
	}
	_ = e.Close()
	if _, err := ps[1].Open(); !errors.Is(err, enclave.ErrClosed) {
		t.Errorf("Open() after Close() = %v, want ErrClosed", err)
	}
}

// TestLocalSealAll: a batch seals each plaintext with its own aad, as
// LocalSeal does (each blob opens with LocalOpen and its aad only, and is
// counted toward the LMK's limit); a batch past the limit, a length
// mismatch or a closed enclave seals nothing.
func TestLocalSealAll(t *testing.T) {
	e := open(t)
	ctx := t.Context()
	pts := []*secret.Bytes{secret.Copy([]byte("first key")), secret.Copy([]byte("second key")), secret.Copy([]byte("x"))}
	aads := [][]byte{[]byte("a1"), []byte("a2"), []byte("a3")}
	blobs, err := e.LocalSealAll(ctx, pts, aads)
	if err != nil || len(blobs) != len(pts) {
		t.Fatalf("LocalSealAll() = %d blobs, %v", len(blobs), err)
	}
	for i, b := range blobs {
		got, err := e.LocalOpen(ctx, b, aads[i])
		if err != nil || !bytes.Equal(got.Expose(), pts[i].Expose()) {
			t.Errorf("blob %d: LocalOpen = %v, want %q", i, err, pts[i].Expose())
		}
		got.Wipe()
		if _, err := e.LocalOpen(ctx, b, aads[(i+1)%len(aads)]); !errors.Is(err, enclave.ErrOpen) {
			t.Errorf("blob %d opened with another item's aad: %v", i, err)
		}
		// A one-byte plaintext turns up in random ciphertext by chance
		// (CI saw it once); only a plaintext of 8 bytes or more says
		// anything when found.
		if pts[i].Len() >= 8 && bytes.Contains(b, pts[i].Expose()) {
			t.Errorf("blob %d holds its plaintext", i)
		}
		if pts[i].Len() == 0 {
			t.Errorf("LocalSealAll wiped plaintext %d: the caller owns it", i)
		}
	}
	if got := e.lmkSeals.Load(); got != uint64(len(pts)) {
		t.Errorf("LMK seal count = %d, want %d", got, len(pts))
	}
	if _, err := e.LocalSealAll(ctx, pts, aads[:2]); err == nil {
		t.Error("LocalSealAll with fewer aads than plaintexts succeeded")
	}
	e.lmkSeals.Store(maxLocalSeals - 2)
	if _, err := e.LocalSealAll(ctx, pts, aads); err == nil {
		t.Error("LocalSealAll past the LMK's seal limit succeeded")
	}
	e.lmkSeals.Store(0)
	_ = e.Close()
	if _, err := e.LocalSealAll(ctx, pts, aads); !errors.Is(err, enclave.ErrClosed) {
		t.Errorf("LocalSealAll after Close = %v, want ErrClosed", err)
	}
}

func TestDestroyedIsErrDestroyed(t *testing.T) {
	p, err := open(t).Protect(secret.Copy([]byte("data key")))
	if err != nil {
		t.Fatal(err)
	}
	p.Destroy()
	if _, err := p.Open(); !errors.Is(err, ErrDestroyed) {
		t.Errorf("Open() after Destroy() = %v, want ErrDestroyed", err)
	}
}

// TestPurge documents what memguard.Purge does to an enclave: every secret
// sealed before it is lost.
func TestPurge(t *testing.T) {
	e := open(t)
	ctx := t.Context()
	h := enclavetest.Hold(t, e)

	memguard.Purge()

	for range 2 { // the second time without asking memguard
		if err := h.Sign(); !errors.Is(err, ErrPurged) {
			t.Errorf("Sign() after Purge() = %v, want ErrPurged", err)
		}
		if _, err := h.Protected.Open(); !errors.Is(err, ErrPurged) {
			t.Errorf("Open() after Purge() = %v, want ErrPurged", err)
		}
		_, err := e.LocalOpen(ctx, h.Blob, nil)
		if !errors.Is(err, enclave.ErrOpen) || !errors.Is(err, ErrPurged) {
			t.Errorf("LocalOpen() after Purge() = %v, want ErrOpen and ErrPurged", err)
		}
	}

	// A new enclave works under the new session key. (Purge again first:
	// memguard leaks the locked buffers of each failed open until the
	// next purge, which a tiny RLIMIT_MEMLOCK would not hold.)
	memguard.Purge()
	fresh := open(t)
	if _, err := fresh.LocalSeal(ctx, h.Plaintext, nil); err != nil {
		t.Errorf("LocalSeal() on a new enclave after Purge() = %v", err)
	}
}

func TestRedacted(t *testing.T) {
	e := open(t)
	ctx := t.Context()
	material := []byte("secret material")
	p, err := e.Protect(secret.Copy(material))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Destroy()
	signer, err := e.IdentityKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tk, err := e.TransportKey(ctx, api.KEMMLKEM768P256)
	if err != nil {
		t.Fatal(err)
	}
	kx, err := e.newKeyExchangerLocked(transportKEMs[api.KEMP256].curve)
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]any{
		"Enclave":      e,
		"Signer":       signer,
		"Protected":    p,
		"KeyExchanger": kx,
		"Decapsulator": &sealedMLKEM768{seed: kx.priv},
		"sealed":       kx.priv,
	}
	for name, v := range values {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d"} {
			if got := fmt.Sprintf(verb, v); got != redactedText {
				t.Errorf("Sprintf(%q, %s) = %q, want %q", verb, name, got, redactedText)
			}
		}
		j, err := json.Marshal(v)
		if err != nil || string(j) != `"`+redactedText+`"` {
			t.Errorf("json.Marshal(%s) = %s, %v; want redacted", name, j, err)
		}
	}
	// The hpke.PrivateKey wrapping our key exchangers prints no key bytes
	// (fmt shows nested pointers as addresses).
	if got := fmt.Sprintf("%+v %#v", tk, tk); strings.Contains(got, string(material)) {
		t.Errorf("hpke key printed as %q", got)
	}
}

func TestSlotsFor(t *testing.T) {
	const page = 4096
	for _, tc := range []struct {
		memlock uint64
		want    int
	}{
		{0, 0},
		{5 * page, 0},    // too small to run
		{6 * page, 1},    // the session key, a spare and one slot
		{9 * page, 2},    // rounded down
		{64 << 10, 6},    // 16 pages: old kernels' default
		{8 << 20, 256},   // 2048 pages: capped
		{1<<64 - 1, 256}, // unlimited
	} {
		if got := slotsFor(tc.memlock, page); got != tc.want {
			t.Errorf("slotsFor(%d) = %d, want %d", tc.memlock, got, tc.want)
		}
	}
}

// TestOpenAll: a batch opens every protected key in order; one destroyed,
// or one of another enclave, fails the whole batch; a closed enclave
// opens nothing.
func TestOpenAll(t *testing.T) {
	e := open(t)
	mats := []string{"first data key", "second data key", "third data key"}
	ps := make([]enclave.Protected, len(mats))
	for i, m := range mats {
		p, err := e.Protect(secret.Copy([]byte(m)))
		if err != nil {
			t.Fatal(err)
		}
		ps[i] = p
	}
	got, err := e.OpenAll(ps)
	if err != nil || len(got) != len(mats) {
		t.Fatalf("OpenAll = %d, %v", len(got), err)
	}
	for i, b := range got {
		if string(b.Expose()) != mats[i] {
			t.Errorf("OpenAll[%d] = %q, want %q", i, b.Expose(), mats[i])
		}
		b.Wipe()
	}
	other := open(t)
	foreign, err := other.Protect(secret.Copy([]byte("another enclave's key")))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.OpenAll([]enclave.Protected{ps[0], foreign}); err == nil {
		t.Error("OpenAll with another enclave's key succeeded")
	}
	ps[1].Destroy()
	if _, err := e.OpenAll(ps); !errors.Is(err, ErrDestroyed) {
		t.Errorf("OpenAll with a destroyed key = %v, want ErrDestroyed", err)
	}
	_ = e.Close()
	if _, err := e.OpenAll(ps[:1]); !errors.Is(err, enclave.ErrClosed) {
		t.Errorf("OpenAll after Close = %v, want ErrClosed", err)
	}
}
