package tpm

import (
	"bytes"
	"crypto/ecdsa"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

// provisionEKCert stores cert at the ECC EK certificate's NV index the way
// a manufacturer does (platform hierarchy, readable with the index's empty
// auth), replacing what is there.
func provisionEKCert(t *testing.T, cert []byte) {
	t.Helper()
	idx := tpm2.TPMHandle(ECCEKCertIndex)
	platform := tpm2.AuthHandle{Handle: tpm2.TPMRHPlatform, Auth: tpm2.PasswordAuth(nil)}
	if rsp, err := (tpm2.NVReadPublic{NVIndex: idx}).Execute(sim); err == nil {
		if _, err := (tpm2.NVUndefineSpace{AuthHandle: platform, NVIndex: tpm2.NamedHandle{Handle: idx, Name: rsp.NVName}}).Execute(sim); err != nil {
			t.Fatal(err)
		}
	}
	pub := tpm2.New2B(tpm2.TPMSNVPublic{
		NVIndex: idx, NameAlg: tpm2.TPMAlgSHA256, DataSize: uint16(len(cert)),
		Attributes: tpm2.TPMANV{PPWrite: true, PPRead: true, OwnerRead: true, AuthRead: true, NoDA: true, PlatformCreate: true, NT: tpm2.TPMNTOrdinary},
	})
	if _, err := (tpm2.NVDefineSpace{AuthHandle: platform, PublicInfo: pub}).Execute(sim); err != nil {
		t.Fatal(err)
	}
	rsp, err := (tpm2.NVReadPublic{NVIndex: idx}).Execute(sim)
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(cert); off += 512 {
		end := min(off+512, len(cert))
		if _, err := (tpm2.NVWrite{AuthHandle: platform, NVIndex: tpm2.NamedHandle{Handle: idx, Name: rsp.NVName},
			Data: tpm2.TPM2BMaxNVBuffer{Buffer: cert[off:end]}, Offset: uint16(off)}).Execute(sim); err != nil {
			t.Fatal(err)
		}
	}
}

func TestEKCertificateFromNV(t *testing.T) {
	e := openEnclave(t, t.TempDir())
	cert := bytes.Repeat([]byte("a DER EK certificate of some length "), 40) // over one NV read
	provisionEKCert(t, cert)
	got, err := e.EKCertificate(t.Context())
	if err != nil {
		t.Fatalf("EKCertificate = %v", err)
	}
	if !bytes.Equal(got, cert) {
		t.Fatalf("EKCertificate = %d bytes, want the %d provisioned", len(got), len(cert))
	}
	ek, err := e.EKPublic(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	again, err := e.EKPublic(t.Context())
	if err != nil || !ek.(*ecdsa.PublicKey).Equal(again) {
		t.Fatalf("the EK changed between calls: %v", err)
	}
}
