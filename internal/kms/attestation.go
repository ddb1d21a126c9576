package kms

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/attest"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/enclave"
	"github.com/dcaas/dcaas/internal/policy"
	"github.com/dcaas/dcaas/internal/store"
)

// AttestationPolicy enables TPM attestation enrollment (docs/design.md, "Enrollment"):
// which attestation keys (platforms) may enroll, the custodian each one's
// sidecar is bound to, and the PCR values every quote must show; named PCR
// profiles key policies can ask for (api.ReleaseConditions); and TPM
// manufacturers whose EK certificates vouch for attestation keys that are
// not allow-listed. A running KMS takes a new policy with
// SetAttestationPolicy (dcaas kms serve: on SIGHUP or when the file
// changes, see WatchAttestationPolicy).
type AttestationPolicy struct {
	Platforms []Platform `json:"platforms"`
	// PCRs maps a PCR index ("0".."7": the PCRs a quote covers) to its
	// required SHA-256 value (hex). Every quote must satisfy it.
	PCRs map[string]string `json:"pcrs,omitempty"`
	// Profiles are named PCR policies (name → PCR index → hex SHA-256).
	// A quote that does not satisfy a profile is not refused; the
	// instance records the profiles its last quote satisfied.
	Profiles map[string]map[string]string `json:"profiles,omitempty"`
	// Manufacturers are TPM vendors' certificate authorities: a sidecar
	// whose TPM's EK certificate chains to one of their roots, and whose
	// AK is shown resident in that TPM by credential activation, enrolls
	// as the manufacturer's custodian without being allow-listed.
	Manufacturers []Manufacturer `json:"manufacturers,omitempty"`
}

// Platform is one allowed attestation key and the custodian its sidecar
// serves.
type Platform struct {
	AKFingerprint string `json:"ak_fingerprint"` // hex SHA-256 of the AK's TPMT_PUBLIC
	CustodianDN   string `json:"custodian_dn"`
}

// Manufacturer is a TPM manufacturer's CA: the root (and any intermediate)
// certificates EK certificates chain to, and the custodian the sidecars of
// TPMs it vouches for are bound to.
type Manufacturer struct {
	// Name names the manufacturer in logs, errors and instance records
	// (ak_trust "ek:<name>"); a profile-like name.
	Name string `json:"name"`
	// RootsFile is a PEM file of CA certificates, relative to the policy
	// file's directory; RootsPEM holds them inline. One of them is set.
	RootsFile   string `json:"roots_file,omitempty"`
	RootsPEM    string `json:"roots_pem,omitempty"`
	CustodianDN string `json:"custodian_dn"`
}

// LoadAttestationPolicy reads a policy file (JSON). Manufacturers' roots
// files are read too, relative to the policy file's directory.
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
	for i := range p.Manufacturers {
		m := &p.Manufacturers[i]
		if m.RootsFile == "" {
			continue
		}
		if m.RootsPEM != "" {
			return nil, fmt.Errorf("kms: attestation policy %s: manufacturer %q has both roots_file and roots_pem", path, m.Name)
		}
		f := m.RootsFile
		if !filepath.IsAbs(f) {
			f = filepath.Join(filepath.Dir(path), f)
		}
		raw, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("kms: attestation policy %s: manufacturer %q: %w", path, m.Name, err)
		}
		m.RootsPEM, m.RootsFile = string(raw), ""
	}
	return &p, nil
}

// attestor is a compiled attestation policy. It is immutable: a new policy
// replaces it whole (KMS.attest).
type attestor struct {
	verifier      *attest.TPMVerifier
	bindings      map[string]string // AK fingerprint → custodian DN
	manufacturers map[string]manufacturer
}

// manufacturer is a compiled Manufacturer.
type manufacturer struct {
	name  string
	roots *x509.CertPool
	dn    string
}

// Trust records (store.Instance.AKTrust).
const (
	trustAllowList = "allowlist"
	trustEKPrefix  = "ek:"
)

func newAttestor(p *AttestationPolicy) (*attestor, error) {
	if p == nil {
		return nil, nil
	}
	a := &attestor{bindings: map[string]string{}, manufacturers: map[string]manufacturer{}}
	v := &attest.TPMVerifier{AllowedAKs: map[string]bool{}, Profiles: map[string]map[int][]byte{}}
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
	var err error
	if v.PCRPolicy, err = pcrMap(p.PCRs, "pcrs"); err != nil {
		return nil, err
	}
	for name, pcrs := range p.Profiles {
		if !policy.ValidProfileName(name) {
			return nil, fmt.Errorf("kms: attestation policy: profile name %q (a-z, 0-9, '.', '_', '-'; at most 63)", name)
		}
		if len(pcrs) == 0 {
			return nil, fmt.Errorf("kms: attestation policy: profile %q requires no PCR", name)
		}
		if v.Profiles[name], err = pcrMap(pcrs, "profile "+name); err != nil {
			return nil, err
		}
	}
	for _, m := range p.Manufacturers {
		if !policy.ValidProfileName(m.Name) {
			return nil, fmt.Errorf("kms: attestation policy: manufacturer name %q (a-z, 0-9, '.', '_', '-'; at most 63)", m.Name)
		}
		if _, dup := a.manufacturers[m.Name]; dup {
			return nil, fmt.Errorf("kms: attestation policy: manufacturer %q is named twice", m.Name)
		}
		dn, err := policy.NormalizeDN(m.CustodianDN)
		if err != nil {
			return nil, fmt.Errorf("kms: attestation policy: manufacturer %q: custodian %q: %w", m.Name, m.CustodianDN, err)
		}
		pool, n := x509.NewCertPool(), 0
		for rest := []byte(m.RootsPEM); ; {
			var b *pem.Block
			if b, rest = pem.Decode(rest); b == nil {
				break
			}
			if b.Type != "CERTIFICATE" {
				continue
			}
			cert, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("kms: attestation policy: manufacturer %q: a root does not parse: %w", m.Name, err)
			}
			pool.AddCert(cert)
			n++
		}
		if n == 0 {
			return nil, fmt.Errorf("kms: attestation policy: manufacturer %q has no PEM CERTIFICATE in its roots", m.Name)
		}
		a.manufacturers[m.Name] = manufacturer{name: m.Name, roots: pool, dn: dn}
	}
	a.verifier = v
	return a, nil
}

// pcrMap compiles a PCR index → hex SHA-256 map.
func pcrMap(in map[string]string, what string) (map[int][]byte, error) {
	out := map[int][]byte{}
	for idx, val := range in {
		i, err := strconv.Atoi(idx)
		if err != nil || i < 0 || i > 7 { // quotes cover PCRs 0-7 of the SHA-256 bank
			return nil, fmt.Errorf("kms: attestation policy: %s: PCR index %q", what, idx)
		}
		d, err := hex.DecodeString(val)
		if err != nil || len(d) != 32 {
			return nil, fmt.Errorf("kms: attestation policy: %s: PCR %s value is not a hex SHA-256", what, idx)
		}
		out[i] = d
	}
	return out, nil
}

// hasProfile reports whether the policy defines profile name.
func (a *attestor) hasProfile(name string) bool {
	if a == nil {
		return false
	}
	_, ok := a.verifier.Profiles[name]
	return ok
}

// attestation is the attestation policy in force (nil: attestation is off).
func (k *KMS) attestation() *attestor { return k.attest.Load() }

// SetAttestationPolicy replaces the attestation policy in force (nil turns
// TPM attestation off). A policy that does not compile is refused and the
// one in force stays. Enrollments and re-attestations verified from now
// on use the new policy; a key policy's attestation profile is satisfied
// only while the profile is defined.
func (k *KMS) SetAttestationPolicy(p *AttestationPolicy) error {
	a, err := newAttestor(p)
	if err != nil {
		return err
	}
	k.attest.Store(a)
	return nil
}

var errAttestation = func(msg string) error { return api.Errorf(api.CodeAttestationFailed, "%s", msg) }

// challengePayload is what a challenge asked with an EK certificate binds
// (store.OneTimeSecret.Payload): no secret, the credential by its hash.
type challengePayload struct {
	AKFingerprint  string `json:"ak_fingerprint"`
	CredentialHash string `json:"credential_hash"` // hex SHA-256 of the credential secret
	Manufacturer   string `json:"manufacturer"`
	CustodianDN    string `json:"custodian_dn"`
}

// ekChallenge checks the EK certificate of req against the manufacturers'
// roots and makes a credential for its TPM bound to req's AK. It returns
// the payload to store with the challenge and the credential.
func (k *KMS) ekChallenge(req *api.ChallengeRequest) (*challengePayload, []byte, []byte, error) {
	a := k.attestation()
	if a == nil || len(a.manufacturers) == 0 {
		return nil, nil, nil, api.Errorf(api.CodeInvalidArgument, "This KMS trusts no TPM manufacturer (its attestation policy has no manufacturers): allow-list the attestation key and ask the challenge without ek_cert.")
	}
	if len(req.EKCert) == 0 || len(req.AKPublic) == 0 {
		return nil, nil, nil, api.Errorf(api.CodeInvalidArgument, "ek_cert and ak_public go together.")
	}
	if err := attest.CheckAK(req.AKPublic); err != nil {
		return nil, nil, nil, errAttestation("ak_public is not a restricted TPM signing key dcaas accepts.")
	}
	names := make([]string, 0, len(a.manufacturers))
	for n := range a.manufacturers {
		names = append(names, n)
	}
	slices.Sort(names)
	var why error
	for _, n := range names {
		m := a.manufacturers[n]
		cert, err := attest.VerifyEKCert(req.EKCert, m.roots, nil, k.now())
		if err != nil {
			why = err
			continue
		}
		secret := kcrypto.Random(32)
		blob, enc, err := attest.MakeCredential(cert, req.AKPublic, secret)
		if err != nil {
			return nil, nil, nil, errAttestation("No credential can be made for this EK and AK.")
		}
		sum := sha256.Sum256(secret)
		clear(secret)
		return &challengePayload{
			AKFingerprint: attest.AKFingerprint(req.AKPublic), CredentialHash: hex.EncodeToString(sum[:]),
			Manufacturer: m.name, CustodianDN: m.dn,
		}, blob, enc, nil
	}
	k.log.Info("EK certificate refused", "err", why)
	return nil, nil, nil, errAttestation("The EK certificate does not chain to a trusted TPM manufacturer.")
}

// enrollAttested verifies TPM evidence and registers the sidecar for the
// custodian the platform is bound to.
func (k *KMS) enrollAttested(ctx context.Context, c *call, req *api.EnrollRequest, csr *x509.CertificateRequest) (any, error) {
	if k.attestation() == nil {
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
	ch, err := k.st.PeekOneTime(ctx, tok.kind, tok.hash, k.now())
	if err != nil {
		return nil, consumeErr(err, tok.what)
	}
	out, err := k.verifyAndRegister(ctx, c, req, csr, tok, ch)
	return out, k.spendOnFailure(ctx, c, tok, err)
}

// spendOnFailure consumes the challenge tok with the audit record of a
// failed attestation (err), unless the failure was already recorded: a
// challenge answered wrongly cannot be answered again.
func (k *KMS) spendOnFailure(ctx context.Context, c *call, tok enrollToken, err error) error {
	if err == nil || c.recorded {
		return err
	}
	return c.fail(ctx, func(tx store.Tx) error {
		_, err := tx.ConsumeOneTime(ctx, tok.kind, tok.hash, k.now())
		return err
	}, err)
}

// trustedAK is what vouches for the AK of evidence answering challenge ch:
// the allow-list, or the EK credential the challenge bound. It returns the
// custodian the platform is bound to and the trust record.
func (a *attestor) trustedAK(ev *api.Attestation, ch store.OneTimeSecret) (want attest.Expected, dn, trust string, err error) {
	if len(ch.Payload) == 0 {
		if len(ev.ActivatedCredential) > 0 {
			return want, "", "", api.Errorf(api.CodeInvalidArgument, "activated_credential answers a challenge asked with an EK certificate; this one was not.")
		}
		return want, a.bindings[attest.AKFingerprint(ev.AKPublic)], trustAllowList, nil
	}
	var p challengePayload
	if err := json.Unmarshal(ch.Payload, &p); err != nil {
		return want, "", "", err
	}
	m, ok := a.manufacturers[p.Manufacturer]
	if !ok {
		return want, "", "", errAttestation("The TPM manufacturer that vouched for this challenge is no longer trusted.")
	}
	sum := sha256.Sum256(ev.ActivatedCredential)
	wantSum, _ := hex.DecodeString(p.CredentialHash)
	if subtle.ConstantTimeCompare(sum[:], wantSum) != 1 {
		return want, "", "", errAttestation("The activated credential is not the challenge's: the attestation key is not resident in the TPM of the EK certificate.")
	}
	want.AKTrusted, want.AKFingerprint = true, p.AKFingerprint
	return want, m.dn, trustEKPrefix + m.name, nil
}

// verifyAndRegister verifies the TPM evidence of req for the challenge tok
// (stored as ch) and registers the sidecar, consuming tok.
func (k *KMS) verifyAndRegister(ctx context.Context, c *call, req *api.EnrollRequest, csr *x509.CertificateRequest, tok enrollToken, ch store.OneTimeSecret) (*api.Enrollment, error) {
	ev := req.Attestation
	a := k.attestation()
	spki, err := x509.MarshalPKIXPublicKey(csr.PublicKey)
	if err != nil {
		return nil, api.Errorf(api.CodeInvalidCSR, "The CSR's key cannot be encoded.")
	}
	want, dn, trust, err := a.trustedAK(ev, ch)
	if err != nil {
		return nil, err
	}
	want.Nonce, want.QualifyingData = ev.Nonce, enclave.QualifyingData(ev.Nonce, spki, req.WrappingPublicKey)
	res, err := a.verifier.Verify(ctx, ev, want)
	if err != nil {
		return nil, verifyErr(err)
	}
	app, err := k.st.GetAppByDN(ctx, dn)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, api.Errorf(api.CodeForbidden, "The platform is bound to custodian %q, which does not exist.", dn)
		}
		return nil, storeErr(err, "custodian")
	}
	c.tenant = app.Tenant
	return k.register(ctx, c, tok, app.Tenant, app.DN, api.EnclaveTPM, csr, req.WrappingPublicKey, func(in *store.Instance) {
		now := k.now()
		in.AKFingerprint, in.AKTrust, in.AttestedAt, in.AttestationProfiles = res.AKFingerprint, trust, &now, res.Profiles
	})
}

// verifyErr maps a Verifier's refusal to its API error.
func verifyErr(err error) error {
	switch {
	case errors.Is(err, attest.ErrUnknownAK):
		return errAttestation("The attestation key is not an allowed platform.")
	case errors.Is(err, attest.ErrNonceMismatch):
		return errAttestation("The quote does not cover this challenge and these keys.")
	case errors.Is(err, attest.ErrPCRMismatch):
		return errAttestation("The platform's PCR values do not satisfy the policy.")
	case errors.Is(err, attest.ErrBadSignature), errors.Is(err, attest.ErrMalformed):
		return errAttestation("The attestation evidence does not verify.")
	}
	return err
}

// reattest serves POST /v1/instances/self/attest: a TPM sidecar sends a
// fresh quote over a challenge nonce, bound to the identity key of the
// certificate it calls with and to its transport key, by the AK it
// enrolled with, which must still be trusted as it was then. The KMS
// records the time and the profiles satisfied.
func (k *KMS) reattest(ctx context.Context, c *call) (any, error) {
	var req api.ReattestRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	in := c.caller.Instance
	a := k.attestation()
	switch {
	case a == nil:
		return nil, api.Errorf(api.CodeInvalidArgument, "TPM attestation is not enabled on this KMS.")
	case in.Enclave != string(api.EnclaveTPM):
		return nil, api.Errorf(api.CodeInvalidArgument, "Instance %s runs the %s enclave, which cannot attest; only a sidecar enrolled with TPM attestation re-attests.", in.ID, in.Enclave)
	case req.Attestation == nil || len(req.Attestation.Nonce) == 0:
		return nil, api.Errorf(api.CodeInvalidArgument, "attestation with a nonce is required: ask POST /v1/enrollment/challenge first.")
	}
	ev := req.Attestation
	tok := enrollToken{kind: store.OneTimeChallenge, hash: hashNonce(ev.Nonce), what: "attestation challenge"}
	if _, err := k.st.PeekOneTime(ctx, tok.kind, tok.hash, k.now()); err != nil {
		return nil, consumeErr(err, tok.what)
	}
	out, err := k.verifyReattest(ctx, c, a, in, ev, tok)
	return out, k.spendOnFailure(ctx, c, tok, err)
}

func (k *KMS) verifyReattest(ctx context.Context, c *call, a *attestor, in *store.Instance, ev *api.Attestation, tok enrollToken) (*api.Attested, error) {
	want := attest.Expected{Nonce: ev.Nonce, AKFingerprint: in.AKFingerprint}
	fp := attest.AKFingerprint(ev.AKPublic)
	switch {
	case strings.HasPrefix(in.AKTrust, trustEKPrefix):
		m, ok := a.manufacturers[strings.TrimPrefix(in.AKTrust, trustEKPrefix)]
		if !ok || m.dn != in.CustodianDN {
			return nil, errAttestation("The TPM manufacturer that vouched for this instance's attestation key is no longer trusted for its custodian.")
		}
		want.AKTrusted = true
	default: // the allow-list, or an instance enrolled before the AK was recorded
		if a.bindings[fp] != in.CustodianDN {
			return nil, errAttestation("The attestation key is not an allowed platform of this instance's custodian.")
		}
	}
	if len(c.r.TLS.PeerCertificates) == 0 {
		return nil, errNoCert
	}
	spki, err := x509.MarshalPKIXPublicKey(c.r.TLS.PeerCertificates[0].PublicKey)
	if err != nil {
		return nil, api.Errorf(api.CodeInvalidCert, "The client certificate's key cannot be encoded.")
	}
	want.QualifyingData = enclave.QualifyingData(ev.Nonce, spki, api.PublicKey{KEM: api.KEM(in.WrappingKEM), PublicKey: in.WrappingPublic})
	res, err := a.verifier.Verify(ctx, ev, want)
	if err != nil {
		return nil, verifyErr(err)
	}
	now := k.now()
	c.keyID = in.ID
	err = c.commit(ctx, func(tx store.Tx) error {
		if _, err := tx.ConsumeOneTime(ctx, tok.kind, tok.hash, now); err != nil {
			return consumeErr(err, tok.what)
		}
		return instanceWriteErr(tx.RecordAttestation(ctx, in.ID, now, res.Profiles), in.ID)
	})
	if err != nil {
		return nil, err
	}
	k.log.Info("sidecar re-attested", "instance", in.ID, "profiles", strings.Join(res.Profiles, ","))
	return &api.Attested{AttestedAt: now, AttestationProfiles: res.Profiles}, nil
}
