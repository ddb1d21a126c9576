package tpm

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"

	"github.com/google/go-tpm/tpm2"
)

// IdentityKey returns the identity key, an ECDSA P-256 key created in the
// TPM on the first call (its blob is kept in the directory). The Signer
// signs inside the TPM, SHA-256 digests only, and returns ASN.1 DER
// signatures: it serves as a tls.Certificate's PrivateKey and signs CSRs.
func (e *Enclave) IdentityKey(ctx context.Context) (crypto.Signer, error) {
	if err := e.begin(ctx); err != nil {
		return nil, err
	}
	defer e.tpmMu.Unlock()
	if e.identity != nil {
		return e.identity, nil
	}
	o, point, err := e.eccObject(identityFile, identityTemplate())
	if err != nil {
		return nil, err
	}
	pk, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
	if err != nil {
		return nil, fmt.Errorf("tpm: identity public key: %w", err)
	}
	s := &signer{e: e, obj: o, pub: pk}
	e.mu.Lock()
	e.identity = s
	e.mu.Unlock()
	return s, nil
}

// signer is the identity key: a crypto.Signer backed by TPM2_Sign.
type signer struct {
	e   *Enclave
	obj *object
	pub *ecdsa.PublicKey
}

// Public returns the *ecdsa.PublicKey.
func (s *signer) Public() crypto.PublicKey { return s.pub }

// Sign signs a SHA-256 digest in the TPM (rand is unused: the TPM draws the
// nonce) and returns an ASN.1 DER ECDSA signature.
func (s *signer) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts == nil || opts.HashFunc() != crypto.SHA256 {
		return nil, errors.New("tpm: the identity key signs SHA-256 digests only")
	}
	if len(digest) != crypto.SHA256.Size() {
		return nil, errors.New("tpm: digest is not a SHA-256 digest")
	}
	e := s.e
	if err := e.begin(context.Background()); err != nil {
		return nil, err
	}
	defer e.tpmMu.Unlock()
	h, err := e.load(s.obj)
	if err != nil {
		return nil, err
	}
	defer e.flush(h.Handle)
	rsp, err := tpm2.Sign{
		KeyHandle: tpm2.AuthHandle{Handle: h.Handle, Name: h.Name, Auth: tpm2.PasswordAuth(nil)},
		Digest:    tpm2.TPM2BDigest{Buffer: digest},
		InScheme:  tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull},
		Validation: tpm2.TPMTTKHashCheck{
			Tag:       tpm2.TPMSTHashCheck,
			Hierarchy: tpm2.TPMRHNull,
		},
	}.Execute(e.tpm)
	if err != nil {
		return nil, fmt.Errorf("tpm: sign: %w", err)
	}
	sig, err := rsp.Signature.Signature.ECDSA()
	if err != nil {
		return nil, fmt.Errorf("tpm: sign: %w", err)
	}
	return asn1.Marshal(struct{ R, S *big.Int }{
		new(big.Int).SetBytes(sig.SignatureR.Buffer),
		new(big.Int).SetBytes(sig.SignatureS.Buffer),
	})
}
