package sidecar

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/dcaas/dcaas/internal/atomicfile"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/enclave"
	"github.com/dcaas/dcaas/internal/httpapi"
)

// enrollmentFile keeps what the KMS returned at enrollment: certificates
// and ids, no secret.
const enrollmentFile = "enrollment.json"

type enrollment struct {
	api.Enrollment
	KEM     api.KEM     `json:"kem"`
	Enclave api.Enclave `json:"enclave"`
}

// ErrNoEnrollSecret means the sidecar must enroll but was given neither a
// token nor attestation.
var ErrNoEnrollSecret = errors.New("sidecar: enrollment needs a token (DCAAS_ENROLL_TOKEN or --enroll-token-file) or TPM attestation")

// enroll reuses a stored enrollment where the enclave's keys persist (tpm)
// and they still match it, and enrolls afresh otherwise.
func (s *Sidecar) enroll(ctx context.Context) error {
	path := filepath.Join(s.cfg.DataDir, enrollmentFile)
	if s.enc.Kind() == api.EnclaveTPM && s.cfg.EnrollToken == "" {
		if b, err := os.ReadFile(path); err == nil {
			var e enrollment
			if json.Unmarshal(b, &e) == nil && s.matches(ctx, &e) {
				s.enrolled = e
				s.log.Info("reusing enrollment", "instance", e.InstanceID)
				return nil
			}
		}
	}
	if s.cfg.EnrollToken == "" && !s.cfg.Attest {
		return ErrNoEnrollSecret
	}
	signer, err := s.enc.IdentityKey(ctx)
	if err != nil {
		return err
	}
	csrDER, err := x509.CreateCertificateRequest(nil, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "dcaas-sidecar"}}, signer)
	if err != nil {
		return fmt.Errorf("sidecar: CSR: %w", err)
	}
	tk, err := s.enc.TransportKey(ctx, s.cfg.KEM)
	if err != nil {
		return err
	}
	pub, err := kcrypto.MarshalKEMPublicKey(tk.PublicKey())
	if err != nil {
		return err
	}
	req := api.EnrollRequest{
		CSRPEM:            string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER})),
		WrappingPublicKey: pub,
		Token:             s.cfg.EnrollToken,
	}
	anon := &httpapi.Client{Base: s.cfg.KMSURL, HTTP: &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.caPool, MinVersion: tls.VersionTLS12}},
	}}
	defer anon.HTTP.CloseIdleConnections()
	if s.cfg.Attest {
		att, ok := s.enc.(enclave.Attester)
		if !ok {
			return fmt.Errorf("sidecar: the %s enclave cannot attest", s.enc.Kind())
		}
		var ch api.Challenge
		if err := anon.Do(ctx, http.MethodPost, "/v1/enrollment/challenge", nil, &ch); err != nil {
			return fmt.Errorf("sidecar: enrollment challenge: %w", err)
		}
		spki, err := x509.MarshalPKIXPublicKey(signer.Public())
		if err != nil {
			return err
		}
		if req.Attestation, err = att.Attest(ctx, ch.Nonce, spki, pub); err != nil {
			return fmt.Errorf("sidecar: attestation: %w", err)
		}
	}
	var e enrollment
	if err := anon.Do(ctx, http.MethodPost, "/v1/enrollment", req, &e.Enrollment); err != nil {
		return fmt.Errorf("sidecar: enrollment refused: %w", err)
	}
	e.KEM, e.Enclave = s.cfg.KEM, s.enc.Kind()
	if !s.matches(ctx, &e) {
		return errors.New("sidecar: the KMS returned certificates that do not match this sidecar's keys")
	}
	b, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(path, b, 0o600); err != nil {
		return err
	}
	s.enrolled = e
	s.log.Info("enrolled", "instance", e.InstanceID, "custodian", e.CustodianDN, "enclave", e.Enclave)
	return nil
}

// matches checks that an enrollment's certificates carry this enclave's
// identity key, were issued by the trusted CA and are still valid.
func (s *Sidecar) matches(ctx context.Context, e *enrollment) bool {
	signer, err := s.enc.IdentityKey(ctx)
	if err != nil {
		return false
	}
	cert, err := parseCertPEM(e.CertPEM)
	if err != nil {
		return false
	}
	type equaler interface{ Equal(x crypto.PublicKey) bool }
	pk, ok := signer.Public().(equaler)
	if !ok || !pk.Equal(cert.PublicKey) {
		s.log.Debug("enrollment key mismatch", "ok", ok, "pub", fmt.Sprintf("%T", signer.Public()))
		return false
	}
	_, err = cert.Verify(x509.VerifyOptions{Roots: s.caPool, CurrentTime: s.cfg.Now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		s.log.Debug("enrollment cert does not verify", "err", err)
	}
	return err == nil
}

func parseCertPEM(s string) (*x509.Certificate, error) {
	block, _ := pem.Decode([]byte(s))
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("sidecar: not a PEM certificate")
	}
	return x509.ParseCertificate(block.Bytes)
}
