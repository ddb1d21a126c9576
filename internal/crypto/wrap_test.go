package crypto

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hpke"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/format"
	"github.com/dcaas/dcaas/internal/secret"
)

func testItems(n int) []WrapItem {
	items := make([]WrapItem, n)
	for i := range items {
		items[i] = WrapItem{AAD: fmt.Appendf(nil, `{"key_id":"key_%d"}`, i), Key: secret.New(Random(32))}
	}
	return items
}

func TestWrapBatchRoundTrip(t *testing.T) {
	for _, k := range allKEMs {
		t.Run(string(k), func(t *testing.T) {
			if !approved(k) {
				t.Skip("not approved in FIPS mode")
			}
			priv, err := GenerateKEMKey(k)
			if err != nil {
				t.Fatal(err)
			}
			info := []byte("dcaas/v1 key-transport\x00ins_abc")
			items := testItems(5)
			wrapped, err := WrapBatch(priv.PublicKey(), info, items)
			if err != nil {
				t.Fatalf("WrapBatch = %v", err)
			}
			if len(wrapped) != len(items) {
				t.Fatalf("WrapBatch: %d results, want %d", len(wrapped), len(items))
			}
			var enc []byte
			for i, b := range wrapped {
				w, err := format.ParseWrappedKey(b)
				if err != nil {
					t.Fatalf("ParseWrappedKey = %v", err)
				}
				if enc == nil {
					enc = w.Enc
				}
				if w.KEMID != priv.KEM().ID() || w.Index != uint32(i) || !bytes.Equal(w.Enc, enc) {
					t.Errorf("wrapped[%d] = kem 0x%04x index %d; want one shared enc", i, w.KEMID, w.Index)
				}
			}
			u := NewUnwrapper(priv, info)
			defer u.Close()
			for _, i := range []int{3, 0, 4, 1, 2} { // random access
				key, err := u.Unwrap(wrapped[i], items[i].AAD)
				if err != nil {
					t.Fatalf("Unwrap(%d) = %v", i, err)
				}
				if !key.Equal(items[i].Key) {
					t.Errorf("Unwrap(%d) returned another key", i)
				}
			}
		})
	}
}

func TestUnwrapFailures(t *testing.T) {
	kem := api.KEMP256 // approved in both modes
	priv, _ := GenerateKEMKey(kem)
	other, _ := GenerateKEMKey(kem)
	info := []byte("info")
	items := testItems(3)
	wrapped, err := WrapBatch(priv.PublicKey(), info, items)
	if err != nil {
		t.Fatal(err)
	}
	other2, _ := WrapBatch(priv.PublicKey(), info, items) // another encapsulation
	hdrLen := len(wrapped[1]) - (32 + AEADOverhead)
	patch := func(i int, f func(b []byte)) []byte {
		b := bytes.Clone(wrapped[i])
		f(b)
		return b
	}
	// wrapped[1] with its index set to 2: parses, but the header is bound.
	reindexed := patch(1, func(b []byte) { binary.BigEndian.PutUint32(b[hdrLen-4:], 2) })
	// wrapped[1] sealed under another batch's enc.
	reenc := patch(1, func(b []byte) { w, _ := format.ParseWrappedKey(other2[0]); copy(b[9:], w.Enc) })
	// wrapped[1] with a bit of enc flipped.
	flippedEnc := patch(1, func(b []byte) { b[20] ^= 1 })
	mlkemPriv := priv
	if p, err := GenerateKEMKey(api.KEMMLKEM768P256); err == nil {
		mlkemPriv = p
	}
	tests := []struct {
		name    string
		u       *Unwrapper
		wrapped []byte
		aad     []byte
		want    error
	}{
		{"wrong info", NewUnwrapper(priv, []byte("infO")), wrapped[1], items[1].AAD, ErrDecrypt},
		{"no info", NewUnwrapper(priv, nil), wrapped[1], items[1].AAD, ErrDecrypt},
		{"wrong recipient", NewUnwrapper(other, info), wrapped[1], items[1].AAD, ErrDecrypt},
		{"wrong KEM", NewUnwrapper(mlkemPriv, info), wrapped[1], items[1].AAD, ErrDecrypt},
		{"wrong aad", NewUnwrapper(priv, info), wrapped[1], items[2].AAD, ErrDecrypt},
		{"no aad", NewUnwrapper(priv, info), wrapped[1], nil, ErrDecrypt},
		{"wrong index", NewUnwrapper(priv, info), reindexed, items[1].AAD, ErrDecrypt},
		{"wrong index, its aad", NewUnwrapper(priv, info), reindexed, items[2].AAD, ErrDecrypt},
		{"enc of another batch", NewUnwrapper(priv, info), reenc, items[1].AAD, ErrDecrypt},
		{"flipped enc", NewUnwrapper(priv, info), flippedEnc, items[1].AAD, ErrDecrypt},
		{"flipped tag", NewUnwrapper(priv, info), patch(1, func(b []byte) { b[len(b)-1] ^= 1 }), items[1].AAD, ErrDecrypt},
		{"flipped nonce", NewUnwrapper(priv, info), patch(1, func(b []byte) { b[hdrLen] ^= 1 }), items[1].AAD, ErrDecrypt},
		{"other KEM id", NewUnwrapper(priv, info), patch(1, func(b []byte) { b[6] = 0x20 }), items[1].AAD, ErrDecrypt},
		{"malformed", NewUnwrapper(priv, info), wrapped[1][:hdrLen+5], items[1].AAD, format.ErrMalformed},
		{"garbage", NewUnwrapper(priv, info), []byte("DWRP"), nil, format.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key, err := tt.u.Unwrap(tt.wrapped, tt.aad)
			if tt.want == ErrDecrypt && err != ErrDecrypt || !errors.Is(err, tt.want) {
				t.Errorf("Unwrap = %v, %v; want %v", key, err, tt.want)
			}
		})
	}
	// A failure does not poison the Unwrapper.
	u := NewUnwrapper(priv, info)
	if _, err := u.Unwrap(flippedEnc, items[1].AAD); err != ErrDecrypt {
		t.Fatal(err)
	}
	if _, err := u.Unwrap(wrapped[1], items[1].AAD); err != nil {
		t.Errorf("Unwrap after a failure = %v", err)
	}
	if _, err := u.Unwrap(other2[1], items[1].AAD); err != nil {
		t.Errorf("Unwrap of another batch = %v", err)
	}
	u.Close()
	if _, err := u.Unwrap(wrapped[1], items[1].AAD); err != ErrClosed {
		t.Errorf("Unwrap after Close = %v, want ErrClosed", err)
	}
	if u.kek != nil {
		t.Errorf("Close left the kek cached")
	}
}

func TestWrapBatchErrors(t *testing.T) {
	priv, _ := GenerateKEMKey(api.KEMP256)
	tests := []struct {
		name  string
		items []WrapItem
		want  error
	}{
		{"empty key", []WrapItem{{Key: secret.New(nil)}}, ErrInvalidKey},
		{"nil key", []WrapItem{{}}, ErrInvalidKey},
		{"huge key", []WrapItem{{Key: secret.New(make([]byte, MaxDEKSize+1))}}, ErrInvalidKey},
	}
	for _, tt := range tests {
		if _, err := WrapBatch(priv.PublicKey(), nil, tt.items); !errors.Is(err, tt.want) {
			t.Errorf("%s: WrapBatch = %v, want %v", tt.name, err, tt.want)
		}
	}
	if w, err := WrapBatch(priv.PublicKey(), nil, nil); err != nil || len(w) != 0 {
		t.Errorf("WrapBatch(no items) = %v, %v", w, err)
	}
	// The largest key fits the format.
	big := []WrapItem{{Key: secret.New(Random(MaxDEKSize))}}
	w, err := WrapBatch(priv.PublicKey(), nil, big)
	if err != nil {
		t.Fatalf("WrapBatch(MaxDEKSize) = %v", err)
	}
	if k, err := NewUnwrapper(priv, nil).Unwrap(w[0], nil); err != nil || !k.Equal(big[0].Key) {
		t.Errorf("Unwrap(MaxDEKSize) = %v", err)
	}
	// A KEM dcaas does not offer.
	p384, _ := hpke.DHKEM(ecdh.P384()).GenerateKey()
	if _, err := WrapBatch(p384.PublicKey(), nil, testItems(1)); !errors.Is(err, ErrUnknownKEM) {
		t.Errorf("WrapBatch(P-384) = %v, want ErrUnknownKEM", err)
	}
	if _, err := NewUnwrapper(p384, nil).Unwrap(nil, nil); !errors.Is(err, ErrUnknownKEM) {
		t.Errorf("Unwrap(P-384 key) = %v, want ErrUnknownKEM", err)
	}
}

// TestNotApprovedInFIPS checks that X25519 keys made outside KEMOf are
// refused in FIPS mode.
func TestNotApprovedInFIPS(t *testing.T) {
	if !FIPS() {
		t.Skip("FIPS mode only")
	}
	priv, err := hpke.DHKEM(ecdh.X25519()).GenerateKey()
	if err != nil {
		t.Skipf("crypto/ecdh refuses X25519 itself (GODEBUG=fips140=only): %v", err)
	}
	if _, err := WrapBatch(priv.PublicKey(), nil, testItems(1)); !errors.Is(err, ErrNotApproved) {
		t.Errorf("WrapBatch(x25519) = %v, want ErrNotApproved", err)
	}
	if _, err := NewUnwrapper(priv, nil).Unwrap(nil, nil); !errors.Is(err, ErrNotApproved) {
		t.Errorf("Unwrap(x25519) = %v, want ErrNotApproved", err)
	}
}

func TestUnwrapConcurrent(t *testing.T) {
	priv, _ := GenerateKEMKey(api.KEMP256)
	items := testItems(4)
	a, _ := WrapBatch(priv.PublicKey(), nil, items)
	b, _ := WrapBatch(priv.PublicKey(), nil, items)
	u := NewUnwrapper(priv, nil)
	defer u.Close()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 20 {
				batch := a
				if (g+i)%3 == 0 {
					batch = b
				}
				j := i % len(items)
				k, err := u.Unwrap(batch[j], items[j].AAD)
				if err != nil || !k.Equal(items[j].Key) {
					t.Errorf("Unwrap = %v", err)
				}
			}
		})
	}
	wg.Wait()
}

type wrapVector struct {
	KEM        api.KEM  `json:"kem"`
	PrivateKey hexBytes `json:"private_key"`
	Info       hexBytes `json:"info"`
	Items      []struct {
		AAD     hexBytes `json:"aad"`
		Key     hexBytes `json:"key"`
		Wrapped hexBytes `json:"wrapped"`
	} `json:"items"`
}

func makeWrapVectors(t *testing.T) []wrapVector {
	var vs []wrapVector
	for _, k := range allKEMs {
		kem, err := KEMOf(k)
		if err != nil {
			t.Fatal(err)
		}
		priv, err := kem.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		pb, err := priv.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		v := wrapVector{KEM: k, PrivateKey: pb, Info: []byte("dcaas/v1 key-transport\x00ins_vector")}
		items := testItems(3)
		wrapped, err := WrapBatch(priv.PublicKey(), v.Info, items)
		if err != nil {
			t.Fatal(err)
		}
		for i, it := range items {
			v.Items = append(v.Items, struct {
				AAD     hexBytes `json:"aad"`
				Key     hexBytes `json:"key"`
				Wrapped hexBytes `json:"wrapped"`
			}{it.AAD, it.Key.Expose(), wrapped[i]})
		}
		vs = append(vs, v)
	}
	return vs
}

// TestWrapVectors unwraps batches wrapped once to fixed private keys: they
// must keep unwrapping forever. In FIPS mode the X25519 KEMs must be refused.
func TestWrapVectors(t *testing.T) {
	var vs []wrapVector
	readVectors(t, "wrap_vectors.json", &vs)
	for _, v := range vs {
		t.Run(string(v.KEM), func(t *testing.T) {
			var kem hpke.KEM
			for _, s := range kemSuites {
				if s.name == v.KEM {
					kem = s.kem()
				}
			}
			priv, err := kem.NewPrivateKey(v.PrivateKey)
			if err != nil && !approved(v.KEM) {
				t.Skipf("crypto/hpke refuses %s itself (GODEBUG=fips140=only): %v", v.KEM, err)
			}
			if err != nil {
				t.Fatal(err)
			}
			u := NewUnwrapper(priv, v.Info)
			defer u.Close()
			for i, it := range v.Items {
				key, err := u.Unwrap(it.Wrapped, it.AAD)
				if !approved(v.KEM) {
					if !errors.Is(err, ErrNotApproved) {
						t.Errorf("Unwrap in FIPS mode = %v, want ErrNotApproved", err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("Unwrap(item %d) = %v", i, err)
				}
				if !bytes.Equal(key.Expose(), it.Key) {
					t.Errorf("Unwrap(item %d) = %x, want %x", i, key.Expose(), it.Key)
				}
			}
		})
	}
}

func BenchmarkWrapBatch(b *testing.B) {
	for _, k := range allKEMs {
		if !approved(k) {
			continue
		}
		priv, _ := GenerateKEMKey(k)
		items := testItems(1000)
		b.Run(string(k)+"/wrap-1000", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := WrapBatch(priv.PublicKey(), nil, items); err != nil {
					b.Fatal(err)
				}
			}
		})
		wrapped, _ := WrapBatch(priv.PublicKey(), nil, items)
		b.Run(string(k)+"/unwrap-1000", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				u := NewUnwrapper(priv, nil)
				for i, w := range wrapped {
					key, err := u.Unwrap(w, items[i].AAD)
					if err != nil {
						b.Fatal(err)
					}
					key.Wipe()
				}
				u.Close()
			}
		})
	}
}
