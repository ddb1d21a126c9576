package crypto

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/format"
	"github.com/dcaas/dcaas/internal/secret"
)

func sha256Sum(b []byte) []byte { h := sha256.Sum256(b); return h[:] }

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func newTestKey(t testing.TB, typ api.KeyType) *Key {
	t.Helper()
	m, err := GenerateKey(typ)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Wipe()
	k, err := NewKey(typ, "key_test", 1, m)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestKeyEncryptDecrypt(t *testing.T) {
	k := newTestKey(t, api.KeyAES256GCM)
	pt, aad := []byte("secret message"), []byte("aad")
	ct, err := k.Encrypt([]byte("pre"), pt, aad)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(ct, []byte("pre")) {
		t.Fatalf("Encrypt did not append to dst")
	}
	ct = ct[3:]
	if id, v, err := format.PeekCiphertextKey(ct); err != nil || id != "key_test" || v != 1 {
		t.Fatalf("PeekCiphertextKey = %q, %d, %v", id, v, err)
	}
	got, err := k.Decrypt(nil, ct, aad)
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("Decrypt = %q, %v", got, err)
	}
	// The same material under another id or version is another key.
	m := secret.Copy(k.material.Expose())
	for _, o := range []struct {
		id string
		v  uint32
	}{{"key_tesu", 1}, {"key_test", 2}} {
		other, err := NewKey(api.KeyAES256GCM, o.id, o.v, m)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := other.Decrypt(nil, ct, aad); err != ErrDecrypt {
			t.Errorf("Decrypt under %s v%d = %v, want ErrDecrypt", o.id, o.v, err)
		}
		// Rewriting the header to name the other key does not help.
		forged := (&format.Ciphertext{KeyID: o.id, KeyVersion: o.v, Sealed: ct[len(k.header):]}).Marshal()
		if _, err := other.Decrypt(nil, forged, aad); err != ErrDecrypt {
			t.Errorf("Decrypt(forged header %s v%d) = %v, want ErrDecrypt", o.id, o.v, err)
		}
	}
	if _, err := k.Decrypt(nil, ct, []byte("aae")); err != ErrDecrypt {
		t.Errorf("Decrypt(wrong aad) = %v, want ErrDecrypt", err)
	}
	if _, err := k.Decrypt(nil, ct[:len(ct)-1], aad); err != ErrDecrypt {
		t.Errorf("Decrypt(truncated) = %v, want ErrDecrypt", err)
	}
	if _, err := k.Decrypt(nil, []byte{1, 2}, aad); !errors.Is(err, format.ErrMalformed) {
		t.Errorf("Decrypt(malformed) = %v, want ErrMalformed", err)
	}
}

func TestKeySignVerify(t *testing.T) {
	for _, typ := range []api.KeyType{api.KeyEd25519, api.KeyECDSAP256} {
		t.Run(string(typ), func(t *testing.T) {
			k := newTestKey(t, typ)
			msg := []byte("pay 100 EUR")
			sig, err := k.Sign(msg)
			if err != nil {
				t.Fatal(err)
			}
			tests := []struct {
				name     string
				msg, sig []byte
				want     bool
			}{
				{"valid", msg, sig, true},
				{"other message", []byte("pay 900 EUR"), sig, false},
				{"flipped signature", msg, append(bytes.Clone(sig[:len(sig)-1]), sig[len(sig)-1]^1), false},
				{"truncated signature", msg, sig[:len(sig)-1], false},
				{"empty signature", msg, nil, false},
			}
			for _, tt := range tests {
				if ok, err := k.Verify(tt.msg, tt.sig); ok != tt.want || err != nil {
					t.Errorf("%s: Verify = %v, %v; want %v", tt.name, ok, err, tt.want)
				}
			}
			if ok, _ := newTestKey(t, typ).Verify(msg, sig); ok {
				t.Errorf("another key verifies the signature")
			}
		})
	}
}

func TestKeyMAC(t *testing.T) {
	k := newTestKey(t, api.KeyHMACSHA256)
	msg := []byte("msg")
	tag, err := k.MAC(msg)
	if err != nil || len(tag) != 32 {
		t.Fatalf("MAC = %x, %v", tag, err)
	}
	tests := []struct {
		name string
		tag  []byte
		want bool
	}{
		{"valid", tag, true},
		{"flipped", append([]byte{tag[0] ^ 1}, tag[1:]...), false},
		{"truncated", tag[:16], false},
		{"empty", nil, false},
	}
	for _, tt := range tests {
		if ok, err := k.VerifyMAC(msg, tt.tag); ok != tt.want || err != nil {
			t.Errorf("%s: VerifyMAC = %v, %v; want %v", tt.name, ok, err, tt.want)
		}
	}
}

// TestKeyWrongType calls every operation on every key type.
func TestKeyWrongType(t *testing.T) {
	allowed := map[api.KeyType]string{
		api.KeyAES256GCM: "encrypt decrypt", api.KeyHMACSHA256: "mac", api.KeyEd25519: "sign", api.KeyECDSAP256: "sign",
	}
	for _, typ := range implementedTypes {
		k := newTestKey(t, typ)
		ops := map[string]error{}
		_, ops["encrypt"] = k.Encrypt(nil, []byte("x"), nil)
		_, ops["decrypt"] = k.Decrypt(nil, make([]byte, 64), nil)
		_, ops["sign"] = k.Sign([]byte("x"))
		_, ops["verify"] = k.Verify([]byte("x"), []byte("y"))
		_, ops["mac"] = k.MAC([]byte("x"))
		_, ops["verifymac"] = k.VerifyMAC([]byte("x"), []byte("y"))
		for op, err := range ops {
			family := op
			switch op {
			case "verify":
				family = "sign"
			case "verifymac":
				family = "mac"
			}
			wantOK := strings.Contains(allowed[typ], family)
			if wantOK && errors.Is(err, ErrWrongKeyType) || !wantOK && !errors.Is(err, ErrWrongKeyType) {
				t.Errorf("%s key: %s = %v (allowed: %v)", typ, op, err, wantOK)
			}
		}
	}
}

func TestKeyWipe(t *testing.T) {
	for _, typ := range implementedTypes {
		k := newTestKey(t, typ)
		m := k.material
		ed := k.ed
		k.Wipe()
		k.Wipe()
		if m.Len() != 0 || (ed != nil && !bytes.Equal(ed, make([]byte, len(ed)))) {
			t.Errorf("%s: Wipe left material", typ)
		}
		_, e1 := k.Encrypt(nil, nil, nil)
		_, e2 := k.Decrypt(nil, nil, nil)
		_, e3 := k.Sign(nil)
		_, e4 := k.Verify(nil, nil)
		_, e5 := k.MAC(nil)
		_, e6 := k.VerifyMAC(nil, nil)
		for i, err := range []error{e1, e2, e3, e4, e5, e6} {
			if err != ErrClosed {
				t.Errorf("%s: op %d after Wipe = %v, want ErrClosed", typ, i, err)
			}
		}
	}
}

func TestNewKeyErrors(t *testing.T) {
	m := secret.New(make([]byte, 32))
	tests := []struct {
		typ  api.KeyType
		id   string
		v    uint32
		m    *secret.Bytes
		want error
	}{
		{api.KeyAES256GCM, "", 1, m, format.ErrMalformed},
		{api.KeyAES256GCM, "k", 0, m, format.ErrMalformed},
		{api.KeyAES256GCM, "k", 1, secret.New(make([]byte, 16)), ErrInvalidKey},
		{api.KeyECDSAP256, "k", 1, m, ErrInvalidKey},
		{"rsa-2048", "k", 1, m, ErrUnsupported},
	}
	for _, tt := range tests {
		if _, err := NewKey(tt.typ, tt.id, tt.v, tt.m); !errors.Is(err, tt.want) {
			t.Errorf("NewKey(%s, %q, %d) = %v, want %v", tt.typ, tt.id, tt.v, err, tt.want)
		}
	}
	// NewKey copies: wiping the caller's material leaves the key working.
	src := secret.New(Random(32))
	k, _ := NewKey(api.KeyHMACSHA256, "k", 1, src)
	want, _ := k.MAC([]byte("m"))
	src.Wipe()
	if got, _ := k.MAC([]byte("m")); !bytes.Equal(got, want) {
		t.Errorf("key changed when the caller wiped its material")
	}
}

func TestKeyRedacts(t *testing.T) {
	for _, typ := range implementedTypes {
		k := newTestKey(t, typ)
		j, err := json.Marshal(k)
		if err != nil {
			t.Fatal(err)
		}
		outs := []string{string(j)}
		for _, f := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%q", "%d"} {
			outs = append(outs, fmt.Sprintf(f, k))
		}
		m := k.material.Expose()
		for _, s := range outs {
			for _, enc := range []string{hex.EncodeToString(m), strings.ToUpper(hex.EncodeToString(m)), string(m), fmt.Sprint(m)} {
				if strings.Contains(s, enc) {
					t.Errorf("%s: %q shows the material", typ, s)
				}
			}
			if !strings.Contains(s, "key_test") {
				t.Errorf("%s: %q does not name the key", typ, s)
			}
		}
	}
}

func TestKeyConcurrent(t *testing.T) {
	enc, mac, sig := newTestKey(t, api.KeyAES256GCM), newTestKey(t, api.KeyHMACSHA256), newTestKey(t, api.KeyECDSAP256)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				ct, _ := enc.Encrypt(nil, []byte("p"), []byte("a"))
				if _, err := enc.Decrypt(nil, ct, []byte("a")); err != nil {
					t.Error(err)
				}
				tag, _ := mac.MAC([]byte("m"))
				if ok, _ := mac.VerifyMAC([]byte("m"), tag); !ok {
					t.Error("VerifyMAC failed")
				}
				s, _ := sig.Sign([]byte("m"))
				if ok, _ := sig.Verify([]byte("m"), s); !ok {
					t.Error("Verify failed")
				}
			}
		})
	}
	wg.Wait()
}

type keyVector struct {
	Type         api.KeyType `json:"type"`
	Material     hexBytes    `json:"material"`
	Message      hexBytes    `json:"message"`
	Signature    hexBytes    `json:"signature,omitempty"`
	MAC          hexBytes    `json:"mac,omitempty"`
	PublicKeyPEM string      `json:"public_key_pem,omitempty"`
}

// Independent answers: RFC 8032 §7.1 test 1, and HMAC-SHA-256 computed by
// Python's hmac module.
var (
	rfc8032Seed = mustHex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
	rfc8032Sig  = mustHex("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")
	hmacKey     = mustHex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
	hmacMsg     = []byte("dcaas hmac vector")
	hmacTag     = mustHex("28c9bd807a3bd6d74854fada54c20fc1702542e3572d52f7cdca596903ce2547")
)

func makeKeyVectors(t *testing.T) []keyVector {
	vs := []keyVector{
		{Type: api.KeyEd25519, Material: rfc8032Seed, Message: []byte{}},
		{Type: api.KeyHMACSHA256, Material: hmacKey, Message: hmacMsg},
	}
	m, _ := GenerateKey(api.KeyECDSAP256)
	vs = append(vs, keyVector{Type: api.KeyECDSAP256, Material: m.Expose(), Message: []byte("dcaas ecdsa vector")})
	for i := range vs {
		v := &vs[i]
		k, err := NewKey(v.Type, "key_vector", 1, secret.Copy(v.Material))
		if err != nil {
			t.Fatal(err)
		}
		if v.Type == api.KeyHMACSHA256 {
			v.MAC, _ = k.MAC(v.Message)
			continue
		}
		v.Signature, _ = k.Sign(v.Message)
		v.PublicKeyPEM, _ = PublicKeyPEM(v.Type, secret.Copy(v.Material))
	}
	return vs
}

func TestKeyVectors(t *testing.T) {
	var vs []keyVector
	readVectors(t, "key_vectors.json", &vs)
	for _, v := range vs {
		t.Run(string(v.Type), func(t *testing.T) {
			k, err := NewKey(v.Type, "key_vector", 1, secret.Copy(v.Material))
			if err != nil {
				t.Fatal(err)
			}
			if v.Type == api.KeyHMACSHA256 {
				if got, _ := k.MAC(v.Message); !bytes.Equal(got, v.MAC) {
					t.Errorf("MAC = %x, want %x", got, v.MAC)
				}
				return
			}
			if ok, err := k.Verify(v.Message, v.Signature); !ok || err != nil {
				t.Errorf("Verify(vector) = %v, %v", ok, err)
			}
			if pem, _ := PublicKeyPEM(v.Type, secret.Copy(v.Material)); pem != v.PublicKeyPEM {
				t.Errorf("PublicKeyPEM = %q, want %q", pem, v.PublicKeyPEM)
			}
			if v.Type == api.KeyEd25519 { // deterministic
				if sig, _ := k.Sign(v.Message); !bytes.Equal(sig, v.Signature) {
					t.Errorf("Sign = %x, want %x", sig, v.Signature)
				}
			}
		})
	}
}

func TestKeyIndependentAnswers(t *testing.T) {
	ed, _ := NewKey(api.KeyEd25519, "k", 1, secret.Copy(rfc8032Seed))
	if sig, _ := ed.Sign(nil); !bytes.Equal(sig, rfc8032Sig) {
		t.Errorf("Ed25519 Sign(RFC 8032 test 1) = %x, want %x", sig, rfc8032Sig)
	}
	h, _ := NewKey(api.KeyHMACSHA256, "k", 1, secret.Copy(hmacKey))
	if tag, _ := h.MAC(hmacMsg); !bytes.Equal(tag, hmacTag) {
		t.Errorf("MAC = %x, want %x", tag, hmacTag)
	}
}

func TestKeyEncryptAllocs(t *testing.T) {
	k := newTestKey(t, api.KeyAES256GCM)
	pt, aad := Random(1024), []byte("aad")
	dst := make([]byte, 0, 2048)
	ct, _ := k.Encrypt(nil, pt, aad)
	// Warm the scratch pool; the race detector and GC may still empty it.
	if n := testing.AllocsPerRun(100, func() { dst, _ = k.Encrypt(dst[:0], pt, aad) }); n > 1 {
		t.Errorf("Encrypt allocs = %v, want <= 1", n)
	}
	if n := testing.AllocsPerRun(100, func() { dst, _ = k.Decrypt(dst[:0], ct, aad) }); n > 1 {
		t.Errorf("Decrypt allocs = %v, want <= 1", n)
	}
}

func BenchmarkKey(b *testing.B) {
	pt, aad := Random(1024), []byte("tenant=acme")
	dst := make([]byte, 0, 2048)
	enc := newTestKey(b, api.KeyAES256GCM)
	ct, _ := enc.Encrypt(nil, pt, aad)
	b.Run("Encrypt-1KiB", func(b *testing.B) {
		b.SetBytes(1024)
		b.ReportAllocs()
		for b.Loop() {
			dst, _ = enc.Encrypt(dst[:0], pt, aad)
		}
	})
	b.Run("Decrypt-1KiB", func(b *testing.B) {
		b.SetBytes(1024)
		b.ReportAllocs()
		for b.Loop() {
			if dst, _ = enc.Decrypt(dst[:0], ct, aad); len(dst) != 1024 {
				b.Fatal("Decrypt failed")
			}
		}
	})
	b.Run("Encrypt-1KiB-nodst", func(b *testing.B) {
		b.SetBytes(1024)
		b.ReportAllocs()
		for b.Loop() {
			_, _ = enc.Encrypt(nil, pt, aad)
		}
	})
	mac := newTestKey(b, api.KeyHMACSHA256)
	b.Run("MAC-1KiB", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = mac.MAC(pt)
		}
	})
	for _, typ := range []api.KeyType{api.KeyEd25519, api.KeyECDSAP256} {
		k := newTestKey(b, typ)
		b.Run("Sign-"+string(typ), func(b *testing.B) {
			for b.Loop() {
				_, _ = k.Sign(pt)
			}
		})
	}
}
