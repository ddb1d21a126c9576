package crypto

import (
	"bytes"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"reflect"
	"sync"
	"testing"

	"github.com/cloudflare/circl/pki"
	"github.com/cloudflare/circl/sign/mldsa/mldsa65"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/secret"
)

// mldsaVectors is testdata/mldsa65_vectors.json; its "comment" names the
// sources: NIST ACVP keyGen records, and deterministic signatures made by
// Go's own (independent) ML-DSA, one of them Wycheproof's tcId 1.
type mldsaVectors struct {
	KeyGen []struct {
		TcID     int      `json:"tcId"`
		Seed     hexBytes `json:"seed"`
		PKSHA256 hexBytes `json:"pk_sha256"`
	} `json:"keygen"`
	Sigs []struct {
		Name     string   `json:"name"`
		Source   string   `json:"source"`
		Seed     hexBytes `json:"seed"`
		PKSHA256 hexBytes `json:"pk_sha256"`
		Msg      hexBytes `json:"msg"`
		Sig      hexBytes `json:"sig"`
	} `json:"sigs"`
}

// spkiPrefixMLDSA65 is the DER of an ML-DSA-65 SubjectPublicKeyInfo up to
// the raw key (RFC 9881, Appendix: SEQUENCE, AlgorithmIdentifier with OID
// 2.16.840.1.101.3.4.3.18 and no parameters, BIT STRING with 0 unused bits).
var spkiPrefixMLDSA65 = mustHex("308207b2300b0609608648016503040312038207a100")

func skipInFIPS(t *testing.T) {
	t.Helper()
	if FIPS() {
		t.Skip("ml-dsa-65 is refused in FIPS mode (TestMLDSA65FIPS covers that)")
	}
}

// mldsaPublicKey returns the raw public key that PublicKeyPEM gives for
// seed, checking the SubjectPublicKeyInfo framing on the way.
func mldsaPublicKey(t *testing.T, seed []byte) []byte {
	t.Helper()
	s, err := PublicKeyPEM(api.KeyMLDSA65, secret.Copy(seed))
	if err != nil {
		t.Fatalf("PublicKeyPEM = %v", err)
	}
	blk, rest := pem.Decode([]byte(s))
	if blk == nil || blk.Type != "PUBLIC KEY" || len(rest) != 0 {
		t.Fatalf("PublicKeyPEM = %q, want one PUBLIC KEY block", s)
	}
	if !bytes.HasPrefix(blk.Bytes, spkiPrefixMLDSA65) || len(blk.Bytes) != len(spkiPrefixMLDSA65)+mldsa65.PublicKeySize {
		t.Fatalf("SubjectPublicKeyInfo = %x..., want %x || 1952 bytes", blk.Bytes[:min(len(blk.Bytes), 30)], spkiPrefixMLDSA65)
	}
	// circl's own PKIX parser agrees on the OID and the key.
	pub, err := pki.UnmarshalPKIXPublicKey(blk.Bytes)
	if err != nil {
		t.Fatalf("circl pki.UnmarshalPKIXPublicKey = %v", err)
	}
	raw := blk.Bytes[len(spkiPrefixMLDSA65):]
	if b, _ := pub.MarshalBinary(); !bytes.Equal(b, raw) {
		t.Fatalf("circl parsed another public key")
	}
	return raw
}

func TestMLDSA65KeyGenVectors(t *testing.T) {
	skipInFIPS(t)
	var v mldsaVectors
	readVectors(t, "mldsa65_vectors.json", &v)
	if len(v.KeyGen) != 25 {
		t.Fatalf("mldsa65_vectors.json: %d keygen records, want 25", len(v.KeyGen))
	}
	for _, tv := range v.KeyGen {
		if err := CheckMaterial(api.KeyMLDSA65, secret.Copy(tv.Seed)); err != nil {
			t.Fatalf("tcId %d: CheckMaterial = %v", tv.TcID, err)
		}
		pk := mldsaPublicKey(t, tv.Seed)
		if got := sha256Sum(pk); !bytes.Equal(got, tv.PKSHA256) {
			t.Errorf("tcId %d: SHA-256(public key) = %x, want %x", tv.TcID, got, []byte(tv.PKSHA256))
		}
	}
}

func TestMLDSA65SignatureVectors(t *testing.T) {
	skipInFIPS(t)
	var v mldsaVectors
	readVectors(t, "mldsa65_vectors.json", &v)
	if len(v.Sigs) != 3 {
		t.Fatalf("mldsa65_vectors.json: %d signature records, want 3", len(v.Sigs))
	}
	for _, tv := range v.Sigs {
		t.Run(tv.Name, func(t *testing.T) {
			pk := mldsaPublicKey(t, tv.Seed)
			if got := sha256Sum(pk); !bytes.Equal(got, tv.PKSHA256) {
				t.Errorf("SHA-256(public key) = %x, want %x", got, []byte(tv.PKSHA256))
			}
			k, err := NewKey(api.KeyMLDSA65, "key_pq", 1, secret.Copy(tv.Seed))
			if err != nil {
				t.Fatal(err)
			}
			defer k.Wipe()
			if ok, err := k.Verify(tv.Msg, tv.Sig); !ok || err != nil {
				t.Errorf("Verify(vector) = %v, %v, want true", ok, err)
			}
			// circl's deterministic mode reproduces the signature exactly:
			// same message encoding (pure, empty context) as Go's.
			det := make([]byte, mldsa65.SignatureSize)
			if err := mldsa65.SignTo(k.ml, tv.Msg, nil, false, det); err != nil || !bytes.Equal(det, tv.Sig) {
				t.Errorf("circl deterministic signature differs from the vector (%v)", err)
			}
			for _, i := range []int{0, 47, 48, 1000, len(tv.Sig) - 1} {
				f := bytes.Clone(tv.Sig)
				f[i] ^= 0x01
				if ok, _ := k.Verify(tv.Msg, f); ok {
					t.Errorf("Verify(signature with byte %d flipped) = true", i)
				}
			}
			for name, bad := range map[string][]byte{"truncated": tv.Sig[:len(tv.Sig)-1], "extended": append(bytes.Clone(tv.Sig), 0), "empty": nil} {
				if ok, err := k.Verify(tv.Msg, bad); ok || err != nil {
					t.Errorf("Verify(%s signature) = %v, %v, want false, nil", name, ok, err)
				}
			}
			if ok, _ := k.Verify(append(bytes.Clone(tv.Msg), 'x'), tv.Sig); ok {
				t.Errorf("Verify(other message) = true")
			}
		})
	}
}

func TestMLDSA65Key(t *testing.T) {
	skipInFIPS(t)
	m, err := GenerateKey(api.KeyMLDSA65)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Wipe()
	if m.Len() != mldsa65.SeedSize {
		t.Fatalf("GenerateKey: %d bytes, want %d", m.Len(), mldsa65.SeedSize)
	}
	if other, _ := GenerateKey(api.KeyMLDSA65); other.Equal(m) {
		t.Errorf("two GenerateKey calls gave the same seed")
	}
	k, err := NewKey(api.KeyMLDSA65, "key_pq", 1, m)
	if err != nil {
		t.Fatal(err)
	}
	pub := new(mldsa65.PublicKey)
	if err := pub.UnmarshalBinary(mldsaPublicKey(t, m.Expose())); err != nil {
		t.Fatal(err)
	}
	msg := []byte("message")
	a, err := k.Sign(msg)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := k.Sign(msg)
	if len(a) != MLDSA65SignatureSize {
		t.Errorf("Sign: %d bytes, want %d", len(a), MLDSA65SignatureSize)
	}
	if bytes.Equal(a, b) {
		t.Errorf("two signatures of one message are equal: signing is not hedged")
	}
	det := make([]byte, mldsa65.SignatureSize)
	_ = mldsa65.SignTo(k.ml, msg, nil, false, det)
	if bytes.Equal(a, det) {
		t.Errorf("Sign gave the deterministic signature: signing is not hedged")
	}
	for _, sig := range [][]byte{a, b} {
		// The public key from PublicKeyPEM verifies with circl directly,
		// with the empty context and not another.
		if !mldsa65.Verify(pub, msg, nil, sig) {
			t.Errorf("circl Verify(Sign) = false")
		}
		if mldsa65.Verify(pub, msg, []byte("ctx"), sig) {
			t.Errorf("circl Verify with context \"ctx\" = true, want the empty context only")
		}
		if ok, err := k.Verify(msg, sig); !ok || err != nil {
			t.Errorf("Key.Verify(Sign) = %v, %v", ok, err)
		}
		f := bytes.Clone(sig)
		f[len(f)/2] ^= 0x80
		if mldsa65.Verify(pub, msg, nil, f) {
			t.Errorf("circl Verify(flipped bit) = true")
		}
		if ok, _ := k.Verify(msg, f); ok {
			t.Errorf("Key.Verify(flipped bit) = true")
		}
	}
	for _, op := range []func() error{
		func() error { _, err := k.Encrypt(nil, msg, nil); return err },
		func() error { _, err := k.MAC(msg); return err },
	} {
		if err := op(); !errors.Is(err, ErrWrongKeyType) {
			t.Errorf("symmetric operation on ml-dsa-65 = %v, want ErrWrongKeyType", err)
		}
	}
	if s := k.String(); bytes.Contains([]byte(s), []byte(hex.EncodeToString(m.Expose()))) {
		t.Errorf("String shows the seed")
	}
	priv := k.ml
	k.Wipe()
	if !reflect.ValueOf(*priv).IsZero() {
		t.Errorf("Wipe left the expanded ML-DSA private key in memory")
	}
	if _, err := k.Sign(msg); err != ErrClosed {
		t.Errorf("Sign after Wipe = %v, want ErrClosed", err)
	}
	if _, err := k.Verify(msg, a); err != ErrClosed {
		t.Errorf("Verify after Wipe = %v, want ErrClosed", err)
	}
}

func TestMLDSA65Material(t *testing.T) {
	skipInFIPS(t)
	for _, n := range []int{0, 31, 33, 64, 4032} {
		m := secret.New(make([]byte, n))
		if err := CheckMaterial(api.KeyMLDSA65, m); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("CheckMaterial(%d bytes) = %v, want ErrInvalidKey", n, err)
		}
		if _, err := NewKey(api.KeyMLDSA65, "k", 1, m); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("NewKey(%d bytes) = %v, want ErrInvalidKey", n, err)
		}
		if _, err := PublicKeyPEM(api.KeyMLDSA65, m); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("PublicKeyPEM(%d bytes) = %v, want ErrInvalidKey", n, err)
		}
	}
}

// TestMLDSA65FIPS: in FIPS mode (GODEBUG=fips140=on) every entry point
// refuses ml-dsa-65 with ErrNotApproved; outside it they all work.
func TestMLDSA65FIPS(t *testing.T) {
	seed := secret.New(make([]byte, 32))
	_, genErr := GenerateKey(api.KeyMLDSA65)
	checkErr := CheckMaterial(api.KeyMLDSA65, seed)
	_, keyErr := NewKey(api.KeyMLDSA65, "k", 1, seed)
	_, pemErr := PublicKeyPEM(api.KeyMLDSA65, seed)
	for name, err := range map[string]error{"GenerateKey": genErr, "CheckMaterial": checkErr, "NewKey": keyErr, "PublicKeyPEM": pemErr} {
		if FIPS() && !errors.Is(err, ErrNotApproved) {
			t.Errorf("FIPS mode: %s(ml-dsa-65) = %v, want ErrNotApproved", name, err)
		}
		if !FIPS() && err != nil {
			t.Errorf("%s(ml-dsa-65) = %v", name, err)
		}
	}
}

func TestMLDSA65Concurrent(t *testing.T) {
	skipInFIPS(t)
	k := newTestKey(t, api.KeyMLDSA65)
	defer k.Wipe()
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			msg := []byte{byte(i)}
			sig, err := k.Sign(msg)
			if err != nil {
				t.Error(err)
				return
			}
			if ok, err := k.Verify(msg, sig); !ok || err != nil {
				t.Errorf("Verify = %v, %v", ok, err)
			}
		})
	}
	wg.Wait()
}
