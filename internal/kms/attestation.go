package kms

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/attest"
	"github.com/dcaas/dcaas/internal/enclave"
	"github.com/dcaas/dcaas/internal/policy"
	"github.com/dcaas/dcaas/internal/store"
)

// AttestationPolicy enables TPM attestation enrollment (docs/design.md, "Enrollment"):
// which attestation keys (platforms) may enroll, the custodian each one's
// sidecar is bound to, and the PCR values every quote must show.
type AttestationPolicy struct {
	Platforms []Platform `json:"platforms"`
	// PCRs maps a PCR index ("0".."7": the PCRs a quote covers) to its
	// required SHA-256 value (hex).
	PCRs map[string]string `json:"pcrs,omitempty"`
}

// Platform is one allowed attestation key and the custodian its sidecar
// serves.
type Platform struct {
	AKFingerprint string `json:"ak_fingerprint"` // hex SHA-256 of the AK's TPMT_PUBLIC
	CustodianDN   string `json:"custodian_dn"`
}

// LoadAttestationPolicy reads a policy file (JSON).
func LoadAttestationPolicy(path string) (*AttestationPolicy, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var p AttestationPolicy
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields() // a misspelt field must not drop a requirement
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("kms: attestation policy %s: %w", path, err)
	}
	return &p, nil
}

// attestor is a compiled attestation policy.
type attestor struct {
	verifier attest.Verifier
	bindings map[string]string // AK fingerprint → custodian DN
}

func newAttestor(p *AttestationPolicy) (*attestor, error) {
	if p == nil {
		return nil, nil
	}
	a := &attestor{bindings: map[string]string{}}
	v := &attest.TPMVerifier{AllowedAKs: map[string]bool{}, PCRPolicy: map[int][]byte{}}
	for _, pl := range p.Platforms {
		dn, err := policy.NormalizeDN(pl.CustodianDN)
		if err != nil {
			return nil, fmt.Errorf("kms: attestation policy: custodian %q: %w", pl.CustodianDN, err)
		}
		fp := strings.ToLower(pl.AKFingerprint)
		if raw, err := hex.DecodeString(fp); err != nil || len(raw) != 32 {
			return nil, fmt.Errorf("kms: attestation policy: ak_fingerprint %q is not a hex SHA-256", pl.AKFingerprint)
		}
		v.AllowedAKs[fp] = true
		a.bindings[fp] = dn
	}
	for idx, val := range p.PCRs {
		i, err := strconv.Atoi(idx)
		if err != nil || i < 0 || i > 7 { // quotes cover PCRs 0-7 of the SHA-256 bank
			return nil, fmt.Errorf("kms: attestation policy: PCR index %q", idx)
		}
		d, err := hex.DecodeString(val)
		if err != nil || len(d) != 32 {
			return nil, fmt.Errorf("kms: attestation policy: PCR %s value is not a hex SHA-256", idx)
		}
		v.PCRPolicy[i] = d
	}
	a.verifier = v
	return a, nil
}

var errAttestation = func(msg string) error { return api.Errorf(api.CodeAttestationFailed, "%s", msg) }

// enrollAttested verifies TPM evidence and registers the sidecar for the
// custodian the platform is bound to.
func (k *KMS) enrollAttested(ctx context.Context, c *call, req *api.EnrollRequest, csr *x509.CertificateRequest) (any, error) {
	if k.attest == nil {
		return nil, api.Errorf(api.CodeInvalidArgument, "TPM attestation enrollment is not enabled on this KMS; use a token.")
	}
	ev := req.Attestation
	if len(ev.Nonce) == 0 {
		return nil, api.Errorf(api.CodeInvalidArgument, "attestation.nonce is required: ask POST /v1/enrollment/challenge first.")
	}
	// The nonce is single-use: a replayed or stale quote fails here. It is
	// consumed in the transaction that registers the instance, or, if the
	// enrollment fails from here on, with the record of the failure.
	tok := enrollToken{kind: store.OneTimeChallenge, hash: hashNonce(ev.Nonce), what: "enrollment challenge"}
	if _, err := k.st.PeekOneTime(ctx, tok.kind, tok.hash, k.now()); err != nil {
		return nil, consumeErr(err, tok.what)
	}
	out, err := k.verifyAndRegister(ctx, c, req, csr, tok)
	if err != nil && !c.recorded {
		err = c.fail(ctx, func(tx store.Tx) error {
			_, err := tx.ConsumeOneTime(ctx, tok.kind, tok.hash, k.now())
			return err
		}, err)
	}
	return out, err
}

// verifyAndRegister verifies the TPM evidence of req for the challenge tok
// and registers the sidecar, consuming tok.
func (k *KMS) verifyAndRegister(ctx context.Context, c *call, req *api.EnrollRequest, csr *x509.CertificateRequest, tok enrollToken) (*api.Enrollment, error) {
	ev := req.Attestation
	spki, err := x509.MarshalPKIXPublicKey(csr.PublicKey)
	if err != nil {
		return nil, api.Errorf(api.CodeInvalidCSR, "The CSR's key cannot be encoded.")
	}
	want := attest.Expected{Nonce: ev.Nonce, QualifyingData: enclave.QualifyingData(ev.Nonce, spki, req.WrappingPublicKey)}
	res, err := k.attest.verifier.Verify(ctx, ev, want)
	switch {
	case errors.Is(err, attest.ErrUnknownAK):
		return nil, errAttestation("The attestation key is not an allowed platform.")
	case errors.Is(err, attest.ErrNonceMismatch):
		return nil, errAttestation("The quote does not cover this challenge and these keys.")
	case errors.Is(err, attest.ErrPCRMismatch):
		return nil, errAttestation("The platform's PCR values do not satisfy the policy.")
	case errors.Is(err, attest.ErrBadSignature), errors.Is(err, attest.ErrMalformed):
		return nil, errAttestation("The attestation evidence does not verify.")
	case err != nil:
		return nil, err
	}
	dn := k.attest.bindings[res.AKFingerprint]
	app, err := k.st.GetAppByDN(ctx, dn)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, api.Errorf(api.CodeForbidden, "The platform is bound to custodian %q, which does not exist.", dn)
		}
		return nil, storeErr(err, "custodian")
	}
	c.tenant = app.Tenant
	return k.register(ctx, c, tok, app.Tenant, app.DN, api.EnclaveTPM, csr, req.WrappingPublicKey)
}
