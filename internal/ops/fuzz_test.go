package ops

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"testing"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/secret"
)

// The fuzz targets feed outside bytes to the engine. Property: no panic,
// every Acquire released, only API errors a client can act on, and no
// plaintext for bytes that Encrypt did not produce under the key: only the
// committed vectors (made by Encrypt under fuzzKey) open.

// fuzzKey is the material of aes-256-gcm key_fuzz v1; fuzzVectors were
// encrypted under it. Test data, not a secret.
const fuzzKey = "5cde4ded7d12d90f7b338f8ec33d6cdec7a5bd0df11e2aa8ac7080e384812e8c"

var fuzzVectors = []struct{ ct, aad, pt string }{
	{"01086b65795f66757a7a00000001cce6c984626128dc3c6721e5ee39f674e0619d7d500d8009ed60d2f7ddcf670a76", "", "hello"},
	{"01086b65795f66757a7a0000000149d62288a2ed8098a98dc0b1eee9c619c1a0bef7f75bde90d41c4145", "order-1", ""},
	{"01086b65795f66757a7a000000012f962f46e0140ce744366baf9176f7701fcb3bcdf2c9188cac65e5ba958042c9363645f40a1ba365aef75fad6972ce6633e9", "order-7", "pay 100 EUR to acct 42"},
}

// isVector reports whether ct under aad is a committed vector, and its
// plaintext.
func isVector(ct, aad []byte) ([]byte, bool) {
	for _, v := range fuzzVectors {
		if bytes.Equal(ct, mustHex(v.ct)) && string(aad) == v.aad {
			return []byte(v.pt), true
		}
	}
	return nil, false
}

// fuzzEngine is an engine over key_fuzz v1 (fuzzKey), a random key_fuzz
// v2, key_other (aes) and key_mac (hmac): a header the fuzzer rewrites
// may name any of them.
func fuzzEngine(t testing.TB) (*Engine, *fakeResolver) {
	r := newFakeResolver()
	r.add(t, api.KeyAES256GCM, "key_fuzz", 1, secret.Copy(mustHex(fuzzKey)))
	for _, k := range []struct {
		typ api.KeyType
		id  string
		v   int
	}{{api.KeyAES256GCM, "key_fuzz", 2}, {api.KeyAES256GCM, "key_other", 1}, {api.KeyHMACSHA256, "key_mac", 1}, {api.KeyEd25519, "key_ed", 1}} {
		m, err := kcrypto.GenerateKey(k.typ)
		if err != nil {
			t.Fatal(err)
		}
		r.add(t, k.typ, k.id, k.v, m)
		m.Wipe()
	}
	return &Engine{R: r}, r
}

func TestFuzzVectors(t *testing.T) {
	e, r := fuzzEngine(t)
	for _, v := range fuzzVectors {
		got, err := e.Decrypt(t.Context(), &api.DecryptRequest{Ciphertext: mustHex(v.ct), AAD: []byte(v.aad)})
		if err != nil || string(got.Plaintext) != v.pt {
			t.Errorf("Decrypt(vector %q) = %v, %v", v.pt, got, err)
		}
	}
	if err := r.balanced(); err != nil {
		t.Error(err)
	}
}

// clientCodes are the errors an outside ciphertext may get.
var clientCodes = map[api.Code]bool{
	api.CodeInvalidCiphertext: true, api.CodeDecryptFailed: true, api.CodeNotFound: true,
	api.CodeWrongKeyType: true, api.CodeInvalidArgument: true, api.CodePolicyDenied: true, api.CodeTooLarge: true,
}

func FuzzDecrypt(f *testing.F) {
	for _, v := range fuzzVectors {
		ct := mustHex(v.ct)
		f.Add(ct, []byte(v.aad), "")
		f.Add(ct, []byte(v.aad), "key_fuzz")
		f.Add(ct[:len(ct)-1], []byte(v.aad), "")
		f.Add(rehead(ct, "key_other", 1), []byte(v.aad), "")
	}
	e, r := fuzzEngine(f)
	f.Fuzz(func(t *testing.T, ct, aad []byte, keyID string) {
		resp, err := e.Decrypt(t.Context(), &api.DecryptRequest{KeyRef: api.KeyRef{KeyID: keyID}, Ciphertext: ct, AAD: aad})
		if err := r.balanced(); err != nil {
			t.Fatal(err)
		}
		if err == nil {
			want, ok := isVector(ct, aad)
			if !ok {
				t.Fatalf("Decrypt opened bytes Encrypt did not produce: %x", ct)
			}
			if !bytes.Equal(resp.Plaintext, want) {
				t.Fatalf("Decrypt(vector) = %q, want %q", resp.Plaintext, want)
			}
			return
		}
		if resp != nil {
			t.Fatalf("Decrypt returned both %v and %+v", err, resp)
		}
		if c := api.CodeOf(err); !clientCodes[c] {
			t.Fatalf("Decrypt = %v (code %s), want a client error", err, c)
		}
	})
}

// FuzzBatchItem: one batch item from arbitrary JSON, followed by a fixed
// one that must still run.
func FuzzBatchItem(f *testing.F) {
	for _, v := range fuzzVectors {
		for _, op := range []string{api.OpDecrypt, api.OpTranslate} {
			b, _ := json.Marshal(api.BatchItem{Op: op, Ciphertext: mustHex(v.ct), AAD: []byte(v.aad), ToKeyID: "key_other"})
			f.Add(b)
		}
	}
	for _, it := range []api.BatchItem{
		{Op: api.OpEncrypt, KeyID: "key_fuzz", Plaintext: []byte("x")},
		{Op: api.OpSign, KeyID: "key_ed", Message: []byte("m")},
		{Op: api.OpVerify, KeyID: "key_ed", Message: []byte("m"), Signature: make([]byte, 64)},
		{Op: api.OpMAC, KeyID: "key_mac", Message: []byte("m")},
		{Op: api.OpMACVerify, KeyID: "key_mac", Message: []byte("m"), MAC: make([]byte, 32), KeyVersion: 1},
		{Op: api.OpHash, Algorithm: "sha3-256", Message: []byte("m")},
		{Op: api.OpRandom, Bytes: 12},
		{Op: "explode"},
	} {
		b, _ := json.Marshal(it)
		f.Add(b)
	}
	e, r := fuzzEngine(f)
	last := api.BatchItem{Op: api.OpHash, Algorithm: "sha-256", Message: []byte("abc")}
	abc := sha256.Sum256([]byte("abc"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var it api.BatchItem
		if json.Unmarshal(data, &it) != nil {
			return
		}
		resp, err := e.Batch(t.Context(), &api.BatchRequest{Ops: []api.BatchItem{it, last}})
		if err != nil || len(resp.Results) != 2 {
			t.Fatalf("Batch = %v, %v; want 2 results", resp, err)
		}
		if err := r.balanced(); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(resp.Results[1].Digest, abc[:]) {
			t.Fatalf("the item after %q did not run: %+v", it.Op, resp.Results[1])
		}
		res := resp.Results[0]
		if res.Error != nil {
			if !clientCodes[res.Error.Code] {
				t.Fatalf("op %q = %v, want a client error", it.Op, res.Error)
			}
			return
		}
		switch it.Op {
		case api.OpDecrypt:
			if want, ok := isVector(it.Ciphertext, it.AAD); !ok || !bytes.Equal(res.Plaintext, want) {
				t.Fatalf("decrypt opened bytes Encrypt did not produce: %x", it.Ciphertext)
			}
		case api.OpTranslate:
			if _, ok := isVector(it.Ciphertext, it.AAD); !ok {
				t.Fatalf("translate opened bytes Encrypt did not produce: %x", it.Ciphertext)
			}
		}
	})
}
