package tpm

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// The endorsement key (EK): the TPM's manufacturer-certified decryption
// key, here the TCG reference ECC P-256 EK (tpm2.ECCEKTemplate, the key
// whose certificate TPMs keep at NV index 0x01C0000A). The KMS checks the
// EK certificate's chain to a manufacturer root and encrypts a credential
// to the EK bound to the AK's Name (TPM2_MakeCredential); only this TPM,
// with this AK loaded, recovers it (ActivateCredential).

// ECCEKCertIndex is the NV index of the ECC P-256 EK certificate (TCG EK
// Credential Profile).
const ECCEKCertIndex = 0x01C0000A

// withEK creates the EK primary (it is derived from the endorsement seed:
// the same key every time), runs f with it and flushes it. The caller
// holds tpmMu.
func (e *Enclave) withEK(f func(ek tpm2.NamedHandle, pub *tpm2.TPMTPublic) error) error {
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.TPMRHEndorsement,
		InPublic:      tpm2.New2B(tpm2.ECCEKTemplate),
	}.Execute(e.tpm)
	if err != nil {
		return fmt.Errorf("tpm: create EK: %w", err)
	}
	defer e.flush(rsp.ObjectHandle)
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		return fmt.Errorf("tpm: EK public area: %w", err)
	}
	return f(tpm2.NamedHandle{Handle: rsp.ObjectHandle, Name: rsp.Name}, pub)
}

// EKPublic returns the public key of the TPM's ECC P-256 EK (an
// *ecdsa.PublicKey), as its EK certificate certifies it.
func (e *Enclave) EKPublic(ctx context.Context) (crypto.PublicKey, error) {
	if err := e.begin(ctx); err != nil {
		return nil, err
	}
	defer e.tpmMu.Unlock()
	var out crypto.PublicKey
	err := e.withEK(func(_ tpm2.NamedHandle, pub *tpm2.TPMTPublic) error {
		point, err := eccPublic(pub)
		if err != nil {
			return err
		}
		if out, err = ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point); err != nil {
			return fmt.Errorf("tpm: EK point: %w", err)
		}
		return nil
	})
	return out, err
}

// ActivateCredential recovers the secret of a credential the KMS made for
// this TPM's EK and the enclave's AK (TPM2_ActivateCredential, the EK
// authorized by its policy, TPM2_PolicySecret of the endorsement
// hierarchy). It fails unless both keys are this TPM's.
func (e *Enclave) ActivateCredential(ctx context.Context, credentialBlob, encryptedSecret []byte) ([]byte, error) {
	_, h, release, err := e.loadAK(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	var out []byte
	err = e.withEK(func(ek tpm2.NamedHandle, _ *tpm2.TPMTPublic) error {
		rsp, err := tpm2.ActivateCredential{
			ActivateHandle: tpm2.AuthHandle{Handle: h.Handle, Name: h.Name, Auth: tpm2.PasswordAuth(nil)},
			KeyHandle: tpm2.AuthHandle{Handle: ek.Handle, Name: ek.Name, Auth: tpm2.Policy(tpm2.TPMAlgSHA256, 16, tpm2.PolicyCallback(
				func(t transport.TPM, handle tpm2.TPMISHPolicy, nonceTPM tpm2.TPM2BNonce) error {
					_, err := tpm2.PolicySecret{AuthHandle: tpm2.TPMRHEndorsement, PolicySession: handle, NonceTPM: nonceTPM}.Execute(t)
					return err
				}))},
			CredentialBlob: tpm2.TPM2BIDObject{Buffer: credentialBlob},
			Secret:         tpm2.TPM2BEncryptedSecret{Buffer: encryptedSecret},
		}.Execute(e.tpm)
		if err != nil {
			return fmt.Errorf("tpm: activate credential: %w", err)
		}
		out = rsp.CertInfo.Buffer
		return nil
	})
	return out, err
}

// EKCertificate reads the ECC EK certificate (DER) the manufacturer
// stored in NV index ECCEKCertIndex.
func (e *Enclave) EKCertificate(ctx context.Context) ([]byte, error) {
	if err := e.begin(ctx); err != nil {
		return nil, err
	}
	defer e.tpmMu.Unlock()
	idx := tpm2.TPMHandle(ECCEKCertIndex)
	pub, err := tpm2.NVReadPublic{NVIndex: idx}.Execute(e.tpm)
	if err != nil {
		return nil, fmt.Errorf("tpm: no EK certificate at NV index %#x: %w", ECCEKCertIndex, err)
	}
	nv, err := pub.NVPublic.Contents()
	if err != nil {
		return nil, fmt.Errorf("tpm: EK certificate NV index: %w", err)
	}
	var out []byte
	const chunk = 512 // below every TPM's MAX_NV_BUFFER_SIZE
	for off := 0; off < int(nv.DataSize); off += chunk {
		n := min(chunk, int(nv.DataSize)-off)
		rsp, err := tpm2.NVRead{
			AuthHandle: tpm2.AuthHandle{Handle: idx, Name: pub.NVName, Auth: tpm2.PasswordAuth(nil)},
			NVIndex:    tpm2.NamedHandle{Handle: idx, Name: pub.NVName},
			Size:       uint16(n), Offset: uint16(off),
		}.Execute(e.tpm)
		if err != nil {
			return nil, fmt.Errorf("tpm: read EK certificate: %w", err)
		}
		out = append(out, rsp.Data.Buffer...)
	}
	return out, nil
}
