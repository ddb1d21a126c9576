package attest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"fmt"
	"math/big"

	"github.com/google/go-tpm/tpm2"
)

// The RSA attestation key sizes accepted: TPMs make 2048-, 3072- and
// 4096-bit keys; the bound also caps the work outside input can cause.
const (
	minRSABits = 2048
	maxRSABits = 4096
)

// ak is a parsed attestation key: exactly one of ecdsa and rsa is set.
type ak struct {
	ecdsa *ecdsa.PublicKey
	rsa   *rsa.PublicKey
}

// parseAK parses a TPMT_PUBLIC that must be a restricted signing key the
// TPM generated and cannot export (FixedTPM, FixedParent,
// SensitiveDataOrigin), ECDSA P-256 or RSA of 2048 to 4096 bits, with a
// SHA-256 scheme and name algorithm. A restricted key only signs what the TPM itself
// produced, which is what makes its quotes evidence.
func parseAK(b []byte) (*ak, error) {
	pub, err := unmarshalExact[tpm2.TPMTPublic](b)
	if err != nil {
		return nil, fmt.Errorf("%w: AK public area: %v", ErrMalformed, err)
	}
	if pub.NameAlg != tpm2.TPMAlgSHA256 {
		return nil, fmt.Errorf("%w: AK name algorithm is not SHA-256", ErrMalformed)
	}
	a := pub.ObjectAttributes
	if !a.Restricted || !a.SignEncrypt || a.Decrypt || !a.FixedTPM || !a.FixedParent || !a.SensitiveDataOrigin {
		return nil, fmt.Errorf("%w: AK is not a restricted, TPM-generated, non-exportable signing key", ErrMalformed)
	}
	switch pub.Type {
	case tpm2.TPMAlgECC:
		return parseECCAK(pub)
	case tpm2.TPMAlgRSA:
		return parseRSAAK(pub)
	}
	return nil, fmt.Errorf("%w: AK type %#x is neither ECC nor RSA", ErrMalformed, uint16(pub.Type))
}

func parseECCAK(pub *tpm2.TPMTPublic) (*ak, error) {
	parms, err := pub.Parameters.ECCDetail()
	if err != nil {
		return nil, fmt.Errorf("%w: AK parameters: %v", ErrMalformed, err)
	}
	if parms.CurveID != tpm2.TPMECCNistP256 {
		return nil, fmt.Errorf("%w: ECC AK is not P-256", ErrMalformed)
	}
	if parms.Scheme.Scheme != tpm2.TPMAlgECDSA {
		return nil, fmt.Errorf("%w: ECC AK scheme is not ECDSA", ErrMalformed)
	}
	if d, err := parms.Scheme.Details.ECDSA(); err != nil || d.HashAlg != tpm2.TPMAlgSHA256 {
		return nil, errSchemeHash
	}
	p, err := pub.Unique.ECC()
	if err != nil || len(p.X.Buffer) > 32 || len(p.Y.Buffer) > 32 {
		return nil, fmt.Errorf("%w: ECC AK point", ErrMalformed)
	}
	point := make([]byte, 65)
	point[0] = 4
	copy(point[33-len(p.X.Buffer):33], p.X.Buffer)
	copy(point[65-len(p.Y.Buffer):], p.Y.Buffer)
	k, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
	if err != nil {
		return nil, fmt.Errorf("%w: ECC AK point: %v", ErrMalformed, err)
	}
	return &ak{ecdsa: k}, nil
}

func parseRSAAK(pub *tpm2.TPMTPublic) (*ak, error) {
	parms, err := pub.Parameters.RSADetail()
	if err != nil {
		return nil, fmt.Errorf("%w: AK parameters: %v", ErrMalformed, err)
	}
	switch parms.Scheme.Scheme {
	case tpm2.TPMAlgRSASSA:
		if d, err := parms.Scheme.Details.RSASSA(); err != nil || d.HashAlg != tpm2.TPMAlgSHA256 {
			return nil, errSchemeHash
		}
	case tpm2.TPMAlgRSAPSS:
		if d, err := parms.Scheme.Details.RSAPSS(); err != nil || d.HashAlg != tpm2.TPMAlgSHA256 {
			return nil, errSchemeHash
		}
	default:
		return nil, fmt.Errorf("%w: RSA AK scheme is neither RSASSA nor RSA-PSS", ErrMalformed)
	}
	n, err := pub.Unique.RSA()
	if err != nil {
		return nil, fmt.Errorf("%w: RSA AK modulus: %v", ErrMalformed, err)
	}
	bits := int(parms.KeyBits)
	if bits < minRSABits || bits > maxRSABits || len(n.Buffer)*8 != bits || n.Buffer[0]&0x80 == 0 {
		return nil, fmt.Errorf("%w: RSA AK modulus must be %d to %d bits, of its stated size", ErrMalformed, minRSABits, maxRSABits)
	}
	if parms.Exponent != 0 && parms.Exponent != 65537 {
		return nil, fmt.Errorf("%w: RSA AK exponent", ErrMalformed)
	}
	return &ak{rsa: &rsa.PublicKey{N: new(big.Int).SetBytes(n.Buffer), E: 65537}}, nil
}

// errSchemeHash: the AK's scheme uses a hash other than SHA-256.
var errSchemeHash = fmt.Errorf("%w: AK scheme must use SHA-256", ErrMalformed)

// verify checks that sig (a TPMT_SIGNATURE) is the AK's SHA-256 signature
// over msg.
func (k *ak) verify(msg, sig []byte) error {
	s, err := unmarshalExact[tpm2.TPMTSignature](sig)
	if err != nil {
		return fmt.Errorf("%w: signature: %v", ErrMalformed, err)
	}
	digest := sha256.Sum256(msg)
	ok := false
	switch {
	case k.ecdsa != nil && s.SigAlg == tpm2.TPMAlgECDSA:
		e, err := s.Signature.ECDSA()
		if err != nil || e.Hash != tpm2.TPMAlgSHA256 {
			return fmt.Errorf("%w: signature is not ECDSA with SHA-256", ErrMalformed)
		}
		r := new(big.Int).SetBytes(e.SignatureR.Buffer)
		s := new(big.Int).SetBytes(e.SignatureS.Buffer)
		ok = ecdsa.Verify(k.ecdsa, digest[:], r, s)
	case k.rsa != nil && s.SigAlg == tpm2.TPMAlgRSASSA:
		r, err := s.Signature.RSASSA()
		if err != nil || r.Hash != tpm2.TPMAlgSHA256 {
			return fmt.Errorf("%w: signature is not RSASSA with SHA-256", ErrMalformed)
		}
		ok = rsa.VerifyPKCS1v15(k.rsa, crypto.SHA256, digest[:], r.Sig.Buffer) == nil
	case k.rsa != nil && s.SigAlg == tpm2.TPMAlgRSAPSS:
		r, err := s.Signature.RSAPSS()
		if err != nil || r.Hash != tpm2.TPMAlgSHA256 {
			return fmt.Errorf("%w: signature is not RSA-PSS with SHA-256", ErrMalformed)
		}
		opts := &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto, Hash: crypto.SHA256}
		ok = rsa.VerifyPSS(k.rsa, crypto.SHA256, digest[:], r.Sig.Buffer, opts) == nil
	default:
		return fmt.Errorf("%w: signature algorithm %#x does not match the AK", ErrMalformed, uint16(s.SigAlg))
	}
	if !ok {
		return ErrBadSignature
	}
	return nil
}
