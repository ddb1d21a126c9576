package attest

import (
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/dcaas/dcaas/api"
)

// primaryKey creates a primary key from tmpl in the simulator's owner
// hierarchy, flushed when the test ends.
func primaryKey(t *testing.T, tmpl tpm2.TPMTPublic) (tpm2.NamedHandle, []byte) {
	t.Helper()
	tp := simulator(t)
	rsp, err := tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHOwner, InPublic: tpm2.New2B(tmpl)}.Execute(tp)
	if err != nil {
		t.Fatalf("CreatePrimary() = %v", err)
	}
	t.Cleanup(func() { tpm2.FlushContext{FlushHandle: rsp.ObjectHandle}.Execute(tp) })
	return tpm2.NamedHandle{Handle: rsp.ObjectHandle, Name: rsp.Name}, rsp.OutPublic.Bytes()
}

// quoteWith quotes PCRs 0-7 of the SHA-256 bank with key.
func quoteWith(t *testing.T, key tpm2.NamedHandle, qualifying []byte) (quote, sig []byte) {
	t.Helper()
	rsp, err := tpm2.Quote{
		SignHandle:     tpm2.AuthHandle{Handle: key.Handle, Name: key.Name, Auth: tpm2.PasswordAuth(nil)},
		QualifyingData: tpm2.TPM2BData{Buffer: qualifying},
		InScheme:       tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull},
		PCRSelect: tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{
			Hash:      tpm2.TPMAlgSHA256,
			PCRSelect: tpm2.PCClientCompatible.PCRs(0, 1, 2, 3, 4, 5, 6, 7),
		}}},
	}.Execute(simulator(t))
	if err != nil {
		t.Fatalf("Quote() = %v", err)
	}
	return rsp.Quoted.Bytes(), tpm2.Marshal(rsp.Signature)
}

func akAttrs() tpm2.TPMAObject {
	return tpm2.TPMAObject{
		FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true,
		UserWithAuth: true, NoDA: true, Restricted: true, SignEncrypt: true,
	}
}

func rsaAKTemplate(scheme tpm2.TPMAlgID) tpm2.TPMTPublic {
	var details tpm2.TPMUAsymScheme
	if scheme == tpm2.TPMAlgRSAPSS {
		details = tpm2.NewTPMUAsymScheme(scheme, &tpm2.TPMSSigSchemeRSAPSS{HashAlg: tpm2.TPMAlgSHA256})
	} else {
		details = tpm2.NewTPMUAsymScheme(scheme, &tpm2.TPMSSigSchemeRSASSA{HashAlg: tpm2.TPMAlgSHA256})
	}
	return tpm2.TPMTPublic{
		Type:             tpm2.TPMAlgRSA,
		NameAlg:          tpm2.TPMAlgSHA256,
		ObjectAttributes: akAttrs(),
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
			Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
			Scheme:    tpm2.TPMTRSAScheme{Scheme: scheme, Details: details},
			KeyBits:   2048,
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{}),
	}
}

// TestVerifyRSAAK accepts quotes by RSA attestation keys (RSASSA and
// RSA-PSS), as many platforms' AKs are.
func TestVerifyRSAAK(t *testing.T) {
	f := newFixture(t)
	for _, scheme := range []tpm2.TPMAlgID{tpm2.TPMAlgRSASSA, tpm2.TPMAlgRSAPSS} {
		key, pub := primaryKey(t, rsaAKTemplate(scheme))
		quote, sig := quoteWith(t, key, f.want.QualifyingData)
		ev := clone(f.ev)
		ev.AKPublic, ev.Quote, ev.Signature = pub, quote, sig
		v := &TPMVerifier{AllowedAKs: map[string]bool{AKFingerprint(pub): true}}
		if _, err := v.Verify(t.Context(), ev, f.want); err != nil {
			t.Errorf("Verify(RSA AK, scheme %#x) = %v", uint16(scheme), err)
		}
		ev.Quote[len(ev.Quote)-1] ^= 1
		if _, err := v.Verify(t.Context(), ev, f.want); !errors.Is(err, ErrBadSignature) {
			t.Errorf("Verify(RSA AK, tampered) = %v, want ErrBadSignature", err)
		}
	}
}

// TestVerifyRefusesUnrestrictedKey: an unrestricted signing key signs any
// digest, so a "quote" it signed proves nothing, even when allow-listed.
func TestVerifyRefusesUnrestrictedKey(t *testing.T) {
	f := newFixture(t)
	attrs := akAttrs()
	attrs.Restricted = false
	tmpl := tpm2.TPMTPublic{
		Type:             tpm2.TPMAlgECC,
		NameAlg:          tpm2.TPMAlgSHA256,
		ObjectAttributes: attrs,
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
			Scheme: tpm2.TPMTECCScheme{
				Scheme:  tpm2.TPMAlgECDSA,
				Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256}),
			},
			CurveID: tpm2.TPMECCNistP256,
			KDF:     tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{}),
	}
	key, pub := primaryKey(t, tmpl)

	// Forge a quote: an old one re-targeted at today's challenge, signed
	// with TPM2_Sign, which an unrestricted key allows.
	att, err := tpm2.Unmarshal[tpm2.TPMSAttest](f.attest(t, []byte("old challenge")).Quote)
	if err != nil {
		t.Fatal(err)
	}
	att.ExtraData = tpm2.TPM2BData{Buffer: f.want.QualifyingData}
	forged := tpm2.Marshal(att)
	digest := sha256.Sum256(forged)
	rsp, err := tpm2.Sign{
		KeyHandle:  tpm2.AuthHandle{Handle: key.Handle, Name: key.Name, Auth: tpm2.PasswordAuth(nil)},
		Digest:     tpm2.TPM2BDigest{Buffer: digest[:]},
		InScheme:   tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull},
		Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck, Hierarchy: tpm2.TPMRHNull},
	}.Execute(simulator(t))
	if err != nil {
		t.Fatalf("Sign() = %v", err)
	}
	ev := &api.Attestation{
		Nonce:     f.want.Nonce,
		AKPublic:  pub,
		Quote:     forged,
		Signature: tpm2.Marshal(rsp.Signature),
		PCRs:      f.ev.PCRs,
	}
	v := &TPMVerifier{AllowedAKs: map[string]bool{AKFingerprint(pub): true}}
	if _, err := v.Verify(t.Context(), ev, f.want); !errors.Is(err, ErrMalformed) {
		t.Errorf("Verify(forged with an unrestricted key) = %v, want ErrMalformed", err)

	}
}
