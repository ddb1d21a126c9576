package kms

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/ca"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/policy"
	"github.com/dcaas/dcaas/internal/store"
)

const enrollTokenPrefix = "dcet_"

func (k *KMS) createToken(ctx context.Context, c *call) (any, error) {
	var req api.CreateTokenRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	ttl := k.cfg.TokenTTL
	if req.TTLSeconds < 0 || int64(req.TTLSeconds) > int64(k.cfg.MaxTokenTTL/time.Second) { // in seconds: no overflow
		return nil, api.Errorf(api.CodeInvalidArgument, "ttl_seconds must be between 1 and %d.", int(k.cfg.MaxTokenTTL/time.Second))
	}
	if req.TTLSeconds > 0 {
		ttl = time.Duration(req.TTLSeconds) * time.Second
	}
	who := c.caller
	dn := req.CustodianDN
	if dn != "" {
		n, err := policy.NormalizeDN(dn)
		if err != nil {
			return nil, api.Errorf(api.CodeInvalidArgument, "custodian_dn is not a valid DN: %v", err)
		}
		dn = n
	}
	switch who.Role {
	case api.RoleCustodian:
		if dn == "" {
			dn = who.DN
		}
		if dn != who.DN {
			return nil, api.Errorf(api.CodeForbidden, "A custodian may request enrollment tokens only for itself.")
		}
	case api.RolePipeline, api.RoleAdmin:
		if dn == "" {
			return nil, api.Errorf(api.CodeInvalidArgument, "custodian_dn is required: name the custodian the sidecar will serve.")
		}
	}
	app, err := k.st.GetAppByDN(ctx, dn)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, api.Errorf(api.CodeNotFound, "There is no custodian %q.", dn)
		}
		return nil, storeErr(err, "custodian")
	}
	if app.Role != string(api.RoleCustodian) {
		return nil, api.Errorf(api.CodeInvalidArgument, "%q is not a custodian.", dn)
	}
	if who.Role != api.RoleAdmin && app.Tenant != who.Tenant {
		return nil, api.Errorf(api.CodeWrongTenant, "The custodian belongs to another tenant.")
	}
	c.tenant = app.Tenant
	token, hash := kcrypto.NewToken(enrollTokenPrefix)
	now := k.now()
	exp := now.Add(ttl)
	err = c.commit(ctx, func(tx store.Tx) error {
		return putOneTime(ctx, tx, store.OneTimeSecret{
			Hash: hash, Kind: store.OneTimeEnrollToken, Tenant: app.Tenant, Subject: app.DN,
			CreatedBy: who.DN, CreatedAt: now, ExpiresAt: exp,
		}, "token")
	})
	if err != nil {
		return nil, err
	}
	return api.EnrollmentToken{Token: token, ExpiresAt: exp, CustodianDN: app.DN}, nil
}

func (k *KMS) createChallenge(ctx context.Context, c *call) (any, error) {
	var req api.ChallengeRequest
	if err := c.decodeOptionalInto(&req); err != nil {
		return nil, err
	}
	var out api.Challenge
	var payload []byte
	if len(req.EKCert) > 0 || len(req.AKPublic) > 0 {
		// An AK vouched for by its TPM's EK certificate (attestation.go).
		p, blob, enc, err := k.ekChallenge(&req)
		if err != nil {
			return nil, err
		}
		if payload, err = json.Marshal(p); err != nil {
			return nil, err
		}
		out.CredentialBlob, out.EncryptedSecret = blob, enc
	}
	nonce := kcrypto.Random(32)
	now := k.now()
	exp := now.Add(k.cfg.ChallengeTTL)
	err := c.commit(ctx, func(tx store.Tx) error {
		return putOneTime(ctx, tx, store.OneTimeSecret{
			Hash: hashNonce(nonce), Kind: store.OneTimeChallenge, CreatedAt: now, ExpiresAt: exp, Payload: payload,
		}, "challenge")
	})
	if err != nil {
		return nil, err
	}
	out.Nonce, out.ExpiresAt = nonce, exp
	return out, nil
}

// putOneTime stores a single-use secret (what names it in errors).
func putOneTime(ctx context.Context, st store.OneTime, s store.OneTimeSecret, what string) error {
	if err := st.PutOneTime(ctx, s); err != nil {
		return storeErr(err, what)
	}
	return nil
}

// consumeErr maps a failed single-use consumption to its API error.
func consumeErr(err error, what string) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return api.Errorf(api.CodeInvalidToken, "The %s is not valid.", what)
	case errors.Is(err, store.ErrUsed):
		return api.Errorf(api.CodeAlreadyUsed, "The %s has already been used.", what)
	case errors.Is(err, store.ErrExpired):
		return api.Errorf(api.CodeExpired, "The %s has expired.", what)
	}
	return storeErr(err, what)
}

func (k *KMS) enroll(ctx context.Context, c *call) (_ any, err error) {
	var req api.EnrollRequest
	defer func() { k.mx.enrolled(req.Attestation != nil, err) }()
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	// Validate everything before the token is consumed, so bad input does
	// not burn a token.
	csr, err := parseCSR(req.CSRPEM)
	if err != nil {
		return nil, err
	}
	if _, err := kcrypto.ParseKEMPublicKey(req.WrappingPublicKey); err != nil {
		return nil, api.Errorf(api.CodeInvalidArgument, "wrapping_public_key is not usable: %v", err)
	}
	switch {
	case req.Attestation != nil:
		return k.enrollAttested(ctx, c, &req, csr)
	case req.Token == "":
		return nil, api.Errorf(api.CodeUnauthenticated, "Enrollment needs a token (or attestation evidence).")
	}
	// The token is read here and consumed in the transaction that
	// registers the instance: a failure in between does not burn it.
	hash := kcrypto.HashToken(req.Token)
	tok, err := k.st.PeekOneTime(ctx, store.OneTimeEnrollToken, hash, k.now())
	if err != nil {
		return nil, consumeErr(err, "enrollment token")
	}
	c.tenant = tok.Tenant
	return k.register(ctx, c, enrollToken{store.OneTimeEnrollToken, hash, "enrollment token"}, tok.Tenant, tok.Subject, api.EnclaveSoftware, csr, req.WrappingPublicKey, nil)
}

// enrollToken is the single-use secret an enrollment consumes when it
// registers the instance: the enrollment token, or the attestation
// challenge.
type enrollToken struct {
	kind string
	hash []byte
	what string // for error messages
}

// parseCSR decodes and checks a PEM CSR (signature and key type).
func parseCSR(s string) (*x509.CertificateRequest, error) {
	block, _ := pem.Decode([]byte(s))
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, api.Errorf(api.CodeInvalidCSR, "csr_pem must hold one PEM \"CERTIFICATE REQUEST\" block.")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, api.Errorf(api.CodeInvalidCSR, "The CSR does not parse.")
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, api.Errorf(api.CodeInvalidCSR, "The CSR's signature does not verify.")
	}
	switch pub := csr.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if pub.Curve != elliptic.P256() && pub.Curve != elliptic.P384() {
			return nil, api.Errorf(api.CodeInvalidCSR, "The CSR's ECDSA key must be on P-256 or P-384.")
		}
	case ed25519.PublicKey:
	default:
		return nil, api.Errorf(api.CodeInvalidCSR, "The CSR's key must be ECDSA P-256/P-384 or Ed25519.")
	}
	return csr, nil
}

// register certifies and registers a sidecar instance bound to custodianDN,
// consuming tok, in the transaction that stores the call's audit record.
// attested, if not nil, records the instance's TPM attestation in it.
func (k *KMS) register(ctx context.Context, c *call, tok enrollToken, tenant, custodianDN string, enclave api.Enclave, csr *x509.CertificateRequest, wrap api.PublicKey, attested func(*store.Instance)) (*api.Enrollment, error) {
	if _, err := k.st.GetAppByDN(ctx, custodianDN); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, api.Errorf(api.CodeForbidden, "The custodian %q no longer exists.", custodianDN)
		}
		return nil, storeErr(err, "custodian")
	}
	id := kcrypto.RandomID(instancePrefix)
	authority := k.authority()
	idDER, idCert, err := authority.IssueInstance(csr.PublicKey, id, tenant, custodianDN, k.cfg.InstanceCertTTL)
	if err != nil {
		return nil, err
	}
	wDER, wCert, err := authority.IssueWrapping(csr.PublicKey, wrap.KEM, wrap.PublicKey, id, tenant, custodianDN, k.cfg.InstanceCertTTL)
	if err != nil {
		return nil, err
	}
	in := store.Instance{
		ID: id, Tenant: tenant, CustodianDN: custodianDN, Enclave: string(enclave),
		CertSerial: ca.SerialString(idCert), WrappingSerial: ca.SerialString(wCert),
		WrappingKEM: string(wrap.KEM), WrappingPublic: wrap.PublicKey, EnrolledAt: k.now(),
	}
	if attested != nil {
		attested(&in)
	}
	certs := []store.Cert{
		{Serial: ca.SerialString(idCert), Kind: store.CertInstance, Tenant: tenant, Subject: id, NotAfter: idCert.NotAfter},
		{Serial: ca.SerialString(wCert), Kind: store.CertWrapping, Tenant: tenant, Subject: id, NotAfter: wCert.NotAfter},
	}
	c.keyID = id
	err = c.commit(ctx, func(tx store.Tx) error {
		if err := tx.EnrollInstance(ctx, tok.kind, tok.hash, in, certs); err != nil {
			if errors.Is(err, store.ErrUsed) || errors.Is(err, store.ErrExpired) || errors.Is(err, store.ErrNotFound) {
				return consumeErr(err, tok.what)
			}
			return storeErr(err, "instance")
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	k.log.Info("sidecar enrolled", "instance", id, "tenant", tenant, "custodian", custodianDN, "enclave", enclave)
	return &api.Enrollment{
		InstanceID: id, CertPEM: pemCert(idDER), WrappingCertPEM: pemCert(wDER),
		CAPEM: authority.BundlePEM(), CustodianDN: custodianDN,
	}, nil
}

// hashNonce is how a challenge nonce is stored (never in clear).
func hashNonce(nonce []byte) []byte { return kcrypto.HashToken(string(nonce)) }
