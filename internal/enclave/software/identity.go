package software

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"io"
)

// identityKey is the sidecar's ECDSA P-256 identity key: a crypto.Signer
// whose private scalar stays sealed except during Sign.
type identityKey struct {
	redacted
	pub  *ecdsa.PublicKey
	priv *sealed // the raw 32-byte scalar
}

// IdentityKey returns the identity key (ECDSA P-256), creating it on the
// first call; every call returns the same key. The Signer's Public is an
// *ecdsa.PublicKey; it works as the PrivateKey of a tls.Certificate. Each
// Sign opens the scalar into a LockedBuffer, rebuilds an ecdsa.PrivateKey
// from it, signs and destroys the buffer; the rebuilt ecdsa.PrivateKey is
// garbage Go cannot wipe. After Close, Sign fails with enclave.ErrClosed.
func (e *Enclave) IdentityKey(ctx context.Context) (crypto.Signer, error) {
	k, err := made(e, ctx, func() *identityKey { return e.identity }, e.newIdentityLocked, func(k *identityKey) { e.identity = k })
	if err != nil {
		return nil, err
	}
	return k, nil
}

// made returns the key get reads, making it with make (and keeping it with
// set) the first time; get, make and set run under e.mu, while e is open.
func made[K comparable](e *Enclave, ctx context.Context, get func() K, make func() (K, error), set func(K)) (K, error) {
	var zero K
	e.mu.RLock()
	k, err := get(), e.ready(ctx)
	e.mu.RUnlock()
	if err != nil {
		return zero, err
	}
	if k != zero {
		return k, nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.ready(ctx); err != nil {
		return zero, err
	}
	if k := get(); k != zero {
		return k, nil
	}
	if k, err = make(); err != nil {
		return zero, err
	}
	set(k)
	return k, nil
}

func (e *Enclave) newIdentityLocked() (*identityKey, error) {
	sk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, wrapf("generating identity key: %w", err)
	}
	pubBytes, err := sk.PublicKey.Bytes()
	if err != nil {
		return nil, wrapf("encoding identity key: %w", err)
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), pubBytes)
	if err != nil {
		return nil, wrapf("copying identity public key: %w", err)
	}
	raw, err := sk.Bytes()
	if err != nil {
		return nil, wrapf("encoding identity key: %w", err)
	}
	priv, err := e.sealLocked(raw) // wipes raw
	if err != nil {
		return nil, err
	}
	return &identityKey{pub: pub, priv: priv}, nil
}

// Public returns the *ecdsa.PublicKey.
func (k *identityKey) Public() crypto.PublicKey { return k.pub }

// Sign signs digest (already hashed, as opts says) with the sealed key.
func (k *identityKey) Sign(random io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	var sig []byte
	err := k.priv.with(func(raw []byte) error {
		sk, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), raw)
		if err != nil {
			return wrapf("identity key: %w", err)
		}
		sig, err = sk.Sign(random, digest, opts)
		return err
	})
	return sig, err
}
