package tpm

import (
	"context"
	"crypto/ecdh"
	"crypto/hpke"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/enclave"
)

// TransportKey returns the key-transport key for kem, which must be
// api.KEMP256 (a TPM does ECDH on NIST curves only; other KEMs are an error
// wrapping enclave.ErrUnsupportedKEM). The key is an ECC P-256 decryption
// key created in the TPM on the first call. The returned DHKEM(P-256)
// private key decapsulates through TPM2_ECDH_ZGen: the private scalar
// never leaves the TPM, and its Bytes method fails.
func (e *Enclave) TransportKey(ctx context.Context, kem api.KEM) (hpke.PrivateKey, error) {
	if kem != api.KEMP256 {
		return nil, fmt.Errorf("%w: %q (a TPM transport key is %q)", enclave.ErrUnsupportedKEM, kem, api.KEMP256)
	}
	if err := e.begin(ctx); err != nil {
		return nil, err
	}
	defer e.tpmMu.Unlock()
	if e.transport != nil {
		return e.transport, nil
	}
	o, point, err := e.eccObject(transportFile, transportTemplate())
	if err != nil {
		return nil, err
	}
	pk, err := ecdh.P256().NewPublicKey(point)
	if err != nil {
		return nil, fmt.Errorf("tpm: transport public key: %w", err)
	}
	k, err := hpke.NewDHKEMPrivateKey(&keyExchanger{e: e, obj: o, pub: pk})
	if err != nil {
		return nil, fmt.Errorf("tpm: transport key: %w", err)
	}
	e.mu.Lock()
	e.transport = k
	e.mu.Unlock()
	return k, nil
}

// keyExchanger is an ecdh.KeyExchanger whose private key is in the TPM.
type keyExchanger struct {
	e   *Enclave
	obj *object
	pub *ecdh.PublicKey
}

// PublicKey returns the public key.
func (k *keyExchanger) PublicKey() *ecdh.PublicKey { return k.pub }

// Curve is P-256.
func (k *keyExchanger) Curve() ecdh.Curve { return ecdh.P256() }

// ECDH returns the X coordinate of the private key times peer, computed by
// TPM2_ECDH_ZGen, which also checks that peer is on the curve. The result
// is secret (an HPKE shared secret's input); it leaves the TPM encrypted by
// the session.
func (k *keyExchanger) ECDH(peer *ecdh.PublicKey) ([]byte, error) {
	if peer == nil || peer.Curve() != ecdh.P256() {
		return nil, errors.New("tpm: ECDH peer is not a P-256 key")
	}
	p := peer.Bytes() // 0x04 || X || Y
	e := k.e
	if err := e.begin(context.Background()); err != nil {
		return nil, err
	}
	defer e.tpmMu.Unlock()
	h, err := e.load(k.obj)
	if err != nil {
		return nil, err
	}
	defer e.flush(h.Handle)
	rsp, err := tpm2.ECDHZGen{
		KeyHandle: tpm2.AuthHandle{Handle: h.Handle, Name: h.Name, Auth: e.secretSession(encryptOut)},
		InPoint: tpm2.New2B(tpm2.TPMSECCPoint{
			X: tpm2.TPM2BECCParameter{Buffer: p[1:33]},
			Y: tpm2.TPM2BECCParameter{Buffer: p[33:]},
		}),
	}.Execute(e.tpm)
	if err != nil {
		return nil, fmt.Errorf("tpm: ECDH: %w", err)
	}
	z, err := rsp.OutPoint.Contents()
	if err != nil || len(z.X.Buffer) > 32 {
		return nil, errors.New("tpm: ECDH: malformed shared point")
	}
	out := make([]byte, 32)
	copy(out[32-len(z.X.Buffer):], z.X.Buffer)
	clear(z.X.Buffer)
	clear(z.Y.Buffer)
	return out, nil
}
