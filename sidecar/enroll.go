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
	"os"
	"path/filepath"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/client"
	"github.com/dcaas/dcaas/internal/atomicfile"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/enclave"
	"github.com/dcaas/dcaas/internal/secret"
)

// enrollmentFile keeps what the KMS returned at enrollment or the last
// renewal: certificates and ids, no secret.
const enrollmentFile = "enrollment.json"

type enrollment struct {
	api.Enrollment
	KEM     api.KEM     `json:"kem"`
	Enclave api.Enclave `json:"enclave"`
	// ConfigCA is the SHA-256 (hex) of the configured CA file the trust
	// bundle (CAPEM) was obtained with: see trustFor.
	ConfigCA string `json:"config_ca_sha256,omitempty"`
}

// identity is what an enrollment gives the sidecar: its certificates, the
// roots it trusts and a KMS client that authenticates with them. It is
// immutable; renewal swaps in a new one.
type identity struct {
	e    enrollment
	got  time.Time         // when the sidecar received the certificates
	cert *x509.Certificate // identity (TLS client and server)
	wrap *x509.Certificate // wrapping certificate
	tls  tls.Certificate   // cert with the enclave-held key
	// pool verifies the KMS's TLS certificate and is what a mutual-TLS
	// caller's certificate must chain to (trustFor), so a CA a rotation
	// retired stops being trusted once the bundle without it arrives
	// (followTrust).
	pool *x509.CertPool
	kms  *client.KMS
}

// ErrNoEnrollSecret means Enroll was called without a token.
var ErrNoEnrollSecret = errors.New("sidecar: enrollment needs a token (DCAAS_ENROLL_TOKEN, --enroll-token-file or POST /v1/enroll) or TPM attestation")

var errNotEnrolled = api.Errorf(api.CodeNotEnrolled, "This sidecar is not enrolled yet: its custodian must hand it an enrollment token (POST /v1/enroll, or dcaas sidecar enroll).")

// reuse re-opens the stored enrollment of a persistent enclave (tpm) when
// its certificates still carry the enclave's keys and are valid. An
// enrollment it cannot reuse is remembered as the previous instance.
func (s *Sidecar) reuse(ctx context.Context) bool {
	b, err := os.ReadFile(filepath.Join(s.cfg.DataDir, enrollmentFile))
	if err != nil {
		return false
	}
	var e enrollment
	if json.Unmarshal(b, &e) != nil {
		return false
	}
	s.previous = e.InstanceID
	if s.enc.Kind() != api.EnclaveTPM {
		return false
	}
	id, err := s.newIdentity(ctx, e)
	if err != nil {
		s.log.Info("stored enrollment not reusable; enrolling afresh", "err", err)
		return false
	}
	s.install(id)
	s.log.Info("reusing enrollment", "instance", e.InstanceID, "identity_not_after", id.cert.NotAfter)
	return true
}

// Enroll enrolls a sidecar that is waiting for it (started without a
// token), or whose identity lapsed unrenewed, with a one-time token its
// custodian minted. An enrolled sidecar answers with a conflict. The
// caller keeps token (and wipes it); the sidecar keeps no copy.
func (s *Sidecar) Enroll(ctx context.Context, token *secret.Bytes) error {
	if token.Len() == 0 {
		return ErrNoEnrollSecret
	}
	if s.revoked.Load() {
		return errRevoked
	}
	if s.Enrolled() {
		return api.Errorf(api.CodeConflict, "This sidecar is already enrolled as instance %s.", s.InstanceID())
	}
	return s.enroll(ctx, token)
}

// enroll generates the CSR in the enclave and enrolls with token or
// attestation evidence.
func (s *Sidecar) enroll(ctx context.Context, token *secret.Bytes) error {
	s.enrollMu.Lock()
	defer s.enrollMu.Unlock()
	if s.Enrolled() {
		return api.Errorf(api.CodeConflict, "This sidecar is already enrolled as instance %s.", s.InstanceID())
	}
	csrPEM, wrapPub, err := s.keyRequest(ctx)
	if err != nil {
		return err
	}
	// The wire type holds the token as a string: that copy, made here and
	// dropped with req, is the one the sidecar cannot wipe.
	req := api.EnrollRequest{CSRPEM: csrPEM, WrappingPublicKey: wrapPub, Token: string(token.Expose())}
	anon, err := client.NewKMSWithTLS(s.cfg.urls(), &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: s.caPool})
	if err != nil {
		return err
	}
	defer anon.Close()
	if s.cfg.Attest && token.Len() == 0 {
		att, ok := s.enc.(enclave.Attester)
		if !ok {
			return fmt.Errorf("sidecar: the %s enclave cannot attest", s.enc.Kind())
		}
		ch, activated, err := s.challenge(ctx, anon)
		if err != nil {
			return fmt.Errorf("sidecar: enrollment challenge: %w", s.kmsErr(err))
		}
		signer, err := s.enc.IdentityKey(ctx)
		if err != nil {
			return err
		}
		spki, err := x509.MarshalPKIXPublicKey(signer.Public())
		if err != nil {
			return err
		}
		if req.Attestation, err = att.Attest(ctx, ch.Nonce, spki, wrapPub); err != nil {
			return fmt.Errorf("sidecar: attestation: %w", err)
		}
		req.Attestation.ActivatedCredential = activated
	}
	got, err := anon.Enroll(ctx, req)
	if err != nil {
		return fmt.Errorf("sidecar: enrollment refused: %w", s.kmsErr(err))
	}
	e := enrollment{Enrollment: *got, KEM: s.cfg.KEM, Enclave: s.enc.Kind(), ConfigCA: s.configCA}
	id, err := s.newIdentity(ctx, e)
	if err != nil {
		return fmt.Errorf("sidecar: the KMS returned certificates that do not match this sidecar's keys: %w", err)
	}
	if err := s.persist(e); err != nil {
		return err
	}
	s.install(id)
	if req.Attestation != nil { // attested just now: the next re-attestation is an interval away
		s.attested.Store(id)
		s.attestedAt.Store(s.cfg.Now().UnixNano())
	}
	s.markReachable(true)
	s.audit.Record("kms", "instance.enrolled", "", "ok", "")
	s.log.Info("enrolled", "instance", e.InstanceID, "custodian", e.CustodianDN, "enclave", e.Enclave, "identity_not_after", id.cert.NotAfter)
	return nil
}

// keyRequest makes the CSR (signed in the enclave with the identity key)
// and the transport public key the KMS certifies.
func (s *Sidecar) keyRequest(ctx context.Context) (string, api.PublicKey, error) {
	signer, err := s.enc.IdentityKey(ctx)
	if err != nil {
		return "", api.PublicKey{}, err
	}
	csrDER, err := x509.CreateCertificateRequest(nil, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "dcaas-sidecar"}}, signer)
	if err != nil {
		return "", api.PublicKey{}, fmt.Errorf("sidecar: CSR: %w", err)
	}
	tk, err := s.enc.TransportKey(ctx, s.cfg.KEM)
	if err != nil {
		return "", api.PublicKey{}, err
	}
	pub, err := kcrypto.MarshalKEMPublicKey(tk.PublicKey())
	if err != nil {
		return "", api.PublicKey{}, err
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER})), pub, nil
}

// install makes id the sidecar's identity: the keyring evaluates policies
// for its custodian, and the expiry metrics follow its certificates.
func (s *Sidecar) install(id *identity) {
	s.ring.Bind(id.e.CustodianDN)
	if old := s.id.Swap(id); old != nil && old.kms != id.kms {
		old.kms.Close()
	}
	s.metrics.certExpiry.WithLabelValues("identity").Set(float64(id.cert.NotAfter.Unix()))
	s.metrics.certExpiry.WithLabelValues("wrapping").Set(float64(id.wrap.NotAfter.Unix()))
}

func (s *Sidecar) persist(e enrollment) error {
	b, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(s.cfg.DataDir, enrollmentFile), b, 0o600)
}

// trustFor is what an identity of e trusts, for the KMS's TLS certificate
// and for callers': the KMS's trust bundle alone, once the KMS has handed
// one over TLS verified against what the sidecar trusted then; the
// configured CA only before that. The bundle replaces the configured CA
// rather than adding to it, so that a CA the bundle drops (retired by a
// rotation, or never the KMS's) stops being trusted although the
// configuration still names it. Only when the configured CA is not the
// one the bundle was obtained with (e.ConfigCA: the file was edited since,
// as after a sidecar slept through a CA rotation) does the sidecar trust
// both, until the next bundle it reads (followTrust) replaces them.
func (s *Sidecar) trustFor(e enrollment) *x509.CertPool {
	bundle := x509.NewCertPool()
	if e.CAPEM == "" || !bundle.AppendCertsFromPEM([]byte(e.CAPEM)) {
		return s.caPool
	}
	if e.ConfigCA == s.configCA {
		return bundle
	}
	both := s.caPool.Clone()
	both.AppendCertsFromPEM([]byte(e.CAPEM))
	return both
}

// newIdentity checks an enrollment against the enclave's keys and the
// trusted roots, and builds the KMS client that authenticates with it.
func (s *Sidecar) newIdentity(ctx context.Context, e enrollment) (*identity, error) {
	signer, err := s.enc.IdentityKey(ctx)
	if err != nil {
		return nil, err
	}
	cert, err := parseCertPEM(e.CertPEM)
	if err != nil {
		return nil, err
	}
	wrap, err := parseCertPEM(e.WrappingCertPEM)
	if err != nil {
		return nil, err
	}
	type equaler interface{ Equal(x crypto.PublicKey) bool }
	if pk, ok := signer.Public().(equaler); !ok || !pk.Equal(cert.PublicKey) {
		return nil, errors.New("the identity certificate does not carry the enclave's identity key")
	}
	pool := s.trustFor(e)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: s.cfg.Now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, fmt.Errorf("the identity certificate does not verify: %w", err)
	}
	id := &identity{e: e, got: s.cfg.Now(), cert: cert, wrap: wrap, pool: pool,
		tls: tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: signer, Leaf: cert}}
	id.kms, err = client.NewKMSWithTLS(s.cfg.urls(), &tls.Config{
		MinVersion: tls.VersionTLS12,
		RootCAs:    pool,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &id.tls, nil
		},
	}, client.WithTimeout(30*time.Second))
	if err != nil {
		return nil, err
	}
	return id, nil
}

// renewAt is when an identity is renewed: two thirds into its lifetime,
// counted from when the sidecar received it (the CA backdates NotBefore
// for clock skew, which must not make a short lifetime look spent).
func renewAt(id *identity) time.Time {
	start := id.got
	if start.Before(id.cert.NotBefore) {
		start = id.cert.NotBefore
	}
	return start.Add(id.cert.NotAfter.Sub(start) * 2 / 3)
}

// renewIfDue renews the identity and wrapping certificates once two thirds
// of the identity's lifetime have passed, over mutual TLS with the current
// ones; the sidecar keeps serving throughout. A refusal because the
// instance is revoked stops the sidecar as revocation does.
func (s *Sidecar) renewIfDue(id *identity) {
	now := s.cfg.Now()
	if now.Before(renewAt(id)) {
		return
	}
	if !now.Before(id.cert.NotAfter) {
		s.log.Warn("identity certificate expired before it could be renewed: the sidecar keeps serving its loaded keys but cannot reach the KMS until its custodian enrolls it again",
			"instance", id.e.InstanceID, "not_after", id.cert.NotAfter)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.renew(ctx, id); err != nil {
		if api.CodeOf(err) == api.CodeRevoked {
			s.selfRevoke("the KMS refused to renew a revoked instance")
			return
		}
		s.log.Warn("certificate renewal failed; retrying at the next poll", "instance", id.e.InstanceID, "not_after", id.cert.NotAfter, "err", err)
		s.metrics.renewals.WithLabelValues("error").Inc()
	}
}

// renew asks the KMS for new certificates and installs them.
func (s *Sidecar) renew(ctx context.Context, id *identity) error {
	csrPEM, wrapPub, err := s.keyRequest(ctx)
	if err != nil {
		return err
	}
	got, err := id.kms.RenewInstance(ctx, api.RenewInstanceRequest{CSRPEM: csrPEM, WrappingPublicKey: wrapPub})
	if err != nil {
		return s.kmsErr(err)
	}
	if got.InstanceID != id.e.InstanceID || got.CustodianDN != id.e.CustodianDN {
		return errors.New("sidecar: the KMS renewed another instance")
	}
	e := enrollment{Enrollment: *got, KEM: id.e.KEM, Enclave: id.e.Enclave, ConfigCA: s.configCA}
	next, err := s.newIdentity(ctx, e)
	if err != nil {
		return fmt.Errorf("sidecar: renewed certificates unusable: %w", err)
	}
	if err := s.persist(e); err != nil {
		return err
	}
	// Counted before it shows: whoever sees the new identity (status,
	// the expiry metric) sees the renewal counted.
	s.metrics.renewals.WithLabelValues("ok").Inc()
	s.install(next)
	s.audit.Record("kms", "instance.renewed", "", "ok", "")
	s.log.Info("certificates renewed", "instance", e.InstanceID, "identity_not_after", next.cert.NotAfter, "wrapping_not_after", next.wrap.NotAfter)
	return nil
}

func parseCertPEM(s string) (*x509.Certificate, error) {
	block, _ := pem.Decode([]byte(s))
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("sidecar: not a PEM certificate")
	}
	return x509.ParseCertificate(block.Bytes)
}
