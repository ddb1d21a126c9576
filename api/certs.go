package api

import "time"

// RenewCertificateRequest is the body of POST /v1/apps/self/certificate
// (the caller renews its own client certificate) and of POST
// /v1/tenants/{tenant}/apps/{app}/certificate (an admin issues one for an
// app). Without CSRPEM the KMS generates the key pair and the answer
// carries the private key in KeyPEM.
type RenewCertificateRequest struct {
	CSRPEM string `json:"csr_pem,omitempty"`
}

// AppCertificate is one client certificate of an application, as the
// KMS's certificate registry knows it.
type AppCertificate struct {
	// Serial is the certificate's serial number, lower-case hex without
	// leading zeros.
	Serial    string     `json:"serial"`
	NotAfter  time.Time  `json:"not_after"`
	Revoked   bool       `json:"revoked"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// AppCertificates is the answer to GET …/certificates: every certificate
// the KMS issued to the application, expired and revoked ones included,
// soonest expiry first.
type AppCertificates struct {
	Certificates []AppCertificate `json:"certificates"`
}

// RevokeCertificatesRequest is the body of POST …/certificates/revoke:
// exactly one of Serial (one certificate, hex; case, colons and leading
// zeros do not matter) or All (every certificate of the application,
// including the one the caller may be using).
type RevokeCertificatesRequest struct {
	Serial string `json:"serial,omitempty"`
	All    bool   `json:"all,omitempty"`
}

// RevokedCertificates answers a certificate revocation: the serials now
// revoked (a serial revoked before is listed again; with All, only those
// this request revoked).
type RevokedCertificates struct {
	Revoked []string `json:"revoked"`
}

// CAPhase is where the KMS CA is in a rotation.
type CAPhase string

// CA phases. A rotation goes stable → prepared → activated → stable.
const (
	// CAPhaseStable: one CA, trusted and issuing.
	CAPhaseStable CAPhase = "stable"
	// CAPhasePrepared: the next CA is trusted (in the bundle) but the
	// current one still issues.
	CAPhasePrepared CAPhase = "prepared"
	// CAPhaseActivated: the next CA issues; the previous one is still
	// trusted until it is retired.
	CAPhaseActivated CAPhase = "activated"
)

// CACertificate is one CA certificate of the trust bundle.
type CACertificate struct {
	Serial    string    `json:"serial"`
	Subject   string    `json:"subject"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	// Issuing is true for the one CA that issues new certificates.
	Issuing bool   `json:"issuing"`
	CertPEM string `json:"cert_pem"`
}

// CATrust is the answer to GET /v1/ca and to the CA rotation steps: the
// trust bundle (every CA certificate the KMS trusts, the issuing one
// first), which CA issues, and the rotation phase.
type CATrust struct {
	BundlePEM     string          `json:"bundle_pem"`
	IssuingSerial string          `json:"issuing_serial"`
	Phase         CAPhase         `json:"phase"`
	CAs           []CACertificate `json:"cas"`
	// ChangedAt is when the last rotation step took effect (absent before
	// the first rotation).
	ChangedAt *time.Time `json:"changed_at,omitempty"`
}
