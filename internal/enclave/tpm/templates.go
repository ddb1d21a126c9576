package tpm

import "github.com/google/go-tpm/tpm2"

// Object templates. Every key is FixedTPM and FixedParent (it cannot be
// duplicated out of this TPM) and SensitiveDataOrigin (the TPM generated
// its private part: nobody knows it). Blobs read back from disk must match
// their template in everything but the public key itself (checkTemplate).

// keyAttrs are the attributes every key and sealed object share.
func keyAttrs() tpm2.TPMAObject {
	return tpm2.TPMAObject{
		FixedTPM:            true,
		FixedParent:         true,
		SensitiveDataOrigin: true,
		UserWithAuth:        true,
		NoDA:                true,
	}
}

// eccTemplate is a P-256 key with the given attributes and scheme.
func eccTemplate(attrs tpm2.TPMAObject, scheme tpm2.TPMTECCScheme) tpm2.TPMTPublic {
	return tpm2.TPMTPublic{
		Type:             tpm2.TPMAlgECC,
		NameAlg:          tpm2.TPMAlgSHA256,
		ObjectAttributes: attrs,
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
			Scheme:    scheme,
			CurveID:   tpm2.TPMECCNistP256,
			KDF:       tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{}),
	}
}

// ecdsaSHA256 is the ECDSA-with-SHA-256 scheme, fixed in signing keys so
// the TPM refuses any other.
func ecdsaSHA256() tpm2.TPMTECCScheme {
	return tpm2.TPMTECCScheme{
		Scheme: tpm2.TPMAlgECDSA,
		Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA,
			&tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256}),
	}
}

// identityTemplate is the identity key: an unrestricted ECDSA P-256
// signing key (it signs CSRs and TLS handshakes, digests from outside).
func identityTemplate() tpm2.TPMTPublic {
	a := keyAttrs()
	a.SignEncrypt = true
	return eccTemplate(a, ecdsaSHA256())
}

// akTemplate is the attestation key: a restricted ECDSA P-256 signing key,
// which signs only structures the TPM itself produced (quotes), never a
// digest that starts with TPM_GENERATED_VALUE from outside.
func akTemplate() tpm2.TPMTPublic {
	a := keyAttrs()
	a.Restricted = true
	a.SignEncrypt = true
	return eccTemplate(a, ecdsaSHA256())
}

// transportTemplate is the key-transport key: an ECC P-256 decryption key
// for TPM2_ECDH_ZGen.
func transportTemplate() tpm2.TPMTPublic {
	a := keyAttrs()
	a.Decrypt = true
	return eccTemplate(a, tpm2.TPMTECCScheme{
		Scheme: tpm2.TPMAlgECDH,
		Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDH,
			&tpm2.TPMSKeySchemeECDH{HashAlg: tpm2.TPMAlgSHA256}),
	})
}

// sealTemplate is a keyed-hash sealed-data object (the LMK). The caller
// supplies the data, so SensitiveDataOrigin is clear.
func sealTemplate() tpm2.TPMTPublic {
	a := keyAttrs()
	a.SensitiveDataOrigin = false
	return tpm2.TPMTPublic{
		Type:             tpm2.TPMAlgKeyedHash,
		NameAlg:          tpm2.TPMAlgSHA256,
		ObjectAttributes: a,
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgKeyedHash, &tpm2.TPMSKeyedHashParms{
			Scheme: tpm2.TPMTKeyedHashScheme{Scheme: tpm2.TPMAlgNull},
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgKeyedHash, &tpm2.TPM2BDigest{}),
	}
}
