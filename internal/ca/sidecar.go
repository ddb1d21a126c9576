package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
)

// InstanceInfo is what an instance certificate says about a sidecar.
type InstanceInfo struct {
	InstanceID  string
	Tenant      string
	CustodianDN string // canonical
	Serial      string // SerialString of the certificate
}

// WrappingInfo is what a wrapping certificate says about a sidecar and its
// key-transport key.
type WrappingInfo struct {
	InstanceID  string
	Tenant      string
	CustodianDN string // canonical
	KEM         api.KEM
	// PublicKey is the RFC 9180 serialization of the HPKE public key; the
	// caller owns the slice.
	PublicKey []byte
	Serial    string
}

// IssueInstance issues a sidecar's TLS identity for pub: clientAuth and
// serverAuth, subject CN=<instanceID>,OU=sidecar,O=<tenant>, the URI SAN
// dcaas://instance/<instanceID>, and the instance id and the canonical
// custodian DN in dcaas extensions (see ext.go). instanceID is 1..128
// letters, digits, "-", "_" or ".".
func (c *CA) IssueInstance(pub crypto.PublicKey, instanceID, tenant, custodianDN string, ttl time.Duration) ([]byte, *x509.Certificate, error) {
	custodian, err := checkSidecarInput(instanceID, tenant, custodianDN)
	if err != nil {
		return nil, nil, err
	}
	if err := checkPublicKey(pub); err != nil {
		return nil, nil, err
	}
	exts, err := sidecarExts(instanceID, custodian)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		Subject:         sidecarSubject(instanceID, tenant),
		KeyUsage:        x509.KeyUsageDigitalSignature,
		ExtKeyUsage:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		URIs:            []*url.URL{instanceURI(instanceID)},
		DNSNames:        []string{InstanceServerName(instanceID)},
		ExtraExtensions: exts,
	}
	return c.issue(tmpl, pub, ttl)
}

// InstanceServerName is the DNS name an instance certificate carries, so
// a client of a sidecar's mutual-TLS listener can verify it is talking to
// that one instance: set tls.Config.ServerName to it.
func InstanceServerName(instanceID string) string {
	return strings.ToLower(strings.ReplaceAll(instanceID, "_", "-")) + ".sidecar.dcaas.internal"
}

// ParseInstance reads an instance certificate's dcaas fields, checking
// that they agree with each other. It does not check the chain or
// validity: call CA.Verify first. Errors wrap ErrMalformed.
func ParseInstance(cert *x509.Certificate) (InstanceInfo, error) {
	if cert == nil || cert.IsCA {
		return InstanceInfo{}, fmt.Errorf("%w: not a leaf certificate", ErrMalformed)
	}
	if !slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageClientAuth) || !slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageServerAuth) {
		return InstanceInfo{}, fmt.Errorf("%w: not an instance certificate (needs clientAuth and serverAuth)", ErrMalformed)
	}
	id, tenant, custodian, err := sidecarFields(cert)
	if err != nil {
		return InstanceInfo{}, err
	}
	return InstanceInfo{InstanceID: id, Tenant: tenant, CustodianDN: custodian, Serial: SerialString(cert)}, nil
}

// IssueWrapping issues a sidecar's wrapping certificate: key usage
// keyAgreement|keyEncipherment, the dcaas wrapping EKU and no TLS EKU (so
// TLS refuses it), the sidecar subject and URI SAN of IssueInstance, the
// instance id and custodian DN extensions, and the HPKE public key
// kemPublic (the RFC 9180 serialization for kem) in the wrapping-key
// extension. For p256 the key is also the SubjectPublicKeyInfo (as an
// id-ecPublicKey P-256 point). X.509 has no encoding for the hybrids, and
// crypto/x509 cannot write an X25519 key, so for x25519,
// mlkem768-x25519 and mlkem768-p256 the SubjectPublicKeyInfo is
// identityPub, the sidecar's identity key; the extension is authoritative
// in every case.
func (c *CA) IssueWrapping(identityPub crypto.PublicKey, kem api.KEM, kemPublic []byte, instanceID, tenant, custodianDN string, ttl time.Duration) ([]byte, *x509.Certificate, error) {
	custodian, err := checkSidecarInput(instanceID, tenant, custodianDN)
	if err != nil {
		return nil, nil, err
	}
	if err := checkKEMKey(kem, kemPublic); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInvalidInput, err)
	}
	spki := identityPub
	if kem == api.KEMP256 {
		if spki, err = ecdh.P256().NewPublicKey(kemPublic); err != nil {
			return nil, nil, fmt.Errorf("%w: %w", ErrInvalidInput, err)
		}
	} else if err := checkPublicKey(identityPub); err != nil {
		return nil, nil, err
	}
	exts, err := sidecarExts(instanceID, custodian)
	if err != nil {
		return nil, nil, err
	}
	wk, err := asn1.Marshal(wrappingKey{KEM: string(kem), PublicKey: kemPublic})
	if err != nil {
		return nil, nil, fmt.Errorf("ca: %w", err)
	}
	tmpl := &x509.Certificate{
		Subject:            sidecarSubject(instanceID, tenant),
		KeyUsage:           x509.KeyUsageKeyAgreement | x509.KeyUsageKeyEncipherment,
		UnknownExtKeyUsage: []asn1.ObjectIdentifier{oidEKUWrapping},
		URIs:               []*url.URL{instanceURI(instanceID)},
		ExtraExtensions:    append(exts, pkixExt(oidWrappingKey, wk)),
	}
	return c.issue(tmpl, spki, ttl)
}

// ParseWrapping reads a wrapping certificate's dcaas fields and checks
// that they agree with each other and, where the SubjectPublicKeyInfo is
// an HPKE key (p256; x25519 if another issuer wrote one), with it. It does
// not check the chain or validity: call CA.Verify first. Errors wrap
// ErrMalformed.
func ParseWrapping(cert *x509.Certificate) (WrappingInfo, error) {
	if cert == nil || cert.IsCA {
		return WrappingInfo{}, fmt.Errorf("%w: not a leaf certificate", ErrMalformed)
	}
	if len(cert.ExtKeyUsage) != 0 || len(cert.UnknownExtKeyUsage) != 1 || !cert.UnknownExtKeyUsage[0].Equal(oidEKUWrapping) {
		return WrappingInfo{}, fmt.Errorf("%w: not a wrapping certificate (extended key usage)", ErrMalformed)
	}
	if want := x509.KeyUsageKeyAgreement | x509.KeyUsageKeyEncipherment; cert.KeyUsage != want {
		return WrappingInfo{}, fmt.Errorf("%w: not a wrapping certificate (key usage)", ErrMalformed)
	}
	id, tenant, custodian, err := sidecarFields(cert)
	if err != nil {
		return WrappingInfo{}, err
	}
	v, ok, err := findExt(cert, oidWrappingKey)
	if err != nil {
		return WrappingInfo{}, err
	}
	var wk wrappingKey
	if !ok {
		return WrappingInfo{}, fmt.Errorf("%w: no wrapping key extension", ErrMalformed)
	}
	if rest, err := asn1.Unmarshal(v, &wk); err != nil || len(rest) != 0 {
		return WrappingInfo{}, fmt.Errorf("%w: bad wrapping key extension", ErrMalformed)
	}
	kem := api.KEM(wk.KEM)
	if err := checkKEMKey(kem, wk.PublicKey); err != nil {
		return WrappingInfo{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if err := checkSPKI(cert.PublicKey, kem, wk.PublicKey); err != nil {
		return WrappingInfo{}, err
	}
	return WrappingInfo{
		InstanceID:  id,
		Tenant:      tenant,
		CustodianDN: custodian,
		KEM:         kem,
		PublicKey:   bytes.Clone(wk.PublicKey),
		Serial:      SerialString(cert),
	}, nil
}

// checkSPKI checks that a SubjectPublicKeyInfo that is an HPKE key is the
// wrapping key, and that p256 certificates carry it there.
func checkSPKI(spki crypto.PublicKey, kem api.KEM, key []byte) error {
	var raw []byte
	var curve ecdh.Curve
	switch k := spki.(type) {
	case *ecdh.PublicKey: // X25519; crypto/x509 parses it so
		raw, curve = k.Bytes(), k.Curve()
	case *ecdsa.PublicKey:
		if kem != api.KEMP256 {
			return nil // the identity key of a non-p256 wrapping certificate
		}
		e, err := k.ECDH()
		if err != nil {
			return fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		raw, curve = e.Bytes(), e.Curve()
	default:
		if kem == api.KEMP256 {
			return fmt.Errorf("%w: a p256 wrapping certificate must carry the key in SubjectPublicKeyInfo", ErrMalformed)
		}
		return nil
	}
	wantCurve := map[api.KEM]ecdh.Curve{api.KEMP256: ecdh.P256(), api.KEMX25519: ecdh.X25519()}[kem]
	if curve != wantCurve || !bytes.Equal(raw, key) {
		return fmt.Errorf("%w: SubjectPublicKeyInfo and wrapping key extension disagree", ErrMalformed)
	}
	return nil
}

// checkKEMKey checks that key is a valid public key of kem.
func checkKEMKey(kem api.KEM, key []byte) error {
	err := kcrypto.CheckKEMPublicKey(kem, key)
	switch {
	case errors.Is(err, kcrypto.ErrUnknownKEM):
		return fmt.Errorf("unknown KEM %q", kem)
	case err != nil:
		return fmt.Errorf("not a %s public key: %w", kem, err)
	}
	return nil
}
