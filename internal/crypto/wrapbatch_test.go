package crypto

import (
	"bytes"
	"crypto/hpke"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/format"
	"github.com/dcaas/dcaas/internal/secret"
)

func batchItems(n int) []BatchItem {
	items := make([]BatchItem, n)
	for i := range items {
		items[i] = BatchItem{Metadata: fmt.Appendf(nil, `{"key_id":"key_%d","version":1}`, i), Encryptions: int64(i * 1000), Key: secret.New(Random(32))}
	}
	return items
}

var (
	batchIssued   = time.UnixMilli(1764547200000)
	batchNotAfter = batchIssued.Add(10 * time.Minute)
)

func TestSealBatchRoundTrip(t *testing.T) {
	for _, k := range allKEMs {
		for _, n := range []int{1, 5, parallelOpenMin + 3} {
			t.Run(fmt.Sprintf("%s/%d", k, n), func(t *testing.T) {
				if !approved(k) {
					t.Skip("not approved in FIPS mode")
				}
				priv, err := GenerateKEMKey(k)
				if err != nil {
					t.Fatal(err)
				}
				items := batchItems(n)
				blob, err := SealBatch(priv.PublicKey(), "ins_abc", batchIssued, batchNotAfter, items)
				if err != nil {
					t.Fatalf("SealBatch = %v", err)
				}
				w, keys, err := OpenBatch(priv, "ins_abc", blob)
				if err != nil {
					t.Fatalf("OpenBatch = %v", err)
				}
				if w.Recipient != "ins_abc" || !w.IssuedTime().Equal(batchIssued) || !w.NotAfterTime().Equal(batchNotAfter) || w.KEMID != priv.KEM().ID() {
					t.Errorf("OpenBatch header = %q %v %v 0x%04x", w.Recipient, w.IssuedTime(), w.NotAfterTime(), w.KEMID)
				}
				if len(keys) != n {
					t.Fatalf("OpenBatch: %d keys, want %d", len(keys), n)
				}
				for i := range items {
					if !keys[i].Equal(items[i].Key) || !bytes.Equal(w.Keys[i].Metadata, items[i].Metadata) || w.Keys[i].Encryptions != items[i].Encryptions {
						t.Fatalf("key %d differs after the round trip", i)
					}
				}
			})
		}
	}
}

// TestOpenBatchTamper changes every byte of a batch in turn (the header,
// the metadata, the counts, the sealings): each change must fail, and
// never return a key.
func TestOpenBatchTamper(t *testing.T) {
	priv, err := GenerateKEMKey(api.KEMP256)
	if err != nil {
		t.Fatal(err)
	}
	items := batchItems(2)
	blob, err := SealBatch(priv.PublicKey(), "ins_abc", batchIssued, batchNotAfter, items)
	if err != nil {
		t.Fatal(err)
	}
	for i := range blob {
		b := bytes.Clone(blob)
		b[i] ^= 0x01
		w, keys, err := OpenBatch(priv, "ins_abc", b)
		if err == nil || keys != nil || w != nil {
			t.Fatalf("byte %d flipped: OpenBatch = %v, %d keys; want an error", i, err, len(keys))
		}
		if !errors.Is(err, ErrDecrypt) && !errors.Is(err, format.ErrMalformed) {
			t.Fatalf("byte %d flipped: OpenBatch = %v, want ErrDecrypt or ErrMalformed", i, err)
		}
	}
}

func TestOpenBatchRefusals(t *testing.T) {
	priv, _ := GenerateKEMKey(api.KEMP256)
	other, _ := GenerateKEMKey(api.KEMP256)
	otherKEM, _ := GenerateKEMKey(api.KEMMLKEM768P256)
	blob, err := SealBatch(priv.PublicKey(), "ins_abc", batchIssued, batchNotAfter, batchItems(3))
	if err != nil {
		t.Fatal(err)
	}
	w, err := format.ParseWrappedBatch(blob)
	if err != nil {
		t.Fatal(err)
	}
	swapped := *w
	swapped.Keys = []format.BatchEntry{w.Keys[1], w.Keys[0], w.Keys[2]}
	dropped := *w
	dropped.Keys = w.Keys[:2]
	relabeled := *w
	relabeled.Recipient = "ins_xyz"
	for _, tc := range []struct {
		name      string
		priv      hpke.PrivateKey
		recipient string
		blob      []byte
	}{
		{"another private key", other, "ins_abc", blob},
		{"another KEM", otherKEM, "ins_abc", blob},
		{"another recipient", priv, "ins_xyz", blob},
		{"recipient field changed to match", priv, "ins_xyz", relabeled.Marshal()},
		{"entries swapped", priv, "ins_abc", swapped.Marshal()},
		{"an entry dropped", priv, "ins_abc", dropped.Marshal()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, keys, err := OpenBatch(tc.priv, tc.recipient, tc.blob)
			if !errors.Is(err, ErrDecrypt) || keys != nil || w != nil {
				t.Errorf("OpenBatch = %v, %d keys; want ErrDecrypt", err, len(keys))
			}
		})
	}
}

func TestSealBatchInvalid(t *testing.T) {
	priv, _ := GenerateKEMKey(api.KEMP256)
	long := batchItems(1)
	long[0].Metadata = make([]byte, format.MaxMetadataLen+1)
	neg := batchItems(1)
	neg[0].Encryptions = -1
	empty := batchItems(1)
	empty[0].Key = secret.New(nil)
	for _, tc := range []struct {
		name     string
		items    []BatchItem
		notAfter time.Time
		want     error
	}{
		{"no items", nil, batchNotAfter, format.ErrMalformed},
		{"metadata too long", long, batchNotAfter, format.ErrMalformed},
		{"negative count", neg, batchNotAfter, format.ErrMalformed},
		{"empty key", empty, batchNotAfter, ErrInvalidKey},
		{"not_after before issued_at", batchItems(1), batchIssued, format.ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := SealBatch(priv.PublicKey(), "ins_abc", batchIssued, tc.notAfter, tc.items); !errors.Is(err, tc.want) {
				t.Errorf("SealBatch = %v, want %v", err, tc.want)
			}
		})
	}
}

type batchVector struct {
	KEM        api.KEM    `json:"kem"`
	PrivateKey hexBytes   `json:"private_key"`
	Recipient  string     `json:"recipient"`
	Batch      hexBytes   `json:"batch"`
	Keys       []hexBytes `json:"keys"`
}

func makeBatchVectors(t *testing.T) []batchVector {
	var vs []batchVector
	for _, k := range allKEMs {
		priv, err := GenerateKEMKey(k)
		if err != nil {
			t.Fatal(err)
		}
		pb, err := priv.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		items := batchItems(3)
		blob, err := SealBatch(priv.PublicKey(), "ins_vector", batchIssued, batchNotAfter, items)
		if err != nil {
			t.Fatal(err)
		}
		v := batchVector{KEM: k, PrivateKey: pb, Recipient: "ins_vector", Batch: blob}
		for _, it := range items {
			v.Keys = append(v.Keys, it.Key.Expose())
		}
		vs = append(vs, v)
	}
	return vs
}

// TestBatchVectors opens batches sealed once to fixed private keys: they
// must keep opening forever. In FIPS mode the X25519 KEMs are refused.
func TestBatchVectors(t *testing.T) {
	var vs []batchVector
	readVectors(t, "wrap_batch_vectors.json", &vs)
	if len(vs) != len(allKEMs) {
		t.Fatalf("%d vectors, want one per KEM", len(vs))
	}
	for _, v := range vs {
		t.Run(string(v.KEM), func(t *testing.T) {
			kem, err := KEMOf(v.KEM)
			if err != nil && !approved(v.KEM) {
				t.Skipf("%s is not offered in FIPS mode: %v", v.KEM, err)
			}
			if err != nil {
				t.Fatal(err)
			}
			priv, err := kem.NewPrivateKey(v.PrivateKey)
			if err != nil && !approved(v.KEM) {
				t.Skipf("crypto/hpke refuses %s itself: %v", v.KEM, err)
			}
			if err != nil {
				t.Fatal(err)
			}
			w, keys, err := OpenBatch(priv, v.Recipient, v.Batch)
			if !approved(v.KEM) {
				if !errors.Is(err, ErrNotApproved) {
					t.Errorf("OpenBatch in FIPS mode = %v, want ErrNotApproved", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("OpenBatch = %v", err)
			}
			if !w.IssuedTime().Equal(batchIssued) || len(keys) != len(v.Keys) {
				t.Fatalf("OpenBatch: issued %v, %d keys", w.IssuedTime(), len(keys))
			}
			for i := range keys {
				if !bytes.Equal(keys[i].Expose(), v.Keys[i]) {
					t.Errorf("key %d = %x, want %x", i, keys[i].Expose(), v.Keys[i])
				}
			}
		})
	}
}

func BenchmarkOpenBatch1000(b *testing.B) {
	priv, _ := GenerateKEMKey(api.KEMP256)
	blob, err := SealBatch(priv.PublicKey(), "ins_abc", batchIssued, batchNotAfter, batchItems(1000))
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		_, keys, err := OpenBatch(priv, "ins_abc", blob)
		if err != nil {
			b.Fatal(err)
		}
		for _, k := range keys {
			k.Wipe()
		}
	}
}
