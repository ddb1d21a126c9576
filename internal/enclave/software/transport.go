package software

import (
	"context"
	"crypto"
	"crypto/ecdh"
	"crypto/fips140"
	"crypto/hpke"
	"crypto/mlkem"
	"crypto/rand"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/enclave"
)

// transportKEM says how to build the transport key of one api.KEM.
type transportKEM struct {
	curve  ecdh.Curve
	hybrid bool // ML-KEM-768 + curve
	fips   bool // FIPS 140-3 approved
}

var transportKEMs = map[api.KEM]transportKEM{
	api.KEMX25519:         {curve: ecdh.X25519()},
	api.KEMP256:           {curve: ecdh.P256(), fips: true},
	api.KEMMLKEM768X25519: {curve: ecdh.X25519(), hybrid: true},
	api.KEMMLKEM768P256:   {curve: ecdh.P256(), hybrid: true, fips: true},
}

// lookupKEM returns how to build kem's key, or an error wrapping
// enclave.ErrUnsupportedKEM for unknown KEMs and, when FIPS 140-3 mode is
// on (GODEBUG=fips140=on), for KEMs built on X25519.
func lookupKEM(kem api.KEM) (transportKEM, error) {
	t, ok := transportKEMs[kem]
	if !ok {
		return t, wrapf("%w: %q", enclave.ErrUnsupportedKEM, kem)
	}
	if fips140.Enabled() && !t.fips {
		return t, wrapf("%w: %s is not FIPS 140-3 approved and FIPS mode is on; use %s or %s",
			enclave.ErrUnsupportedKEM, kem, api.KEMP256, api.KEMMLKEM768P256)
	}
	return t, nil
}

// TransportKey returns the HPKE key-transport key for kem (x25519, p256,
// mlkem768-x25519, mlkem768-p256), creating it on the first call for that
// KEM; later calls return the same key. In FIPS mode the X25519-based KEMs
// are refused with an error wrapping enclave.ErrUnsupportedKEM.
//
// The private key is sealed; the returned hpke.PrivateKey is built with
// hpke.NewDHKEMPrivateKey or hpke.NewHybridPrivateKey over an
// ecdh.KeyExchanger (and, for hybrids, a crypto.Decapsulator) that opens
// the sealed key for each decapsulation. Its Bytes method therefore fails:
// the key cannot be exported. Hybrid keys are two independent keys (an
// ML-KEM-768 seed and a curve scalar) rather than the 32-byte seed of
// draft-ietf-hpke-pq, which is what NewHybridPrivateKey takes; the public
// key and decapsulation are the standard ones. After Close, decapsulation
// fails with enclave.ErrClosed.
func (e *Enclave) TransportKey(ctx context.Context, kem api.KEM) (hpke.PrivateKey, error) {
	t, err := lookupKEM(kem)
	if err != nil {
		return nil, err
	}
	return made(e, ctx, func() hpke.PrivateKey { return e.transport[kem] }, func() (hpke.PrivateKey, error) {
		k, err := e.newTransportLocked(t)
		if err != nil {
			return nil, wrapf("creating %s transport key: %w", kem, err)
		}
		return k, nil
	}, func(k hpke.PrivateKey) { e.transport[kem] = k })
}

func (e *Enclave) newTransportLocked(t transportKEM) (hpke.PrivateKey, error) {
	kx, err := e.newKeyExchangerLocked(t.curve)
	if err != nil {
		return nil, err
	}
	if !t.hybrid {
		return hpke.NewDHKEMPrivateKey(kx)
	}
	dk, err := mlkem.GenerateKey768()
	if err != nil {
		return nil, err
	}
	seed, err := e.sealLocked(dk.Bytes()) // Bytes is a copy: wiped
	if err != nil {
		return nil, err
	}
	pq := &sealedMLKEM768{ek: dk.EncapsulationKey(), seed: seed}
	return hpke.NewHybridPrivateKey(pq, kx)
}

func (e *Enclave) newKeyExchangerLocked(curve ecdh.Curve) (*sealedKeyExchanger, error) {
	sk, err := curve.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	priv, err := e.sealLocked(sk.Bytes()) // Bytes is a copy: wiped
	if err != nil {
		return nil, err
	}
	return &sealedKeyExchanger{curve: curve, pub: sk.PublicKey(), priv: priv}, nil
}

// sealedKeyExchanger is an ecdh.KeyExchanger whose private key is sealed
// except during ECDH.
type sealedKeyExchanger struct {
	redacted
	curve ecdh.Curve
	pub   *ecdh.PublicKey
	priv  *sealed
}

// PublicKey returns the public key.
func (k *sealedKeyExchanger) PublicKey() *ecdh.PublicKey { return k.pub }

// Curve returns the key's curve.
func (k *sealedKeyExchanger) Curve() ecdh.Curve { return k.curve }

// ECDH opens the private key and performs ECDH with remote.
func (k *sealedKeyExchanger) ECDH(remote *ecdh.PublicKey) ([]byte, error) {
	var shared []byte
	err := k.priv.with(func(raw []byte) error {
		sk, err := k.curve.NewPrivateKey(raw)
		if err != nil {
			return err
		}
		shared, err = sk.ECDH(remote)
		return err
	})
	return shared, err
}

// sealedMLKEM768 is a crypto.Decapsulator for ML-KEM-768 whose 64-byte
// seed is sealed except during Decapsulate.
type sealedMLKEM768 struct {
	redacted
	ek   *mlkem.EncapsulationKey768
	seed *sealed
}

// Encapsulator returns the *mlkem.EncapsulationKey768.
func (d *sealedMLKEM768) Encapsulator() crypto.Encapsulator { return d.ek }

// Decapsulate opens the seed, expands it and decapsulates ciphertext.
func (d *sealedMLKEM768) Decapsulate(ciphertext []byte) ([]byte, error) {
	var shared []byte
	err := d.seed.with(func(seed []byte) error {
		dk, err := mlkem.NewDecapsulationKey768(seed)
		if err != nil {
			return err
		}
		shared, err = dk.Decapsulate(ciphertext)
		return err
	})
	return shared, err
}
