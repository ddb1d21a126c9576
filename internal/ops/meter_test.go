package ops

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
)

// meteredResolver wraps the fake resolver: every Releaser it returns also
// charges a shared budget of operations and warns.
type meteredResolver struct {
	*fakeResolver
	mu      sync.Mutex
	budget  int      // operations left
	charged []string // "key_id n" per accepted charge
	warn    string
}

type meteredRelease struct {
	Releaser
	m     *meteredResolver
	keyID string
}

func (r meteredRelease) Charge(n int) error {
	r.m.mu.Lock()
	defer r.m.mu.Unlock()
	if r.m.budget == 0 {
		return api.Errorf(api.CodeUsageLimitExceeded, "Key %s has made its last encryption; rotate it.", r.keyID)
	}
	r.m.budget--
	r.m.charged = append(r.m.charged, r.keyID+" "+strconv.Itoa(n))
	return nil
}

func (r meteredRelease) Warning() string { return r.m.warn }

func (m *meteredResolver) Acquire(ctx context.Context, ref api.KeyRef, version int, action api.Action) (*kcrypto.Key, Releaser, error) {
	k, rel, err := m.fakeResolver.Acquire(ctx, ref, version, action)
	if err != nil {
		return nil, nil, err
	}
	return k, meteredRelease{Releaser: rel, m: m, keyID: k.KeyID()}, nil
}

// TestMeterAndWarner: the engine charges encrypt, sign and MAC (with the
// input size) before doing them, performs nothing a Meter refuses, never
// charges decryption or verification, and passes a Warner's warning on.
func TestMeterAndWarner(t *testing.T) {
	f := newFixture(t)
	m := &meteredResolver{fakeResolver: f.r, budget: 4, warn: "Rotation of this key is due."}
	e := &Engine{R: m}
	ctx := t.Context()
	aad := []byte("aad")

	ct, err := e.Encrypt(ctx, &api.EncryptRequest{KeyRef: api.KeyRef{KeyID: "key_aes"}, Plaintext: []byte("hello"), AAD: aad})
	if err != nil {
		t.Fatalf("Encrypt = %v", err)
	}
	if ct.Warning != m.warn {
		t.Errorf("Encrypt warning = %q, want %q", ct.Warning, m.warn)
	}
	if _, err := e.Decrypt(ctx, &api.DecryptRequest{Ciphertext: ct.Ciphertext, AAD: aad}); err != nil {
		t.Fatalf("Decrypt = %v", err)
	}
	sig, err := e.Sign(ctx, &api.SignRequest{KeyRef: api.KeyRef{KeyID: "key_ed"}, Message: []byte("msg")})
	if err != nil || sig.Warning != m.warn {
		t.Fatalf("Sign = %+v, %v; want a signature with the warning", sig, err)
	}
	if v, err := e.Verify(ctx, &api.VerifyRequest{KeyRef: api.KeyRef{KeyID: "key_ed"}, Message: []byte("msg"), Signature: sig.Signature}); err != nil || !v.Valid {
		t.Fatalf("Verify = %+v, %v", v, err)
	}
	mac, err := e.MAC(ctx, &api.MACRequest{KeyRef: api.KeyRef{KeyID: "key_hmac"}, Message: []byte("twelve bytes")})
	if err != nil || mac.Warning != m.warn {
		t.Fatalf("MAC = %+v, %v; want a tag with the warning", mac, err)
	}
	if v, err := e.MACVerify(ctx, &api.MACVerifyRequest{KeyRef: api.KeyRef{KeyID: "key_hmac"}, Message: []byte("twelve bytes"), MAC: mac.MAC}); err != nil || !v.Valid {
		t.Fatalf("MACVerify = %+v, %v", v, err)
	}
	// Translate charges the target's encryption only.
	tr, err := e.Translate(ctx, &api.TranslateRequest{Ciphertext: ct.Ciphertext, AAD: aad, ToKeyID: "key_aes_b"})
	if err != nil || tr.Warning != m.warn {
		t.Fatalf("Translate = %+v, %v", tr, err)
	}
	want := []string{"key_aes 5", "key_ed 3", "key_hmac 12", "key_aes_b 5"}
	if len(m.charged) != len(want) {
		t.Fatalf("charged %q, want %q", m.charged, want)
	}
	for i := range want {
		if m.charged[i] != want[i] {
			t.Errorf("charge %d = %q, want %q", i, m.charged[i], want[i])
		}
	}

	// The budget is spent: every charged operation is refused, in a batch
	// too, and decryption still works.
	_, err = e.Encrypt(ctx, &api.EncryptRequest{KeyRef: api.KeyRef{KeyID: "key_aes"}, Plaintext: []byte("x")})
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Code != api.CodeUsageLimitExceeded {
		t.Fatalf("Encrypt past the budget = %v, want %s", err, api.CodeUsageLimitExceeded)
	}
	if _, err := e.Sign(ctx, &api.SignRequest{KeyRef: api.KeyRef{KeyID: "key_ed"}, Message: []byte("m")}); api.CodeOf(err) != api.CodeUsageLimitExceeded {
		t.Errorf("Sign past the budget = %v", err)
	}
	if _, err := e.MAC(ctx, &api.MACRequest{KeyRef: api.KeyRef{KeyID: "key_hmac"}, Message: []byte("m")}); api.CodeOf(err) != api.CodeUsageLimitExceeded {
		t.Errorf("MAC past the budget = %v", err)
	}
	b, err := e.Batch(ctx, &api.BatchRequest{Ops: []api.BatchItem{
		{Op: api.OpEncrypt, KeyID: "key_aes", Plaintext: []byte("x")},
		{Op: api.OpDecrypt, Ciphertext: ct.Ciphertext, AAD: aad},
	}})
	if err != nil {
		t.Fatalf("Batch = %v", err)
	}
	if b.Results[0].Error == nil || b.Results[0].Error.Code != api.CodeUsageLimitExceeded || b.Results[0].Ciphertext != nil {
		t.Errorf("batch encrypt past the budget = %+v", b.Results[0])
	}
	if b.Results[1].Error != nil || string(b.Results[1].Plaintext) != "hello" {
		t.Errorf("batch decrypt = %+v, want the plaintext", b.Results[1])
	}
	m.budget = 1
	b, err = e.Batch(ctx, &api.BatchRequest{Ops: []api.BatchItem{{Op: api.OpEncrypt, KeyID: "key_aes", Plaintext: []byte("x")}}})
	if err != nil || b.Results[0].Error != nil || b.Results[0].Warning != m.warn {
		t.Errorf("batch encrypt = %+v, %v; want a ciphertext with the warning", b, err)
	}
}
