// Package enclave defines where a sidecar keeps its secrets: its identity
// key (TLS client and CSR), its key-transport (wrapping) key, the data keys
// it has loaded while they are idle, and its local master key (LMK).
//
// Implementations: software/ (guarded, locked, non-dumpable memory; secrets
// encrypted while idle) and tpm/ (keys created inside a TPM 2.0 and never
// leaving it in clear). enclavetest/ is the conformance suite both pass.
package enclave

import (
	"context"
	"crypto"
	"errors"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/secret"
)

// Errors implementations return.
var (
	// ErrUnsupportedKEM: this enclave cannot hold a transport key of that KEM
	// (a TPM does ECDH on P-256 only).
	ErrUnsupportedKEM = errors.New("enclave: KEM not supported by this enclave")
	// ErrOpen is the one opaque error for local blobs that do not open.
	ErrOpen = errors.New("enclave: sealed data does not open")
	// ErrClosed: the enclave was closed and its secrets wiped.
	ErrClosed = errors.New("enclave: closed")
)

// Enclave keeps a sidecar's secrets. Implementations are safe for
// concurrent use.
type Enclave interface {
	// Kind names the implementation.
	Kind() api.Enclave
	// IdentityKey returns the sidecar's identity key (ECDSA P-256),
	// creating it on the first call. The private half stays inside the
	// enclave; the Signer signs CSRs and TLS handshakes.
	IdentityKey(ctx context.Context) (crypto.Signer, error)
	// TransportKey returns the HPKE key-transport key for kem, creating it
	// on the first call for that KEM. Decapsulation happens inside the
	// enclave (for a TPM through an ecdh.KeyExchanger backed by the TPM).
	TransportKey(ctx context.Context, kem api.KEM) (kcrypto.KEMPrivateKey, error)
	// Protect takes ownership of a data key's material (wiping the
	// caller's copy) and keeps it encrypted while idle.
	Protect(material *secret.Bytes) (Protected, error)
	// LocalSeal encrypts plaintext under the enclave's local master key,
	// binding aad; LocalOpen reverses it (ErrOpen on any failure). The
	// caller keeps ownership of plaintext and owns what LocalOpen returns.
	// Blobs survive a restart only where the LMK does (tpm: yes, sealed to
	// the TPM; software: no).
	LocalSeal(ctx context.Context, plaintext *secret.Bytes, aad []byte) ([]byte, error)
	LocalOpen(ctx context.Context, blob, aad []byte) (*secret.Bytes, error)
	// Close wipes every secret the enclave holds.
	Close() error
}

// BatchProtector is implemented by enclaves that protect many data keys at
// once for less than Protect costs per key (the software enclave opens its
// protection key once per batch). ProtectAll takes ownership of every
// material, as Protect does.
type BatchProtector interface {
	ProtectAll(materials []*secret.Bytes) ([]Protected, error)
}

// BatchOpener is implemented by enclaves that open many Protected values
// for less than Open costs each (the software enclave opens its protection
// key once per batch). OpenAll returns ps[i]'s material at index i, each
// a copy the caller wipes; it is all or nothing, and fails if one of ps
// was destroyed.
type BatchOpener interface {
	OpenAll(ps []Protected) ([]*secret.Bytes, error)
}

// BatchSealer is implemented by enclaves that seal many plaintexts for
// less than LocalSeal costs each (the software enclave opens its local
// master key once per batch). LocalSealAll seals plaintexts[i] with
// aads[i], as LocalSeal does; the caller keeps ownership of plaintexts.
type BatchSealer interface {
	LocalSealAll(ctx context.Context, plaintexts []*secret.Bytes, aads [][]byte) ([][]byte, error)
}

// Protected is a data key held encrypted while idle.
type Protected interface {
	// Open returns the material in clear; the caller wipes it when done.
	Open() (*secret.Bytes, error)
	// Destroy wipes the protected material; Open fails afterwards.
	Destroy()
}

// Attester is implemented by enclaves that can prove where they run (TPM):
// a quote over the enrollment nonce and the digests of the sidecar's keys.
type Attester interface {
	Attest(ctx context.Context, nonce []byte, identitySPKI []byte, transport api.PublicKey) (*api.Attestation, error)
}

// QualifyingData is what an attestation quote must cover: SHA-256 over a
// domain label, the KMS nonce, and the digests of the CSR's public key and
// of the transport public key. Both the sidecar and the KMS verifier compute
// it with this function.
func QualifyingData(nonce, identitySPKI []byte, transport api.PublicKey) []byte {
	return qualifyingData(nonce, identitySPKI, transport)
}
