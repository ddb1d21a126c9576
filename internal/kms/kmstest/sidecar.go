package kmstest

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"sync"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/secret"
)

// FakeSidecar is the test's stand-in for an enrolling sidecar: an identity
// key, a CSR and an HPKE key pair, held in the test process.
type FakeSidecar struct {
	Key        *ecdsa.PrivateKey
	CSRPEM     string
	KEMKey     kcrypto.KEMPrivateKey
	KEM        api.KEM
	Enrollment api.Enrollment
}

// NewFakeSidecar makes the keys and CSR of a sidecar that wraps with kem.
func NewFakeSidecar(t testing.TB, kem api.KEM) *FakeSidecar {
	t.Helper()
	key, err := kcrypto.GenerateIdentityKey()
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(nil, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "sidecar"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	kk, err := kcrypto.GenerateKEMKey(kem)
	if err != nil {
		t.Fatal(err)
	}
	return &FakeSidecar{
		Key:    key,
		CSRPEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})),
		KEMKey: kk,
		KEM:    kem,
	}
}

// EnrollRequest is the enrollment body with token.
func (s *FakeSidecar) EnrollRequest(token string) api.EnrollRequest {
	return api.EnrollRequest{
		CSRPEM:            s.CSRPEM,
		WrappingPublicKey: api.PublicKey{KEM: s.KEM, PublicKey: s.KEMKey.PublicKey().Bytes()},
		Token:             token,
	}
}

// Enroll enrolls with token through c and records the answer.
func (s *FakeSidecar) Enroll(t testing.TB, c *Client, token string) {
	t.Helper()
	c.MustDo(t, "POST", "/v1/enrollment", s.EnrollRequest(token), &s.Enrollment)
}

// EnrolledFake is a fake sidecar (the default KEM) bound to the custodian
// dn, enrolled with a token pipe minted (a pipeline, or the custodian
// itself), and its KMS client.
func (e *Env) EnrolledFake(t testing.TB, pipe *Client, dn string) (*FakeSidecar, *Client) {
	t.Helper()
	s := NewFakeSidecar(t, kcrypto.DefaultKEM())
	s.Enroll(t, e.Anonymous(), pipe.EnrollmentToken(t, dn))
	return s, s.Client(t, e)
}

// Client returns a KMS client authenticating as the enrolled instance.
func (s *FakeSidecar) Client(t testing.TB, e *Env) *Client {
	t.Helper()
	keyPEM, err := kcrypto.MarshalPrivateKeyPEM(s.Key)
	if err != nil {
		t.Fatal(err)
	}
	return e.Client([]byte(s.Enrollment.CertPEM), keyPEM)
}

// Unwrap opens the keys of a rewrap, load or derive answer sealed to the
// sidecar's HPKE key (wrapped-key format 2) and returns them in order; the
// caller wipes them. It fills w.Keys[i].Metadata and Encryptions with what
// the batch authenticates, so tests can read them.
func (s *FakeSidecar) Unwrap(t testing.TB, w *api.WrappedKeys) []*secret.Bytes {
	t.Helper()
	return s.UnwrapWith(t, s.KEMKey, w)
}

// UnwrapWith is Unwrap with another private key (an ephemeral recipient).
func (s *FakeSidecar) UnwrapWith(t testing.TB, priv kcrypto.KEMPrivateKey, w *api.WrappedKeys) []*secret.Bytes {
	t.Helper()
	b, keys, err := kcrypto.OpenBatch(priv, s.Enrollment.InstanceID, w.Batch)
	if err != nil {
		t.Fatalf("OpenBatch = %v", err)
	}
	if len(w.Keys) != len(keys) {
		t.Fatalf("the answer lists %d keys, its batch holds %d", len(w.Keys), len(keys))
	}
	for i := range keys {
		var md api.KeyMetadata
		if err := json.Unmarshal(b.Keys[i].Metadata, &md); err != nil {
			t.Fatalf("batch key %d metadata: %v", i, err)
		}
		if md.KeyID != w.Keys[i].KeyID || md.Version != w.Keys[i].Version {
			t.Fatalf("batch key %d is %s v%d, the answer lists %s v%d", i, md.KeyID, md.Version, w.Keys[i].KeyID, w.Keys[i].Version)
		}
		w.Keys[i].Metadata, w.Keys[i].Encryptions = md, b.Keys[i].Encryptions
	}
	return keys
}

// Release rewraps ekbs to the sidecar as cust, a custodian, and returns
// the keys in order, wiped when the test ends.
func (s *FakeSidecar) Release(t testing.TB, cust *Client, ekbs [][]byte) []*secret.Bytes {
	t.Helper()
	var out api.WrappedKeys
	cust.MustDo(t, "POST", "/v1/keys/rewrap", api.RewrapRequest{EKBs: ekbs, WrappingCertPEM: s.Enrollment.WrappingCertPEM}, &out)
	keys := s.Unwrap(t, &out)
	t.Cleanup(func() {
		for _, k := range keys {
			k.Wipe()
		}
	})
	return keys
}

// SameKeys fails t at once unless got are the keys of want, in order;
// what names the moment checked (say "after the migration").
func SameKeys(t testing.TB, what string, got, want []*secret.Bytes) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d keys, want %d", what, len(got), len(want))
	}
	for i := range want {
		if !got[i].Equal(want[i]) {
			t.Fatalf("%s: key %d changed", what, i)
		}
	}
}

// NewRecipient makes an ephemeral HPKE key pair of the default KEM, as a
// sidecar does for one load request: the private key opens the answer
// (FakeSidecar.UnwrapWith) and the public key is the request's Recipient.
func NewRecipient(t testing.TB) (kcrypto.KEMPrivateKey, api.PublicKey) {
	t.Helper()
	priv, err := kcrypto.GenerateKEMKey(kcrypto.DefaultKEM())
	if err != nil {
		t.Fatal(err)
	}
	pub, err := kcrypto.MarshalKEMPublicKey(priv.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	return priv, pub
}

// Clock is a settable clock for KMS tests (expiry without sleeping).
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock starts at the current time.
func NewClock() *Clock { return &Clock{t: time.Now()} }

// Now reads the clock.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// CheckPublicKey checks that material, the private key of a signing key
// of type typ that a (fake) sidecar unwrapped, matches pubPEM, the public
// key the KMS published when it created the key. Other types pass.
func CheckPublicKey(t testing.TB, typ api.KeyType, material []byte, pubPEM string) {
	t.Helper()
	block, _ := pem.Decode([]byte(pubPEM))
	if block == nil {
		t.Fatalf("%s: no public key PEM", typ)
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	switch typ {
	case api.KeyEd25519:
		if !ed25519.NewKeyFromSeed(material).Public().(ed25519.PublicKey).Equal(pub) {
			t.Error("an unwrapped ed25519 key does not match the public key published at creation")
		}
	case api.KeyECDSAP256:
		ec, ok := pub.(*ecdsa.PublicKey)
		if !ok {
			t.Fatalf("ecdsa-p256 public key is a %T", pub)
		}
		priv, err := ecdsa.ParseRawPrivateKey(ec.Curve, material)
		if err != nil || !priv.PublicKey.Equal(pub) {
			t.Errorf("an unwrapped ecdsa-p256 key does not match the public key published at creation (%v)", err)
		}
	}
}
