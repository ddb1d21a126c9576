package crypto

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/format"
	"github.com/dcaas/dcaas/internal/secret"
)

type ekbVector struct {
	Name string   `json:"name"`
	EKB  hexBytes `json:"ekb"`
	DEK  hexBytes `json:"dek"`
}

type ekbVectorFile struct {
	TMK     hexBytes    `json:"tmk"`
	Vectors []ekbVector `json:"vectors"`
}

func testEKB(t testing.TB, md api.KeyMetadata) *format.EKB {
	t.Helper()
	b, err := json.Marshal(md)
	if err != nil {
		t.Fatal(err)
	}
	return &format.EKB{Tenant: md.Tenant, TMKVersion: 1, KeyID: md.KeyID, KeyVersion: uint32(md.Version), Metadata: b}
}

func testMetadata(typ api.KeyType) api.KeyMetadata {
	return api.KeyMetadata{
		KeyID: "key_vector" + string(typ[:3]), Version: 1, Tenant: "acme", Type: typ,
		Owner: "CN=payments-api,O=acme", CreatedAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
	}
}

func makeEKBVectors(t *testing.T) ekbVectorFile {
	f := ekbVectorFile{TMK: Random(TMKSize)}
	tmk := secret.Copy(f.TMK)
	md := testMetadata(api.KeyECDSAP256)
	md.Policy = &api.Policy{Rules: []api.PolicyRule{{Principals: []string{"CN=reporting-*,O=acme"}, Actions: []api.Action{api.ActionSign}}}}
	md.Labels = map[string]string{"env": "prod"}
	for _, c := range []struct {
		name string
		md   api.KeyMetadata
	}{{"aes-256-gcm", testMetadata(api.KeyAES256GCM)}, {"ecdsa-p256-policy", md}} {
		dek, err := GenerateKey(c.md.Type)
		if err != nil {
			t.Fatal(err)
		}
		e := testEKB(t, c.md)
		e.TMKVersion = 3
		if err := SealEKB(tmk, e, dek); err != nil {
			t.Fatal(err)
		}
		f.Vectors = append(f.Vectors, ekbVector{Name: c.name, EKB: e.Marshal(), DEK: dek.Expose()})
	}
	return f
}

// TestEKBVectors opens EKBs sealed once under a fixed TMK: they must keep
// opening to the same DEK forever.
func TestEKBVectors(t *testing.T) {
	var f ekbVectorFile
	readVectors(t, "ekb_vectors.json", &f)
	tmk := secret.Copy(f.TMK)
	for _, v := range f.Vectors {
		t.Run(v.Name, func(t *testing.T) {
			e, err := format.ParseEKB(v.EKB)
			if err != nil {
				t.Fatalf("ParseEKB = %v", err)
			}
			dek, err := OpenEKB(tmk, e)
			if err != nil {
				t.Fatalf("OpenEKB = %v", err)
			}
			defer dek.Wipe()
			if !bytes.Equal(dek.Expose(), v.DEK) {
				t.Errorf("OpenEKB = %x, want %x", dek.Expose(), v.DEK)
			}
		})
	}
}

func TestSealOpenEKB(t *testing.T) {
	tmk := secret.New(Random(TMKSize))
	for _, typ := range []api.KeyType{api.KeyAES256GCM, api.KeyHMACSHA256, api.KeyEd25519, api.KeyECDSAP256} {
		t.Run(string(typ), func(t *testing.T) {
			dek, err := GenerateKey(typ)
			if err != nil {
				t.Fatal(err)
			}
			e := testEKB(t, testMetadata(typ))
			if err := SealEKB(tmk, e, dek); err != nil {
				t.Fatalf("SealEKB = %v", err)
			}
			e2, err := format.ParseEKB(e.Marshal())
			if err != nil {
				t.Fatalf("ParseEKB = %v", err)
			}
			got, err := OpenEKB(tmk, e2)
			if err != nil {
				t.Fatalf("OpenEKB = %v", err)
			}
			if !got.Equal(dek) {
				t.Errorf("OpenEKB returned another key")
			}
		})
	}
}

func TestSealEKBFreshSalt(t *testing.T) {
	tmk := secret.New(Random(TMKSize))
	dek := secret.New(Random(32))
	a, b := testEKB(t, testMetadata(api.KeyAES256GCM)), testEKB(t, testMetadata(api.KeyAES256GCM))
	if err := SealEKB(tmk, a, dek); err != nil {
		t.Fatal(err)
	}
	if err := SealEKB(tmk, b, dek); err != nil {
		t.Fatal(err)
	}
	if a.Salt == b.Salt || bytes.Equal(a.Sealed, b.Sealed) {
		t.Errorf("two SealEKB calls gave the same salt or sealed bytes")
	}
}

// TestEKBBitFlips flips every bit of a marshaled EKB: each flip must make it
// fail to parse or fail to open, never open to anything.
func TestEKBBitFlips(t *testing.T) {
	tmk := secret.New(Random(TMKSize))
	e := testEKB(t, testMetadata(api.KeyAES256GCM))
	if err := SealEKB(tmk, e, secret.New(Random(32))); err != nil {
		t.Fatal(err)
	}
	raw := e.Marshal()
	for i := range len(raw) * 8 {
		b := bytes.Clone(raw)
		b[i/8] ^= 1 << (i % 8)
		p, err := format.ParseEKB(b)
		if err != nil {
			if !errors.Is(err, format.ErrMalformed) {
				t.Fatalf("bit %d: ParseEKB = %v, want ErrMalformed", i, err)
			}
			continue
		}
		if dek, err := OpenEKB(tmk, p); err != ErrDecrypt {
			dek.Wipe()
			t.Fatalf("bit %d: OpenEKB = %v, want ErrDecrypt", i, err)
		}
	}
}

func TestOpenEKBErrors(t *testing.T) {
	tmk := secret.New(Random(TMKSize))
	e := testEKB(t, testMetadata(api.KeyAES256GCM))
	if err := SealEKB(tmk, e, secret.New(Random(32))); err != nil {
		t.Fatal(err)
	}
	mutate := func(f func(*format.EKB)) *format.EKB {
		c := *e
		c.Metadata, c.Sealed = bytes.Clone(e.Metadata), bytes.Clone(e.Sealed)
		f(&c)
		return &c
	}
	tests := []struct {
		name string
		tmk  *secret.Bytes
		e    *format.EKB
	}{
		{"wrong tmk", secret.New(Random(TMKSize)), e},
		{"short tmk", secret.New(Random(16)), e},
		{"nil tmk", nil, e},
		{"other tmk version", tmk, mutate(func(c *format.EKB) { c.TMKVersion++ })},
		{"other key version", tmk, mutate(func(c *format.EKB) { c.KeyVersion++ })},
		{"other tenant", tmk, mutate(func(c *format.EKB) { c.Tenant = "evil" })},
		{"other metadata", tmk, mutate(func(c *format.EKB) { c.Metadata[0] ^= 1 })},
		{"other salt", tmk, mutate(func(c *format.EKB) { c.Salt[0] ^= 1 })},
		{"truncated sealed", tmk, mutate(func(c *format.EKB) { c.Sealed = c.Sealed[:len(c.Sealed)-1] })},
		{"invalid (no sealed)", tmk, mutate(func(c *format.EKB) { c.Sealed = nil })},
		{"invalid (no key id)", tmk, mutate(func(c *format.EKB) { c.KeyID = "" })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := OpenEKB(tt.tmk, tt.e); err != ErrDecrypt {
				t.Errorf("OpenEKB = %v, want ErrDecrypt", err)
			}
		})
	}
}

func TestSealEKBErrors(t *testing.T) {
	tmk := secret.New(Random(TMKSize))
	dek := secret.New(Random(32))
	tests := []struct {
		name string
		tmk  *secret.Bytes
		e    *format.EKB
		dek  *secret.Bytes
		want error
	}{
		{"short tmk", secret.New(Random(31)), testEKB(t, testMetadata(api.KeyAES256GCM)), dek, ErrInvalidKey},
		{"empty dek", tmk, testEKB(t, testMetadata(api.KeyAES256GCM)), secret.New(nil), ErrInvalidKey},
		{"huge dek", tmk, testEKB(t, testMetadata(api.KeyAES256GCM)), secret.New(make([]byte, MaxDEKSize+1)), ErrInvalidKey},
		{"no tenant", tmk, &format.EKB{TMKVersion: 1, KeyID: "k", KeyVersion: 1}, dek, format.ErrMalformed},
		{"tmk version 0", tmk, &format.EKB{Tenant: "t", KeyID: "k", KeyVersion: 1}, dek, format.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := SealEKB(tt.tmk, tt.e, tt.dek); !errors.Is(err, tt.want) {
				t.Errorf("SealEKB = %v, want %v", err, tt.want)
			}
		})
	}
	// The largest key material fits the format.
	e := testEKB(t, testMetadata(api.KeyAES256GCM))
	if err := SealEKB(tmk, e, secret.New(make([]byte, MaxDEKSize))); err != nil {
		t.Fatalf("SealEKB(MaxDEKSize) = %v", err)
	}
	if _, err := format.ParseEKB(e.Marshal()); err != nil {
		t.Errorf("ParseEKB(SealEKB(MaxDEKSize)) = %v", err)
	}
}
