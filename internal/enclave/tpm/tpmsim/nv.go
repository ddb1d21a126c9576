package tpmsim

import (
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// ProvisionEKCert stores cert at NV index (tpm.ECCEKCertIndex for the ECC
// EK's certificate) the way a manufacturer does: defined by the platform
// hierarchy, readable with the index's empty auth. What the index held
// before is replaced. It passes index in because this package is imported
// by package tpm's own tests and so cannot import tpm.
func ProvisionEKCert(sim transport.TPM, index uint32, cert []byte) error {
	idx := tpm2.TPMHandle(index)
	platform := tpm2.AuthHandle{Handle: tpm2.TPMRHPlatform, Auth: tpm2.PasswordAuth(nil)}
	if rsp, err := (tpm2.NVReadPublic{NVIndex: idx}).Execute(sim); err == nil {
		if _, err := (tpm2.NVUndefineSpace{AuthHandle: platform, NVIndex: tpm2.NamedHandle{Handle: idx, Name: rsp.NVName}}).Execute(sim); err != nil {
			return err
		}
	}
	pub := tpm2.New2B(tpm2.TPMSNVPublic{
		NVIndex: idx, NameAlg: tpm2.TPMAlgSHA256, DataSize: uint16(len(cert)),
		Attributes: tpm2.TPMANV{PPWrite: true, PPRead: true, OwnerRead: true, AuthRead: true, NoDA: true, PlatformCreate: true, NT: tpm2.TPMNTOrdinary},
	})
	if _, err := (tpm2.NVDefineSpace{AuthHandle: platform, PublicInfo: pub}).Execute(sim); err != nil {
		return err
	}
	rsp, err := (tpm2.NVReadPublic{NVIndex: idx}).Execute(sim)
	if err != nil {
		return err
	}
	for off := 0; off < len(cert); off += 512 {
		end := min(off+512, len(cert))
		if _, err := (tpm2.NVWrite{AuthHandle: platform, NVIndex: tpm2.NamedHandle{Handle: idx, Name: rsp.NVName},
			Data: tpm2.TPM2BMaxNVBuffer{Buffer: cert[off:end]}, Offset: uint16(off)}).Execute(sim); err != nil {
			return err
		}
	}
	return nil
}
