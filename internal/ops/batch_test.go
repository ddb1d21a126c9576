package ops

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/dcaas/dcaas/api"
)

func TestBatch(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	msg := []byte("batch message")
	ct := f.encrypt(t, "key_aes", []byte("three"), []byte("a"))
	sig, err := f.Sign(ctx, &api.SignRequest{KeyRef: api.KeyRef{KeyID: "key_ed"}, Message: msg})
	if err != nil {
		t.Fatal(err)
	}
	tag, err := f.MAC(ctx, &api.MACRequest{KeyRef: api.KeyRef{KeyID: "key_hmac"}, Message: msg})
	if err != nil {
		t.Fatal(err)
	}
	abc := sha256.Sum256([]byte("abc"))
	isTrue := func(r api.BatchResult) bool { return r.Valid != nil && *r.Valid }
	isFalse := func(r api.BatchResult) bool { return r.Valid != nil && !*r.Valid }
	opens := func(id string, version int, pt, aad string) func(api.BatchResult) bool {
		return func(r api.BatchResult) bool {
			got, err := f.key(t, api.KeyAES256GCM, id, version).Decrypt(nil, r.Ciphertext, []byte(aad))
			return err == nil && string(got) == pt && r.KeyID == id && r.KeyVersion == version
		}
	}
	items := []struct {
		item api.BatchItem
		want api.Code                   // "": success
		ok   func(api.BatchResult) bool // checks a success
	}{
		{api.BatchItem{Op: api.OpEncrypt, KeyID: "key_aes", Plaintext: []byte("one"), AAD: []byte("a1")}, "", opens("key_aes", 2, "one", "a1")},
		{api.BatchItem{Op: api.OpDecrypt, Ciphertext: ct, AAD: []byte("a")}, "", func(r api.BatchResult) bool { return string(r.Plaintext) == "three" }},
		{api.BatchItem{Op: api.OpDecrypt, Ciphertext: ct, AAD: []byte("wrong")}, api.CodeDecryptFailed, nil},
		{api.BatchItem{Op: api.OpDecrypt, KeyID: "key_aes_b", Ciphertext: ct, AAD: []byte("a")}, api.CodeInvalidArgument, nil},
		{api.BatchItem{Op: api.OpDecrypt, Ciphertext: []byte("junk")}, api.CodeInvalidCiphertext, nil},
		{api.BatchItem{Op: api.OpEncrypt, KeyID: "key_missing", Plaintext: []byte("x")}, api.CodeNotFound, nil},
		{api.BatchItem{Op: api.OpEncrypt, Plaintext: []byte("x")}, api.CodeInvalidArgument, nil},
		{api.BatchItem{Op: api.OpSign, KeyID: "key_ed", Message: msg}, "", func(r api.BatchResult) bool { return bytes.Equal(r.Signature, sig.Signature) && r.KeyVersion == 1 }},
		{api.BatchItem{Op: api.OpVerify, KeyID: "key_ed", Message: msg, Signature: sig.Signature}, "", isTrue},
		{api.BatchItem{Op: api.OpVerify, KeyID: "key_ed", Message: msg, Signature: sig.Signature, KeyVersion: 1}, "", isTrue},
		{api.BatchItem{Op: api.OpVerify, KeyID: "key_ed", Message: []byte("other"), Signature: sig.Signature}, "", isFalse},
		{api.BatchItem{Op: api.OpVerify, KeyID: "key_ed", Message: msg, Signature: sig.Signature, KeyVersion: 5}, api.CodeNotFound, nil},
		{api.BatchItem{Op: api.OpMAC, KeyID: "key_hmac", Message: msg}, "", func(r api.BatchResult) bool { return bytes.Equal(r.MAC, tag.MAC) && r.KeyVersion == 1 }},
		{api.BatchItem{Op: api.OpMACVerify, KeyID: "key_hmac", Message: msg, MAC: tag.MAC}, "", isTrue},
		{api.BatchItem{Op: api.OpMACVerify, KeyID: "key_hmac", Message: msg, MAC: tag.MAC[:31]}, "", isFalse},
		{api.BatchItem{Op: api.OpMAC, KeyID: "key_aes", Message: msg}, api.CodeWrongKeyType, nil},
		{api.BatchItem{Op: api.OpSign, KeyID: "key_verify_only", Message: msg}, api.CodePolicyDenied, nil},
		{api.BatchItem{Op: api.OpHash, Algorithm: "sha-256", Message: []byte("abc")}, "", func(r api.BatchResult) bool { return bytes.Equal(r.Digest, abc[:]) }},
		{api.BatchItem{Op: api.OpHash, Algorithm: "md5", Message: []byte("abc")}, api.CodeInvalidArgument, nil},
		{api.BatchItem{Op: api.OpRandom, Bytes: 16}, "", func(r api.BatchResult) bool { return len(r.Random) == 16 }},
		{api.BatchItem{Op: api.OpRandom, Bytes: MaxRandom + 1}, api.CodeInvalidArgument, nil},
		{api.BatchItem{Op: api.OpTranslate, Ciphertext: ct, AAD: []byte("a"), ToKeyID: "key_aes_b", ToAAD: []byte("b")}, "", opens("key_aes_b", 1, "three", "b")},
		{api.BatchItem{Op: api.OpTranslate, Ciphertext: ct, AAD: []byte("a")}, api.CodeInvalidArgument, nil},
		{api.BatchItem{Op: "explode"}, api.CodeInvalidArgument, nil},
		{api.BatchItem{Op: "ENCRYPT", KeyID: "key_aes"}, api.CodeInvalidArgument, nil},
		{api.BatchItem{}, api.CodeInvalidArgument, nil},
		// A resolver failure that is not an API error is hidden.
		{api.BatchItem{Op: api.OpEncrypt, KeyID: "key_broken", Plaintext: []byte("x")}, api.CodeInternal, nil},
		// Failures above stop nothing.
		{api.BatchItem{Op: api.OpEncrypt, KeyID: "key_aes", Plaintext: []byte("last")}, "", opens("key_aes", 2, "last", "")},
	}
	req := &api.BatchRequest{}
	for _, it := range items {
		req.Ops = append(req.Ops, it.item)
	}
	resp, err := f.Batch(ctx, req)
	if err != nil {
		t.Fatalf("Batch = %v", err)
	}
	if len(resp.Results) != len(items) {
		t.Fatalf("Batch returned %d results for %d ops", len(resp.Results), len(items))
	}
	for i, it := range items {
		r := resp.Results[i]
		switch {
		case it.want == "" && r.Error != nil:
			t.Errorf("op %d (%s) = %v, want success", i, it.item.Op, r.Error)
		case it.want == "" && !it.ok(r):
			t.Errorf("op %d (%s) = %+v: wrong result", i, it.item.Op, r)
		case it.want != "" && (r.Error == nil || r.Error.Code != it.want):
			t.Errorf("op %d (%s) = %+v, want error %s", i, it.item.Op, r, it.want)
		case it.want != "" && !reflectZeroBut(r):
			t.Errorf("op %d (%s) failed but carries results: %+v", i, it.item.Op, r)
		}
	}
	// The hidden error says nothing of the cause.
	for _, r := range resp.Results {
		if r.Error != nil && strings.Contains(r.Error.Message, errDisk.Error()) {
			t.Errorf("batch result leaks an internal error: %q", r.Error.Message)
		}
	}
}

// reflectZeroBut reports whether r carries nothing but its Error.
func reflectZeroBut(r api.BatchResult) bool {
	r.Error = nil
	b, _ := json.Marshal(r)
	return string(b) == "{}"
}

func TestBatchLimits(t *testing.T) {
	f := newFixture(t)
	hash := api.BatchItem{Op: api.OpHash, Algorithm: "sha-256", Message: []byte("abc")}
	enc := api.BatchItem{Op: api.OpEncrypt, KeyID: "key_aes", Plaintext: []byte("x")}
	tests := []struct {
		name string
		ops  []api.BatchItem
		want api.Code
	}{
		{"nil", nil, api.CodeInvalidArgument},
		{"empty", []api.BatchItem{}, api.CodeInvalidArgument},
		{"one over MaxBatch", append(slices.Repeat([]api.BatchItem{hash}, MaxBatch), enc), api.CodeTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := f.Batch(t.Context(), &api.BatchRequest{Ops: tt.ops})
			if r != nil {
				t.Fatalf("Batch = %d results, want a refusal", len(r.Results))
			}
			wantCode(t, err, tt.want)
			if f.r.callCount() != 0 || len(f.enc) != 0 {
				t.Error("a refused batch ran an operation")
			}
		})
	}
	t.Run("exactly MaxBatch", func(t *testing.T) {
		ops := slices.Repeat([]api.BatchItem{enc}, MaxBatch)
		r, err := f.Batch(t.Context(), &api.BatchRequest{Ops: ops})
		if err != nil || len(r.Results) != MaxBatch {
			t.Fatalf("Batch(MaxBatch ops) = %v", err)
		}
		for i, res := range r.Results {
			if res.Error != nil || len(res.Ciphertext) == 0 {
				t.Fatalf("op %d = %+v", i, res)
			}
		}
		if got := f.r.released.Load(); got != MaxBatch {
			t.Errorf("released %d keys, want %d", got, MaxBatch)
		}
	})
}

func TestRoutes(t *testing.T) {
	f := newFixture(t)
	want := []string{
		"POST /v1/crypto/encrypt", "POST /v1/crypto/decrypt", "POST /v1/crypto/sign", "POST /v1/crypto/verify",
		"POST /v1/crypto/mac", "POST /v1/crypto/mac/verify", "POST /v1/crypto/hash", "POST /v1/crypto/random",
		"POST /v1/crypto/translate", "POST /v1/crypto/batch",
	}
	routes := f.Routes()
	var got []string
	names := map[string]bool{}
	for _, r := range routes {
		got = append(got, r.Pattern)
		if names[r.Name] || r.Name == "" {
			t.Errorf("route name %q empty or repeated", r.Name)
		}
		names[r.Name] = true
		if r.Batch != (r.Pattern == "POST /v1/crypto/batch") {
			t.Errorf("%s: Batch = %v", r.Pattern, r.Batch)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Routes() = %v, want %v", got, want)
	}

	decodeJSON := func(body string) func(any) error {
		return func(v any) error { return json.Unmarshal([]byte(body), v) }
	}
	hash := routes[slices.Index(got, "POST /v1/crypto/hash")]
	out, err := hash.Serve(t.Context(), decodeJSON(`{"algorithm":"sha-256","message":"YWJj"}`))
	if err != nil {
		t.Fatalf("hash route = %v", err)
	}
	abc := sha256.Sum256([]byte("abc"))
	if r, ok := out.(*api.HashResponse); !ok || !bytes.Equal(r.Digest, abc[:]) {
		t.Fatalf("hash route = %#v", out)
	}
	// A decode failure is returned as it is, and runs nothing.
	bad := errors.New("bad body")
	for _, r := range routes {
		out, err := r.Serve(t.Context(), func(any) error { return bad })
		if !errors.Is(err, bad) || out != nil {
			t.Errorf("%s with a failing decode = %v, %v", r.Pattern, out, err)
		}
	}
	if f.r.callCount() != 0 {
		t.Error("a route ran after its decode failed")
	}
}
