package enclavetest

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"testing"

	"github.com/dcaas/dcaas/internal/enclave"
	"github.com/dcaas/dcaas/internal/secret"
)

// Held are the handles a caller keeps from an enclave: its identity key, a
// protected value and a blob it sealed locally. Tests take them before an
// event (Close, a memguard purge) to check what they do after it.
type Held struct {
	Signer    crypto.Signer
	Protected enclave.Protected
	// Plaintext is what Blob seals ("data key", no additional data); it
	// is wiped when the test ends.
	Plaintext *secret.Bytes
	Blob      []byte
}

// Hold takes the Held handles of e; t fails at once if e cannot give them.
func Hold(t testing.TB, e enclave.Enclave) *Held {
	t.Helper()
	ctx := t.Context()
	signer, err := e.IdentityKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p, err := e.Protect(secret.Copy([]byte("data key")))
	if err != nil {
		t.Fatal(err)
	}
	pt := secret.Copy([]byte("data key"))
	t.Cleanup(pt.Wipe)
	blob, err := e.LocalSeal(ctx, pt, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &Held{Signer: signer, Protected: p, Plaintext: pt, Blob: blob}
}

// Sign signs a digest with the held identity key and returns its error.
func (h *Held) Sign() error {
	digest := sha256.Sum256([]byte("x"))
	_, err := h.Signer.Sign(rand.Reader, digest[:], crypto.SHA256)
	return err
}
