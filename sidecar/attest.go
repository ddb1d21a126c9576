package sidecar

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/client"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/enclave"
)

// TPM attestation beyond enrollment (issue 16, attestation-bound release):
// the EK certificate path, where the KMS trusts the attestation key because
// the TPM's manufacturer certified its EK and the TPM activates a
// credential bound to the AK; and re-attestation, a fresh quote the KMS
// records so keys whose policy bounds the attestation's age keep being
// released to a long-running sidecar.

// DefaultReattestInterval is how often a sidecar that enrolled with TPM
// attestation re-attests when Config.ReattestInterval is zero.
const DefaultReattestInterval = 30 * time.Minute

// ekAttester is a TPM enclave that can prove its AK is resident in the TPM
// of an EK certificate (internal/enclave/tpm).
type ekAttester interface {
	AKPublic(ctx context.Context) ([]byte, error)
	EKCertificate(ctx context.Context) ([]byte, error)
	ActivateCredential(ctx context.Context, credentialBlob, encryptedSecret []byte) ([]byte, error)
}

// ParseEKCert accepts an EK certificate as DER or PEM and returns its DER.
func ParseEKCert(b []byte) ([]byte, error) {
	if blk, _ := pem.Decode(b); blk != nil {
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("sidecar: EK certificate: a PEM %q block, not CERTIFICATE", blk.Type)
		}
		b = blk.Bytes
	}
	if _, err := x509.ParseCertificate(b); err != nil {
		return nil, fmt.Errorf("sidecar: EK certificate: %w", err)
	}
	return b, nil
}

// challenge asks the KMS for an attestation nonce: with the EK
// certificate and AK when the sidecar is configured to use its EK
// (Config.EKCert, or Config.EKCertFromTPM), in which case it also
// activates the credential and returns its secret.
func (s *Sidecar) challenge(ctx context.Context, kms *client.KMS) (*api.Challenge, []byte, error) {
	if len(s.cfg.EKCert) == 0 && !s.cfg.EKCertFromTPM {
		ch, err := kms.Challenge(ctx)
		return ch, nil, err
	}
	ek, ok := s.enc.(ekAttester)
	if !ok {
		return nil, nil, fmt.Errorf("sidecar: the %s enclave has no EK", s.enc.Kind())
	}
	cert := s.cfg.EKCert
	if len(cert) == 0 {
		var err error
		if cert, err = ek.EKCertificate(ctx); err != nil {
			return nil, nil, err
		}
	}
	ak, err := ek.AKPublic(ctx)
	if err != nil {
		return nil, nil, err
	}
	ch, err := kms.ChallengeEK(ctx, api.ChallengeRequest{EKCert: cert, AKPublic: ak})
	if err != nil {
		return nil, nil, err
	}
	secret, err := ek.ActivateCredential(ctx, ch.CredentialBlob, ch.EncryptedSecret)
	if err != nil {
		return nil, nil, fmt.Errorf("sidecar: the TPM did not activate the KMS's credential: %w", err)
	}
	return ch, secret, nil
}

// Reattest sends the KMS a fresh TPM quote over a new challenge, bound to
// the sidecar's identity and transport keys: the KMS records when it
// verified it and the attestation profiles it satisfied, which key
// policies' release conditions check. The background poll calls it every
// Config.ReattestInterval and after each certificate renewal.
func (s *Sidecar) Reattest(ctx context.Context) (*api.Attested, error) {
	id, err := s.ready()
	if err != nil {
		return nil, err
	}
	att, ok := s.enc.(enclave.Attester)
	if !ok {
		return nil, fmt.Errorf("sidecar: the %s enclave cannot attest", s.enc.Kind())
	}
	ch, err := id.kms.Challenge(ctx)
	if err != nil {
		return nil, fmt.Errorf("sidecar: attestation challenge: %w", s.kmsErr(err))
	}
	signer, err := s.enc.IdentityKey(ctx)
	if err != nil {
		return nil, err
	}
	spki, err := x509.MarshalPKIXPublicKey(signer.Public())
	if err != nil {
		return nil, err
	}
	tk, err := s.enc.TransportKey(ctx, id.e.KEM)
	if err != nil {
		return nil, err
	}
	wrapPub, err := kcrypto.MarshalKEMPublicKey(tk.PublicKey())
	if err != nil {
		return nil, err
	}
	ev, err := att.Attest(ctx, ch.Nonce, spki, wrapPub)
	if err != nil {
		return nil, fmt.Errorf("sidecar: attestation: %w", err)
	}
	got, err := id.kms.Reattest(ctx, api.ReattestRequest{Attestation: ev})
	if err != nil {
		return nil, fmt.Errorf("sidecar: re-attestation refused: %w", s.kmsErr(err))
	}
	s.attested.Store(id)
	s.attestedAt.Store(s.cfg.Now().UnixNano())
	s.audit.Record("kms", "instance.attested", "", "ok", "")
	s.log.Info("re-attested", "instance", id.e.InstanceID, "profiles", got.AttestationProfiles)
	return got, nil
}

// reattestIfDue re-attests a TPM sidecar every ReattestInterval, and after
// a certificate renewal (a new identity), when re-attestation is on.
func (s *Sidecar) reattestIfDue(id *identity) {
	if s.cfg.ReattestInterval <= 0 || id.e.Enclave != api.EnclaveTPM {
		return
	}
	if _, ok := s.enc.(enclave.Attester); !ok {
		return
	}
	last := time.Unix(0, s.attestedAt.Load())
	if s.attested.Load() == id && s.cfg.Now().Sub(last) < s.cfg.ReattestInterval {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := s.Reattest(ctx); err != nil {
		if errors.Is(err, errNotEnrolled) {
			return
		}
		s.log.Warn("re-attestation failed; retrying at the next poll", "instance", id.e.InstanceID, "err", err)
	}
}
