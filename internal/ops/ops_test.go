package ops

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/format"
	"github.com/dcaas/dcaas/internal/secret"
)

// fixture is an engine over a fake resolver holding one key of each type
// and a few keys with restricted policies.
type fixture struct {
	*Engine
	r   *fakeResolver
	mat map[string]*secret.Bytes // "key_id v1" → material, for direct checks
	enc []encryption             // what OnEncrypt was told
}

type encryption struct {
	KeyID      string
	Version, N int
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{r: newFakeResolver(), mat: map[string]*secret.Bytes{}}
	f.Engine = &Engine{R: f.r, OnEncrypt: func(id string, v, n int) { f.enc = append(f.enc, encryption{id, v, n}) }}
	keys := []struct {
		typ     api.KeyType
		id      string
		version int
		allow   []api.Action
	}{
		{api.KeyAES256GCM, "key_aes", 1, nil},
		{api.KeyAES256GCM, "key_aes", 2, nil},
		{api.KeyAES256GCM, "key_aes_b", 1, nil},
		{api.KeyHMACSHA256, "key_hmac", 1, nil},
		{api.KeyEd25519, "key_ed", 1, nil},
		{api.KeyECDSAP256, "key_ec", 1, nil},
		{api.KeyAES256GCM, "key_enc_only", 1, []api.Action{api.ActionEncrypt}},
		{api.KeyAES256GCM, "key_dec_only", 1, []api.Action{api.ActionDecrypt}},
		{api.KeyEd25519, "key_verify_only", 1, []api.Action{api.ActionVerify}},
		{api.KeyHMACSHA256, "key_mac_none", 1, []api.Action{api.ActionSign}},
	}
	for _, k := range keys {
		m, err := kcrypto.GenerateKey(k.typ)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(m.Wipe)
		f.mat[fmt.Sprintf("%s v%d", k.id, k.version)] = m
		f.r.add(t, k.typ, k.id, k.version, m, k.allow...)
	}
	f.r.alias["key_alias"] = "key_aes_b"
	f.r.broken["key_broken"] = true
	t.Cleanup(func() {
		if err := f.r.balanced(); err != nil {
			t.Errorf("resolver: %v", err)
		}
	})
	return f
}

// key returns a handle built from the fixture's material, independent of
// the resolver's.
func (f *fixture) key(t testing.TB, typ api.KeyType, id string, version int) *kcrypto.Key {
	t.Helper()
	k, err := kcrypto.NewKey(typ, id, uint32(version), f.mat[fmt.Sprintf("%s v%d", id, version)])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Wipe)
	return k
}

// encrypt encrypts with the engine and fails the test on error.
func (f *fixture) encrypt(t testing.TB, keyID string, pt, aad []byte) []byte {
	t.Helper()
	r, err := f.Encrypt(t.Context(), &api.EncryptRequest{KeyRef: api.KeyRef{KeyID: keyID}, Plaintext: pt, AAD: aad})
	if err != nil {
		t.Fatalf("Encrypt(%s) = %v", keyID, err)
	}
	return r.Ciphertext
}

func wantCode(t testing.TB, err error, want api.Code) {
	t.Helper()
	var e *api.Error
	if !errors.As(err, &e) || e.Code != want {
		t.Fatalf("error = %v, want API code %s", err, want)
	}
}

// rehead returns ct with its header rewritten to name keyID and version,
// the sealed part unchanged. ct must parse.
func rehead(ct []byte, keyID string, version uint32) []byte {
	c, err := format.ParseCiphertext(bytes.Clone(ct))
	if err != nil {
		panic(err)
	}
	c.KeyID, c.KeyVersion = keyID, version
	return c.Marshal()
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func TestEncryptDecrypt(t *testing.T) {
	tests := []struct {
		name      string
		plaintext []byte
		aad       []byte
		decKeyID  string // key_id in the decrypt request ("": read from the ciphertext)
	}{
		{"no aad", []byte("hello"), nil, ""},
		{"aad", []byte("hello"), []byte("order-1"), ""},
		{"empty plaintext", []byte{}, []byte("order-1"), ""},
		{"nil plaintext", nil, nil, ""},
		{"key_id agrees with the header", []byte("hello"), []byte("x"), "key_aes"},
		{"64 KiB", bytes.Repeat([]byte{0xa5}, 64<<10), []byte("big"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			ctx := t.Context()
			enc, err := f.Encrypt(ctx, &api.EncryptRequest{KeyRef: api.KeyRef{KeyID: "key_aes"}, Plaintext: tt.plaintext, AAD: tt.aad})
			if err != nil {
				t.Fatalf("Encrypt = %v", err)
			}
			if enc.KeyID != "key_aes" || enc.KeyVersion != 2 {
				t.Errorf("Encrypt = %s v%d, want key_aes v2 (the current version)", enc.KeyID, enc.KeyVersion)
			}
			if id, v, err := format.PeekCiphertextKey(enc.Ciphertext); err != nil || id != "key_aes" || v != 2 {
				t.Errorf("ciphertext header = %s v%d, %v; want key_aes v2", id, v, err)
			}
			if c, _ := f.r.lastCall(); c != (call{"key_aes", 0, api.ActionEncrypt}) {
				t.Errorf("Encrypt acquired %+v, want key_aes, version 0, encrypt", c)
			}
			if len(f.enc) != 1 || f.enc[0] != (encryption{"key_aes", 2, len(tt.plaintext)}) {
				t.Errorf("OnEncrypt saw %+v", f.enc)
			}
			// A key built apart from the engine opens it: the output is a
			// plain dcaas ciphertext of that key.
			if pt, err := f.key(t, api.KeyAES256GCM, "key_aes", 2).Decrypt(nil, enc.Ciphertext, tt.aad); err != nil || !bytes.Equal(pt, tt.plaintext) {
				t.Errorf("direct Decrypt = %q, %v", pt, err)
			}
			dec, err := f.Decrypt(ctx, &api.DecryptRequest{KeyRef: api.KeyRef{KeyID: tt.decKeyID}, Ciphertext: enc.Ciphertext, AAD: tt.aad})
			if err != nil {
				t.Fatalf("Decrypt = %v", err)
			}
			if !bytes.Equal(dec.Plaintext, tt.plaintext) || dec.Plaintext == nil {
				t.Errorf("Decrypt = %q, want %q (non-nil)", dec.Plaintext, tt.plaintext)
			}
			if c, _ := f.r.lastCall(); c != (call{"key_aes", 2, api.ActionDecrypt}) {
				t.Errorf("Decrypt acquired %+v, want key_aes, version 2 (from the header), decrypt", c)
			}
			again := f.encrypt(t, "key_aes", tt.plaintext, tt.aad)
			if bytes.Equal(again, enc.Ciphertext) {
				t.Error("two encryptions of one plaintext are equal: nonce reuse")
			}
		})
	}
}

func TestDecryptOldVersion(t *testing.T) {
	f := newFixture(t)
	ct, err := f.key(t, api.KeyAES256GCM, "key_aes", 1).Encrypt(nil, []byte("v1 data"), nil)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := f.Decrypt(t.Context(), &api.DecryptRequest{Ciphertext: ct})
	if err != nil || string(dec.Plaintext) != "v1 data" {
		t.Fatalf("Decrypt(v1 ciphertext) = %v, %v", dec, err)
	}
	if c, _ := f.r.lastCall(); c.Version != 1 {
		t.Errorf("Decrypt acquired version %d, want 1", c.Version)
	}
}

func TestDecryptRefusals(t *testing.T) {
	f := newFixture(t)
	pt, aad := []byte("hello world"), []byte("order-1")
	ct := f.encrypt(t, "key_aes", pt, aad) // key_aes v2
	noAAD := f.encrypt(t, "key_aes", pt, nil)
	encOnly := f.encrypt(t, "key_enc_only", pt, aad)
	hl := 2 + len("key_aes") + 4
	flip := func(i int) func([]byte) []byte {
		return func(b []byte) []byte {
			b = bytes.Clone(b)
			b[i] ^= 0x01
			return b
		}
	}
	same := func(b []byte) []byte { return b }
	tests := []struct {
		name   string
		ct     func([]byte) []byte
		aad    []byte
		keyID  string
		want   api.Code
		noCall bool // refused before any key is acquired
	}{
		{"wrong aad", same, []byte("order-2"), "", api.CodeDecryptFailed, false},
		{"missing aad", same, nil, "", api.CodeDecryptFailed, false},
		{"aad where there was none", func([]byte) []byte { return noAAD }, aad, "", api.CodeDecryptFailed, false},
		{"flipped nonce byte", flip(hl), aad, "", api.CodeDecryptFailed, false},
		{"flipped body byte", flip(hl + 12 + 3), aad, "", api.CodeDecryptFailed, false},
		{"flipped tag byte", flip(len(ct) - 1), aad, "", api.CodeDecryptFailed, false},
		{"flipped header version byte of key", flip(hl - 1), aad, "", api.CodeNotFound, false},
		{"truncated tag", func(b []byte) []byte { return b[:len(b)-1] }, aad, "", api.CodeDecryptFailed, false},
		{"tag only", func(b []byte) []byte { return append(b[:hl+12:hl+12], b[len(b)-16:]...) }, aad, "", api.CodeDecryptFailed, false},
		{"extra byte", func(b []byte) []byte { return append(bytes.Clone(b), 0) }, aad, "", api.CodeDecryptFailed, false},
		{"shorter than nonce and tag", func(b []byte) []byte { return b[:hl+27] }, aad, "", api.CodeInvalidCiphertext, true},
		{"header only", func(b []byte) []byte { return b[:hl] }, aad, "", api.CodeInvalidCiphertext, true},
		{"not a ciphertext", func([]byte) []byte { return []byte("hello") }, nil, "", api.CodeInvalidCiphertext, true},
		{"empty", func([]byte) []byte { return []byte{} }, nil, "", api.CodeInvalidCiphertext, true},
		{"nil", func([]byte) []byte { return nil }, nil, "", api.CodeInvalidCiphertext, true},
		{"unknown format version", func(b []byte) []byte { b = bytes.Clone(b); b[0] = 2; return b }, aad, "", api.CodeInvalidCiphertext, true},
		{"key id length 0", func(b []byte) []byte { b = bytes.Clone(b); b[1] = 0; return b }, aad, "", api.CodeInvalidCiphertext, true},
		{"key version 0", func(b []byte) []byte { return append(append(bytes.Clone(b[:hl-4]), 0, 0, 0, 0), b[hl:]...) }, aad, "", api.CodeInvalidCiphertext, true},
		{"request names another key than the header", same, aad, "key_aes_b", api.CodeInvalidArgument, true},
		{"header swapped to key B", func(b []byte) []byte { return rehead(b, "key_aes_b", 1) }, aad, "", api.CodeDecryptFailed, false},
		{"header swapped to key B, request agrees", func(b []byte) []byte { return rehead(b, "key_aes_b", 1) }, aad, "key_aes_b", api.CodeDecryptFailed, false},
		{"header swapped to version 1", func(b []byte) []byte { return rehead(b, "key_aes", 1) }, aad, "", api.CodeDecryptFailed, false},
		{"header swapped to an unloaded version", func(b []byte) []byte { return rehead(b, "key_aes", 9) }, aad, "", api.CodeNotFound, false},
		{"header swapped to an unknown key", func(b []byte) []byte { return rehead(b, "key_nope", 2) }, aad, "", api.CodeNotFound, false},
		{"header swapped to an HMAC key", func(b []byte) []byte { return rehead(b, "key_hmac", 1) }, aad, "", api.CodeWrongKeyType, false},
		{"header names a key the resolver mixes up", func(b []byte) []byte { return rehead(b, "key_alias", 1) }, aad, "", api.CodeDecryptFailed, false},
		{"policy allows encrypt only", func([]byte) []byte { return encOnly }, aad, "", api.CodePolicyDenied, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.ct(ct)
			before := f.r.callCount()
			resp, err := f.Decrypt(t.Context(), &api.DecryptRequest{KeyRef: api.KeyRef{KeyID: tt.keyID}, Ciphertext: in, AAD: tt.aad})
			if resp != nil {
				t.Fatalf("Decrypt = %q, want no plaintext", resp.Plaintext)
			}
			wantCode(t, err, tt.want)
			if called := f.r.callCount() > before; tt.noCall && called {
				t.Errorf("a key was acquired for a request refused up front")
			}
		})
	}
}

func TestDecryptResolverError(t *testing.T) {
	f := newFixture(t)
	ct := rehead(f.encrypt(t, "key_aes", []byte("x"), nil), "key_broken", 1)
	_, err := f.Decrypt(t.Context(), &api.DecryptRequest{Ciphertext: ct})
	if !errors.Is(err, errDisk) {
		t.Fatalf("Decrypt = %v, want the resolver's error", err)
	}
}

func TestSignVerify(t *testing.T) {
	msg := []byte("transfer 100 EUR")
	tests := []struct {
		typ        api.KeyType
		keyID      string
		checkAlone func(t *testing.T, m *secret.Bytes, sig []byte) // verify with the standard library alone
	}{
		{api.KeyEd25519, "key_ed", func(t *testing.T, m *secret.Bytes, sig []byte) {
			priv := ed25519.NewKeyFromSeed(m.Expose())
			if !ed25519.Verify(priv.Public().(ed25519.PublicKey), msg, sig) {
				t.Error("crypto/ed25519 rejects the signature")
			}
			if want := ed25519.Sign(priv, msg); !bytes.Equal(sig, want) {
				t.Errorf("signature = %x, want ed25519.Sign's %x", sig, want)
			}
		}},
		{api.KeyECDSAP256, "key_ec", func(t *testing.T, m *secret.Bytes, sig []byte) {
			priv, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), m.Expose())
			if err != nil {
				t.Fatal(err)
			}
			d := sha256.Sum256(msg)
			if !ecdsa.VerifyASN1(&priv.PublicKey, d[:], sig) {
				t.Error("crypto/ecdsa rejects the signature (want ASN.1 DER over SHA-256)")
			}
		}},
	}
	for _, tt := range tests {
		t.Run(string(tt.typ), func(t *testing.T) {
			f := newFixture(t)
			ctx := t.Context()
			ref := api.KeyRef{KeyID: tt.keyID}
			s, err := f.Sign(ctx, &api.SignRequest{KeyRef: ref, Message: msg})
			if err != nil {
				t.Fatalf("Sign = %v", err)
			}
			if s.KeyVersion != 1 {
				t.Errorf("Sign key_version = %d, want 1", s.KeyVersion)
			}
			if c, _ := f.r.lastCall(); c != (call{tt.keyID, 0, api.ActionSign}) {
				t.Errorf("Sign acquired %+v", c)
			}
			tt.checkAlone(t, f.mat[tt.keyID+" v1"], s.Signature)

			bad := bytes.Clone(s.Signature)
			bad[len(bad)/2] ^= 0x10
			for _, v := range []struct {
				name    string
				msg     []byte
				sig     []byte
				version int
				want    bool
			}{
				{"valid", msg, s.Signature, 0, true},
				{"valid, explicit version", msg, s.Signature, 1, true},
				{"other message", []byte("transfer 900 EUR"), s.Signature, 0, false},
				{"modified signature", msg, bad, 0, false},
				{"truncated signature", msg, s.Signature[:len(s.Signature)-1], 0, false},
				{"empty signature", msg, nil, 0, false},
			} {
				r, err := f.Verify(ctx, &api.VerifyRequest{KeyRef: ref, Message: v.msg, Signature: v.sig, KeyVersion: v.version})
				if err != nil || r.Valid != v.want {
					t.Errorf("Verify(%s) = %v, %v; want %v", v.name, r, err, v.want)
				}
				if c, _ := f.r.lastCall(); c != (call{tt.keyID, v.version, api.ActionVerify}) {
					t.Errorf("Verify(%s) acquired %+v", v.name, c)
				}
			}
			_, err = f.Verify(ctx, &api.VerifyRequest{KeyRef: ref, Message: msg, Signature: s.Signature, KeyVersion: 7})
			wantCode(t, err, api.CodeNotFound)
		})
	}
}

func TestMAC(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	ref := api.KeyRef{KeyID: "key_hmac"}
	msg := []byte("settlement batch 17")
	r, err := f.MAC(ctx, &api.MACRequest{KeyRef: ref, Message: msg})
	if err != nil {
		t.Fatalf("MAC = %v", err)
	}
	h := hmac.New(sha256.New, f.mat["key_hmac v1"].Expose())
	h.Write(msg)
	if want := h.Sum(nil); !bytes.Equal(r.MAC, want) {
		t.Fatalf("MAC = %x, want crypto/hmac's %x", r.MAC, want)
	}
	if r.KeyVersion != 1 {
		t.Errorf("MAC key_version = %d, want 1", r.KeyVersion)
	}
	if c, _ := f.r.lastCall(); c != (call{"key_hmac", 0, api.ActionMAC}) {
		t.Errorf("MAC acquired %+v", c)
	}
	bad := bytes.Clone(r.MAC)
	bad[0] ^= 1
	for _, v := range []struct {
		name    string
		msg     []byte
		tag     []byte
		version int
		want    bool
	}{
		{"valid", msg, r.MAC, 0, true},
		{"valid, explicit version", msg, r.MAC, 1, true},
		{"other message", []byte("settlement batch 18"), r.MAC, 0, false},
		{"modified tag", msg, bad, 0, false},
		{"truncated tag", msg, r.MAC[:16], 0, false},
		{"empty tag", msg, nil, 0, false},
	} {
		t.Run(v.name, func(t *testing.T) {
			got, err := f.MACVerify(ctx, &api.MACVerifyRequest{KeyRef: ref, Message: v.msg, MAC: v.tag, KeyVersion: v.version})
			if err != nil || got.Valid != v.want {
				t.Fatalf("MACVerify = %v, %v; want %v", got, err, v.want)
			}
			// MAC verification is covered by the "mac" action.
			if c, _ := f.r.lastCall(); c != (call{"key_hmac", v.version, api.ActionMAC}) {
				t.Errorf("MACVerify acquired %+v", c)
			}
		})
	}
}

// keyOps runs each keyed operation with keyID, for the refusal tables.
var keyOps = []struct {
	name string
	run  func(f *fixture, t *testing.T, ref api.KeyRef) (any, error)
}{
	{"encrypt", func(f *fixture, t *testing.T, ref api.KeyRef) (any, error) {
		return f.Encrypt(t.Context(), &api.EncryptRequest{KeyRef: ref, Plaintext: []byte("x")})
	}},
	{"sign", func(f *fixture, t *testing.T, ref api.KeyRef) (any, error) {
		return f.Sign(t.Context(), &api.SignRequest{KeyRef: ref, Message: []byte("x")})
	}},
	{"verify", func(f *fixture, t *testing.T, ref api.KeyRef) (any, error) {
		return f.Verify(t.Context(), &api.VerifyRequest{KeyRef: ref, Message: []byte("x"), Signature: make([]byte, 64)})
	}},
	{"mac", func(f *fixture, t *testing.T, ref api.KeyRef) (any, error) {
		return f.MAC(t.Context(), &api.MACRequest{KeyRef: ref, Message: []byte("x")})
	}},
	{"mac/verify", func(f *fixture, t *testing.T, ref api.KeyRef) (any, error) {
		return f.MACVerify(t.Context(), &api.MACVerifyRequest{KeyRef: ref, Message: []byte("x"), MAC: make([]byte, 32)})
	}},
}

func TestKeyedRefusals(t *testing.T) {
	// Which key each operation works with; every other implemented type is
	// the wrong type.
	works := map[string][]string{
		"encrypt":    {"key_aes"},
		"sign":       {"key_ed", "key_ec"},
		"verify":     {"key_ed", "key_ec"},
		"mac":        {"key_hmac"},
		"mac/verify": {"key_hmac"},
	}
	denied := map[string]string{ // a key whose policy lacks the operation's action
		"encrypt":    "key_dec_only",
		"sign":       "key_verify_only",
		"verify":     "key_mac_none",
		"mac":        "key_mac_none",
		"mac/verify": "key_mac_none",
	}
	for _, op := range keyOps {
		t.Run(op.name, func(t *testing.T) {
			f := newFixture(t)
			check := func(name string, ref api.KeyRef, want api.Code) {
				t.Helper()
				before := f.r.callCount()
				resp, err := op.run(f, t, ref)
				if want == "" {
					if err != nil {
						t.Errorf("%s: %v, want success", name, err)
					}
					return
				}
				if err == nil {
					t.Errorf("%s = %+v, want %s", name, resp, want)
					return
				}
				if got := api.CodeOf(err); got != want {
					t.Errorf("%s = %v, want %s", name, err, want)
				}
				if want == api.CodeInvalidArgument && f.r.callCount() != before {
					t.Errorf("%s: a key was acquired for a request without one", name)
				}
			}
			for _, id := range []string{"key_aes", "key_hmac", "key_ed", "key_ec"} {
				want := api.CodeWrongKeyType
				for _, w := range works[op.name] {
					if w == id {
						want = ""
					}
				}
				check(id, api.KeyRef{KeyID: id}, want)
			}
			check("no key", api.KeyRef{}, api.CodeInvalidArgument)
			check("unknown key", api.KeyRef{KeyID: "key_nope"}, api.CodeNotFound)
			check("policy denies", api.KeyRef{KeyID: denied[op.name]}, api.CodePolicyDenied)
			_, err := op.run(f, t, api.KeyRef{KeyID: "key_broken"})
			if !errors.Is(err, errDisk) {
				t.Errorf("resolver failure = %v, want it passed on", err)
			}
		})
	}
}

func TestHash(t *testing.T) {
	// FIPS 180-4 (SHA-2) and FIPS 202 (SHA-3) examples.
	tests := []struct {
		alg, msg, want string
	}{
		{"sha-256", "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{"sha-384", "abc", "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7"},
		{"sha-512", "abc", "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"},
		{"sha3-256", "abc", "3a985da74fe225b2045c172d6bd390bd855f086e3e9d525b46bfe24511431532"},
		{"sha-256", "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{"sha3-256", "", "a7ffc6f8bf1ed76651c14756a061d662f580ff4de43b49fa82d80a4b80f8434a"},
		{"sha-256", "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
	}
	f := newFixture(t)
	for _, tt := range tests {
		t.Run(tt.alg+"/"+tt.msg, func(t *testing.T) {
			r, err := f.Hash(t.Context(), &api.HashRequest{Algorithm: tt.alg, Message: []byte(tt.msg)})
			if err != nil {
				t.Fatalf("Hash = %v", err)
			}
			if got := hex.EncodeToString(r.Digest); got != tt.want {
				t.Fatalf("Hash(%s, %q) = %s, want %s", tt.alg, tt.msg, got, tt.want)
			}
		})
	}
	for _, alg := range []string{"", "SHA-256", "sha256", "md5", "sha-1", "sha3-512", "sha-256 "} {
		t.Run("unknown "+alg, func(t *testing.T) {
			r, err := f.Hash(t.Context(), &api.HashRequest{Algorithm: alg, Message: []byte("abc")})
			if r != nil {
				t.Fatalf("Hash(%q) = %x", alg, r.Digest)
			}
			wantCode(t, err, api.CodeInvalidArgument)
		})
	}
	if f.r.callCount() != 0 {
		t.Error("Hash acquired a key")
	}
}

func TestRandom(t *testing.T) {
	f := newFixture(t)
	for _, n := range []int{1, 2, 32, MaxRandom} {
		r, err := f.Random(t.Context(), &api.RandomRequest{Bytes: n})
		if err != nil || len(r.Random) != n {
			t.Fatalf("Random(%d) = %v, %v", n, r, err)
		}
	}
	a, _ := f.Random(t.Context(), &api.RandomRequest{Bytes: 32})
	b, _ := f.Random(t.Context(), &api.RandomRequest{Bytes: 32})
	if bytes.Equal(a.Random, b.Random) || bytes.Equal(a.Random, make([]byte, 32)) {
		t.Fatalf("Random(32) twice = %x, %x", a.Random, b.Random)
	}
	for _, n := range []int{0, -1, MaxRandom + 1, 1 << 40} {
		r, err := f.Random(t.Context(), &api.RandomRequest{Bytes: n})
		if r != nil {
			t.Fatalf("Random(%d) = %d bytes", n, len(r.Random))
		}
		wantCode(t, err, api.CodeInvalidArgument)
	}
}

func TestTranslate(t *testing.T) {
	pt, aad := []byte("card 4111"), []byte("from")
	tests := []struct {
		name        string
		from        func(f *fixture, t *testing.T) []byte // the source ciphertext
		to          string
		wantVersion int
	}{
		{"A to B", func(f *fixture, t *testing.T) []byte { return f.encrypt(t, "key_aes", pt, aad) }, "key_aes_b", 1},
		{"old version to current", func(f *fixture, t *testing.T) []byte {
			ct, err := f.key(t, api.KeyAES256GCM, "key_aes", 1).Encrypt(nil, pt, aad)
			if err != nil {
				t.Fatal(err)
			}
			return ct
		}, "key_aes", 2},
		{"to an encrypt-only key", func(f *fixture, t *testing.T) []byte { return f.encrypt(t, "key_aes", pt, aad) }, "key_enc_only", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			src := tt.from(f, t)
			f.enc = nil
			r, err := f.Translate(t.Context(), &api.TranslateRequest{Ciphertext: src, AAD: aad, ToKeyID: tt.to, ToAAD: []byte("to")})
			if err != nil {
				t.Fatalf("Translate = %v", err)
			}
			if r.KeyID != tt.to || r.KeyVersion != tt.wantVersion {
				t.Errorf("Translate = %s v%d, want %s v%d", r.KeyID, r.KeyVersion, tt.to, tt.wantVersion)
			}
			got, err := f.key(t, api.KeyAES256GCM, tt.to, tt.wantVersion).Decrypt(nil, r.Ciphertext, []byte("to"))
			if err != nil || !bytes.Equal(got, pt) {
				t.Errorf("direct Decrypt of the translation = %q, %v", got, err)
			}
			if _, err := f.key(t, api.KeyAES256GCM, tt.to, tt.wantVersion).Decrypt(nil, r.Ciphertext, aad); err == nil {
				t.Error("the translation opens under the source AAD")
			}
			if len(f.enc) != 1 || f.enc[0].KeyID != tt.to {
				t.Errorf("OnEncrypt saw %+v", f.enc)
			}
		})
	}
}

func TestTranslateRefusals(t *testing.T) {
	f := newFixture(t)
	pt, aad := []byte("card 4111"), []byte("from")
	ct := f.encrypt(t, "key_aes", pt, aad)
	tests := []struct {
		name string
		req  api.TranslateRequest
		want api.Code
	}{
		{"no to_key_id", api.TranslateRequest{Ciphertext: ct, AAD: aad}, api.CodeInvalidArgument},
		{"wrong aad", api.TranslateRequest{Ciphertext: ct, AAD: []byte("x"), ToKeyID: "key_aes_b"}, api.CodeDecryptFailed},
		{"modified ciphertext", api.TranslateRequest{Ciphertext: append(bytes.Clone(ct[:len(ct)-1]), ct[len(ct)-1]^1), AAD: aad, ToKeyID: "key_aes_b"}, api.CodeDecryptFailed},
		{"not a ciphertext", api.TranslateRequest{Ciphertext: []byte("nope"), ToKeyID: "key_aes_b"}, api.CodeInvalidCiphertext},
		{"header swapped to the target key", api.TranslateRequest{Ciphertext: rehead(ct, "key_aes_b", 1), AAD: aad, ToKeyID: "key_aes_b"}, api.CodeDecryptFailed},
		{"unknown target", api.TranslateRequest{Ciphertext: ct, AAD: aad, ToKeyID: "key_nope"}, api.CodeNotFound},
		{"target is an HMAC key", api.TranslateRequest{Ciphertext: ct, AAD: aad, ToKeyID: "key_hmac"}, api.CodeWrongKeyType},
		{"target policy denies encrypt", api.TranslateRequest{Ciphertext: ct, AAD: aad, ToKeyID: "key_dec_only"}, api.CodePolicyDenied},
		{"source policy denies decrypt", api.TranslateRequest{Ciphertext: f.encrypt(t, "key_enc_only", pt, aad), AAD: aad, ToKeyID: "key_aes"}, api.CodePolicyDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.enc = nil
			before := f.r.callCount()
			r, err := f.Translate(t.Context(), &tt.req)
			if r != nil {
				t.Fatalf("Translate = %+v, want a refusal", r)
			}
			wantCode(t, err, tt.want)
			if len(f.enc) != 0 {
				t.Errorf("a refused translation encrypted: %+v", f.enc)
			}
			if tt.want == api.CodeInvalidArgument && f.r.callCount() != before {
				t.Error("a key was acquired for a translation without a target")
			}
		})
	}
}
