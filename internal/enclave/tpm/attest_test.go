package tpm

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/hex"
	"math/big"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/enclave"
)

// TestAttest checks the evidence's shape and signature here; the verifier
// (internal/attest) tests it against tampering.
func TestAttest(t *testing.T) {
	e := openEnclave(t, "")
	nonce := []byte("kms challenge")
	spki := []byte("identity SPKI")
	tp := api.PublicKey{KEM: api.KEMP256, PublicKey: []byte("transport")}
	ev, err := e.Attest(t.Context(), nonce, spki, tp)
	if err != nil {
		t.Fatalf("Attest() = %v", err)
	}
	if !bytes.Equal(ev.Nonce, nonce) {
		t.Errorf("Nonce = %q, want %q", ev.Nonce, nonce)
	}
	ak, err := tpm2.Unmarshal[tpm2.TPMTPublic](ev.AKPublic)
	if err != nil {
		t.Fatalf("AKPublic is not a TPMT_PUBLIC: %v", err)
	}
	if a := ak.ObjectAttributes; !a.Restricted || !a.SignEncrypt || a.Decrypt || !a.FixedTPM || !a.SensitiveDataOrigin {
		t.Errorf("AK attributes = %+v, want a restricted TPM-generated signing key", a)
	}
	point, err := eccPublic(ak)
	if err != nil {
		t.Fatal(err)
	}
	akKey, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := tpm2.Unmarshal[tpm2.TPMTSignature](ev.Signature)
	if err != nil {
		t.Fatalf("Signature is not a TPMT_SIGNATURE: %v", err)
	}
	ecc, err := sig.Signature.ECDSA()
	if err != nil {
		t.Fatalf("Signature is not ECDSA: %v", err)
	}
	digest := sha256.Sum256(ev.Quote)
	r, s := new(big.Int).SetBytes(ecc.SignatureR.Buffer), new(big.Int).SetBytes(ecc.SignatureS.Buffer)
	if !ecdsa.Verify(akKey, digest[:], r, s) {
		t.Error("quote signature does not verify with the AK")
	}
	att, err := tpm2.Unmarshal[tpm2.TPMSAttest](ev.Quote)
	if err != nil {
		t.Fatalf("Quote is not a TPMS_ATTEST: %v", err)
	}
	if want := enclave.QualifyingData(nonce, spki, tp); !bytes.Equal(att.ExtraData.Buffer, want) {
		t.Errorf("extraData = %x, want QualifyingData %x", att.ExtraData.Buffer, want)
	}
	info, err := att.Attested.Quote()
	if err != nil {
		t.Fatalf("not a quote: %v", err)
	}
	if len(ev.PCRs) != 8 {
		t.Errorf("len(PCRs) = %d, want 8", len(ev.PCRs))
	}
	for i := range 8 {
		if len(ev.PCRs[i]) != 32 {
			t.Errorf("PCR %d has %d bytes, want 32", i, len(ev.PCRs[i]))
		}
	}
	if !bytes.Equal(info.PCRDigest.Buffer, pcrDigest(ev.PCRs)) {
		t.Error("quote's PCR digest does not match the reported PCRs")
	}

	sum := sha256.Sum256(ev.AKPublic)
	if got, want := AKFingerprint(ev.AKPublic), hex.EncodeToString(sum[:]); got != want {
		t.Errorf("AKFingerprint() = %s, want %s", got, want)
	}
	// The fingerprint is the digest in the AK's TPM Name (0x000b || SHA-256).
	if name, err := tpm2.ObjectName(ak); err != nil || !bytes.Equal(name.Buffer[2:], sum[:]) {
		t.Errorf("AK Name = %x (%v), want 000b%x", name.Buffer, err, sum)
	}

	again, err := e.Attest(t.Context(), []byte("another nonce"), spki, tp)
	if err != nil {
		t.Fatalf("second Attest() = %v", err)
	}
	if !bytes.Equal(again.AKPublic, ev.AKPublic) {
		t.Error("second Attest() used another AK")
	}
	if bytes.Equal(again.Quote, ev.Quote) {
		t.Error("two quotes over different nonces are equal")
	}
}

// TestAttestFollowsPCRs extends a quoted PCR and checks the new value is
// what Attest reports and quotes.
func TestAttestFollowsPCRs(t *testing.T) {
	e := openEnclave(t, "")
	before, err := e.Attest(t.Context(), []byte("n1"), nil, api.PublicKey{})
	if err != nil {
		t.Fatalf("Attest() = %v", err)
	}
	extendPCR(t, 7, []byte("boot policy changed"))
	after, err := e.Attest(t.Context(), []byte("n2"), nil, api.PublicKey{})
	if err != nil {
		t.Fatalf("Attest() = %v", err)
	}
	if bytes.Equal(before.PCRs[7], after.PCRs[7]) {
		t.Error("PCR 7 unchanged after an extend")
	}
	if !bytes.Equal(before.PCRs[0], after.PCRs[0]) {
		t.Error("PCR 0 changed, want only PCR 7 changed")
	}
}

func extendPCR(t *testing.T, pcr int, data []byte) {
	t.Helper()
	d := sha256.Sum256(data)
	_, err := tpm2.PCRExtend{
		PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(pcr), Auth: tpm2.PasswordAuth(nil)},
		Digests: tpm2.TPMLDigestValues{Digests: []tpm2.TPMTHA{{
			HashAlg: tpm2.TPMAlgSHA256, Digest: d[:],
		}}},
	}.Execute(sim)
	if err != nil {
		t.Fatalf("PCRExtend(%d) = %v", pcr, err)
	}
}
