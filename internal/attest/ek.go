package attest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/google/go-tpm/tpm2"
)

// Trust in an attestation key through the TPM's endorsement key (EK): the
// TPM manufacturer certifies the EK, and TPM2_MakeCredential /
// TPM2_ActivateCredential (TPM 2.0 Part 1, "Credential Protection") prove
// that an AK is resident in the TPM holding that EK: the credential is
// encrypted to the EK and bound to the AK's Name, and the TPM releases it
// only when both keys are loaded in it and the AK's Name matches.

// ErrUntrustedEK: the EK certificate does not chain to a configured
// manufacturer root, is expired, or is not an EK certificate dcaas can use.
var ErrUntrustedEK = errors.New("attest: EK certificate not trusted")

// oidTCGKpEKCertificate is the extended key usage tcg-kp-EKCertificate
// (2.23.133.8.1) that EK certificates may carry.
var oidTCGKpEKCertificate = []int{2, 23, 133, 8, 1}

// VerifyEKCert parses a DER EK certificate and checks its chain, at now, to
// one of roots (the TPM manufacturers' CA certificates), through
// intermediates if needed. The EK must be an RSA 2048 or ECC P-256 key
// (the TCG's reference EK templates). Errors wrap ErrUntrustedEK.
func VerifyEKCert(der []byte, roots, intermediates *x509.CertPool, now time.Time) (*x509.Certificate, error) {
	if roots == nil {
		return nil, fmt.Errorf("%w: no manufacturer roots are configured", ErrUntrustedEK)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%w: it does not parse: %v", ErrUntrustedEK, err)
	}
	// EK certificates often mark their subject alternative name (the TPM's
	// manufacturer, model and version) critical with an empty subject;
	// Go parses it. Any other unhandled critical extension fails Verify.
	_, err = cert.Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: intermediates, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUntrustedEK, err)
	}
	if _, err := ekPublic(cert); err != nil {
		return nil, err
	}
	return cert, nil
}

// HasEKUsage reports whether cert names the tcg-kp-EKCertificate extended
// key usage (informational: many EK certificates carry none).
func HasEKUsage(cert *x509.Certificate) bool {
	for _, u := range cert.UnknownExtKeyUsage {
		if u.Equal(oidTCGKpEKCertificate) {
			return true
		}
	}
	return false
}

// ekPublic is the EK's TPMT_PUBLIC: the TCG reference EK template of its
// type with the certificate's key as its unique field. That is what
// TPM2_MakeCredential encrypts to.
func ekPublic(cert *x509.Certificate) (*tpm2.TPMTPublic, error) {
	switch k := cert.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("%w: the ECC EK is not on P-256", ErrUntrustedEK)
		}
		raw, err := k.Bytes() // uncompressed point: 0x04 || X || Y
		if err != nil {
			return nil, fmt.Errorf("%w: EK point: %v", ErrUntrustedEK, err)
		}
		pub := tpm2.ECCEKTemplate
		pub.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
			X: tpm2.TPM2BECCParameter{Buffer: raw[1:33]},
			Y: tpm2.TPM2BECCParameter{Buffer: raw[33:]},
		})
		return &pub, nil
	case *rsa.PublicKey:
		if k.N.BitLen() != 2048 || k.E != 65537 {
			return nil, fmt.Errorf("%w: the RSA EK is not a 2048-bit key with exponent 65537", ErrUntrustedEK)
		}
		pub := tpm2.RSAEKTemplate
		pub.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: k.N.FillBytes(make([]byte, 256))})
		return &pub, nil
	}
	return nil, fmt.Errorf("%w: the EK is neither RSA nor ECC", ErrUntrustedEK)
}

// AKName is the TPM Name of an AK: its name algorithm (SHA-256) and the
// SHA-256 of its TPMT_PUBLIC.
func AKName(akPublic []byte) []byte {
	sum := sha256.Sum256(akPublic)
	return append([]byte{0x00, 0x0b}, sum[:]...)
}

// CheckAK checks that akPublic is an attestation key dcaas accepts (see
// TPMVerifier.Verify): a restricted, TPM-generated, non-exportable
// ECDSA P-256 or RSA signing key with SHA-256. Errors wrap ErrMalformed.
func CheckAK(akPublic []byte) error {
	_, err := parseAK(akPublic)
	return err
}

// MakeCredential is TPM2_MakeCredential in software: it encrypts secret to
// the EK of ekCert (checked by VerifyEKCert), bound to the Name of the AK
// akPublic. It returns the TPM2B_ID_OBJECT and TPM2B_ENCRYPTED_SECRET
// contents for TPM2_ActivateCredential, which gives secret back only in
// the TPM holding that EK, with that AK loaded.
func MakeCredential(ekCert *x509.Certificate, akPublic, secret []byte) (credentialBlob, encryptedSecret []byte, err error) {
	if err := CheckAK(akPublic); err != nil {
		return nil, nil, err
	}
	pub, err := ekPublic(ekCert)
	if err != nil {
		return nil, nil, err
	}
	ek, err := tpm2.ImportEncapsulationKey(pub)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: EK: %v", ErrUntrustedEK, err)
	}
	return tpm2.CreateCredential(rand.Reader, ek, AKName(akPublic), secret)
}
