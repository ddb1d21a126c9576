package ca

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"net/url"

	"github.com/dcaas/dcaas/internal/policy"
)

// dcaas's certificate fields live under the arc 2.25.952285655. The brief
// was 2.25.<a random UUID as an integer>, but Go's x509 parser rejects
// certificates with an OID arc of 2^31 or more, so the arc is a random
// 31-bit number instead (equivalently, under X.667, the UUID
// 00000000-0000-0000-0000-000038c2b9d7, which no UUID generator produces
// and no one can have registered). Replace it with an IANA Private
// Enterprise Number arc before certificates must outlive a re-enrollment.
//
//	arc.1.1  extension: instance id, UTF8String
//	arc.1.2  extension: bound custodian DN (canonical RFC 4514), UTF8String
//	arc.1.3  extension: wrapping key, SEQUENCE { kem UTF8String, key OCTET STRING }
//	arc.2.1  extended key usage: dcaas key wrapping
//
// The extensions are not critical: the wrapping EKU already keeps wrapping
// certificates out of TLS.
var (
	oidInstanceID  = asn1.ObjectIdentifier{2, 25, 952285655, 1, 1}
	oidCustodianDN = asn1.ObjectIdentifier{2, 25, 952285655, 1, 2}
	oidWrappingKey = asn1.ObjectIdentifier{2, 25, 952285655, 1, 3}
	oidEKUWrapping = asn1.ObjectIdentifier{2, 25, 952285655, 2, 1}
)

// sidecarOU is the organizational unit of instance and wrapping
// certificates; apps never have one.
const sidecarOU = "sidecar"

// instanceURIScheme and instanceURIHost make the URI SAN
// dcaas://instance/<id>.
const (
	instanceURIScheme = "dcaas"
	instanceURIHost   = "instance"
)

// wrappingKey is the ASN.1 of the wrapping-key extension.
type wrappingKey struct {
	KEM       string `asn1:"utf8"`
	PublicKey []byte
}

func stringExt(id asn1.ObjectIdentifier, s string) (pkix.Extension, error) {
	v, err := asn1.MarshalWithParams(s, "utf8")
	return pkix.Extension{Id: id, Value: v}, err
}

// findExt returns the value of cert's only extension id; ok is false when
// it is absent, err set when it appears twice.
func findExt(cert *x509.Certificate, id asn1.ObjectIdentifier) (value []byte, ok bool, err error) {
	for _, e := range cert.Extensions {
		if !e.Id.Equal(id) {
			continue
		}
		if ok {
			return nil, false, fmt.Errorf("%w: extension %v appears twice", ErrMalformed, id)
		}
		value, ok = e.Value, true
	}
	return value, ok, nil
}

// stringFromExt reads a required UTF8String extension.
func stringFromExt(cert *x509.Certificate, id asn1.ObjectIdentifier, what string) (string, error) {
	v, ok, err := findExt(cert, id)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", fmt.Errorf("%w: no %s extension", ErrMalformed, what)
	}
	var s string
	if rest, err := asn1.UnmarshalWithParams(v, &s, "utf8"); err != nil || len(rest) != 0 {
		return "", fmt.Errorf("%w: bad %s extension", ErrMalformed, what)
	}
	return s, nil
}

// validInstanceID allows 1..128 ASCII letters, digits, "-", "_" and ".",
// so that an id is the same in a DN, a URI and a store key.
func validInstanceID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for _, c := range []byte(id) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}

func instanceURI(id string) *url.URL {
	return &url.URL{Scheme: instanceURIScheme, Host: instanceURIHost, Path: "/" + id}
}

// sidecarSubject is CN=<id>,OU=sidecar,O=<tenant>.
func sidecarSubject(instanceID, tenant string) pkix.Name {
	return pkix.Name{CommonName: instanceID, OrganizationalUnit: []string{sidecarOU}, Organization: []string{tenant}}
}

// checkSidecarInput validates the arguments shared by IssueInstance and
// IssueWrapping and returns the canonical custodian DN.
func checkSidecarInput(instanceID, tenant, custodianDN string) (string, error) {
	if !validInstanceID(instanceID) {
		return "", fmt.Errorf("%w: instance id %q is not 1..128 letters, digits, '-', '_' or '.'", ErrInvalidInput, instanceID)
	}
	if tenant == "" {
		return "", fmt.Errorf("%w: no tenant", ErrInvalidInput)
	}
	dn, err := policy.NormalizeDN(custodianDN)
	if err != nil {
		return "", fmt.Errorf("%w: custodian DN: %w", ErrInvalidInput, err)
	}
	return dn, checkSubject(sidecarSubject(instanceID, tenant))
}

// sidecarFields reads and cross-checks what instance and wrapping
// certificates share: the id (extension, CN and URI SAN agree), the tenant
// and the custodian DN.
func sidecarFields(cert *x509.Certificate) (id, tenant, custodian string, err error) {
	id, err = stringFromExt(cert, oidInstanceID, "instance id")
	if err != nil {
		return "", "", "", err
	}
	if !validInstanceID(id) || cert.Subject.CommonName != id {
		return "", "", "", fmt.Errorf("%w: instance id %q does not match the subject", ErrMalformed, id)
	}
	if len(cert.URIs) != 1 || cert.URIs[0].String() != instanceURI(id).String() {
		return "", "", "", fmt.Errorf("%w: the URI SAN is not %s", ErrMalformed, instanceURI(id))
	}
	s := cert.Subject
	if len(s.Organization) != 1 || s.Organization[0] == "" || len(s.OrganizationalUnit) != 1 || s.OrganizationalUnit[0] != sidecarOU {
		return "", "", "", fmt.Errorf("%w: subject %q is not CN=<id>,OU=%s,O=<tenant>", ErrMalformed, s.String(), sidecarOU)
	}
	custodian, err = stringFromExt(cert, oidCustodianDN, "custodian DN")
	if err != nil {
		return "", "", "", err
	}
	if n, err := policy.NormalizeDN(custodian); err != nil || n != custodian {
		return "", "", "", fmt.Errorf("%w: custodian DN %q is not canonical", ErrMalformed, custodian)
	}
	return id, s.Organization[0], custodian, nil
}

func pkixExt(id asn1.ObjectIdentifier, value []byte) pkix.Extension {
	return pkix.Extension{Id: id, Value: value}
}

// sidecarExts are the instance id and custodian DN extensions.
func sidecarExts(instanceID, custodianDN string) ([]pkix.Extension, error) {
	id, err := stringExt(oidInstanceID, instanceID)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	dn, err := stringExt(oidCustodianDN, custodianDN)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	return []pkix.Extension{id, dn}, nil
}
