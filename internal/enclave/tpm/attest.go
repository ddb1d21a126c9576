package tpm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/enclave"
)

// quotedPCRs are the PCRs a quote covers, in the SHA-256 bank: the
// platform's boot chain (firmware, its configuration, option ROMs, boot
// loader, Secure Boot policy).
var quotedPCRs = []int{0, 1, 2, 3, 4, 5, 6, 7}

// quoteAttempts bounds how often Attest retries when a PCR changes between
// reading the PCRs and quoting them.
const quoteAttempts = 3

// Attest returns TPM evidence for enrollment: a TPM2_Quote, by the
// attestation key (AK), over PCRs 0-7 of the SHA-256 bank, with
// qualifyingData = enclave.QualifyingData(nonce, identitySPKI, transport).
//
// The AK is a restricted ECDSA P-256 signing key under the SRK, created on
// the first call and kept in the directory, so its fingerprint
// (AKFingerprint) stays the same across restarts and can be allow-listed.
// The result's fields, all in TPM wire format:
//
//   - AKPublic: the AK's TPMT_PUBLIC (the public area without the TPM2B
//     size prefix; its SHA-256 is the digest in the AK's TPM Name).
//   - Quote: the TPMS_ATTEST the TPM signed (without the TPM2B prefix).
//   - Signature: the TPMT_SIGNATURE over Quote (ECDSA, SHA-256).
//   - PCRs: the quoted SHA-256 PCR values, index → 32 bytes, read just
//     before the quote and checked against its PCR digest.
//
// The KMS trusts the AK by its allow-list, or through the TPM's EK
// certificate and credential activation (ek.go).
func (e *Enclave) Attest(ctx context.Context, nonce, identitySPKI []byte, transport api.PublicKey) (*api.Attestation, error) {
	qualifying := enclave.QualifyingData(nonce, identitySPKI, transport)
	ak, h, release, err := e.loadAK(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	for range quoteAttempts {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		pcrs, err := e.readPCRs()
		if err != nil {
			return nil, err
		}
		rsp, err := tpm2.Quote{
			SignHandle:     tpm2.AuthHandle{Handle: h.Handle, Name: h.Name, Auth: tpm2.PasswordAuth(nil)},
			QualifyingData: tpm2.TPM2BData{Buffer: qualifying},
			InScheme:       tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull},
			PCRSelect:      pcrSelection(quotedPCRs),
		}.Execute(e.tpm)
		if err != nil {
			return nil, fmt.Errorf("tpm: quote: %w", err)
		}
		att, err := rsp.Quoted.Contents()
		if err != nil {
			return nil, fmt.Errorf("tpm: quote: %w", err)
		}
		info, err := att.Attested.Quote()
		if err != nil {
			return nil, fmt.Errorf("tpm: quote: %w", err)
		}
		if !bytes.Equal(info.PCRDigest.Buffer, pcrDigest(pcrs)) {
			continue // a PCR was extended in between: read and quote again
		}
		return &api.Attestation{
			Nonce:     bytes.Clone(nonce),
			AKPublic:  bytes.Clone(ak.pub.Bytes()),
			Quote:     bytes.Clone(rsp.Quoted.Bytes()),
			Signature: tpm2.Marshal(rsp.Signature),
			PCRs:      pcrs,
		}, nil
	}
	return nil, errors.New("tpm: quote: PCRs kept changing while quoting")
}

// AKPublic returns the attestation key's TPMT_PUBLIC (as in
// api.Attestation.AKPublic), creating the AK if needed, so an operator can
// allow-list AKFingerprint(AKPublic) before the first enrollment.
func (e *Enclave) AKPublic(ctx context.Context) ([]byte, error) {
	if err := e.begin(ctx); err != nil {
		return nil, err
	}
	defer e.tpmMu.Unlock()
	ak, err := e.attestationKey()
	if err != nil {
		return nil, err
	}
	return bytes.Clone(ak.pub.Bytes()), nil
}

// loadAK locks the TPM, loads the attestation key (created on first use)
// and returns it with its handle and the function that flushes it and
// unlocks the TPM.
func (e *Enclave) loadAK(ctx context.Context) (*object, tpm2.NamedHandle, func(), error) {
	if err := e.begin(ctx); err != nil {
		return nil, tpm2.NamedHandle{}, nil, err
	}
	ak, err := e.attestationKey()
	if err == nil {
		var h tpm2.NamedHandle
		if h, err = e.load(ak); err == nil {
			return ak, h, func() { e.flush(h.Handle); e.tpmMu.Unlock() }, nil
		}
	}
	e.tpmMu.Unlock()
	return nil, tpm2.NamedHandle{}, nil, err
}

// attestationKey returns the AK blob, creating it on first use. The caller
// holds tpmMu.
func (e *Enclave) attestationKey() (*object, error) {
	if e.ak != nil {
		return e.ak, nil
	}
	tmpl := akTemplate()
	o, err := e.objectFor(akFile, tmpl, func() (*object, error) { return e.create(tmpl) })
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	e.ak = o
	e.mu.Unlock()
	return o, nil
}

// AKFingerprint is what operators allow-list: the lower-case hex SHA-256 of
// an AK's TPMT_PUBLIC (api.Attestation.AKPublic). It equals the digest part
// of the AK's TPM Name (tpm2_readpublic shows "000b" followed by it) and
// attest.AKFingerprint.
func AKFingerprint(akPublic []byte) string {
	sum := sha256.Sum256(akPublic)
	return hex.EncodeToString(sum[:])
}

// pcrSelection selects pcrs in the SHA-256 bank.
func pcrSelection(pcrs []int) tpm2.TPMLPCRSelection {
	idx := make([]uint, len(pcrs))
	for i, p := range pcrs {
		idx[i] = uint(p)
	}
	return tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{
		Hash:      tpm2.TPMAlgSHA256,
		PCRSelect: tpm2.PCClientCompatible.PCRs(idx...),
	}}}
}

// readPCRs reads the SHA-256 values of quotedPCRs. TPM2_PCR_Read may
// return fewer PCRs than asked; it is asked again for the rest.
func (e *Enclave) readPCRs() (map[int][]byte, error) {
	out := make(map[int][]byte, len(quotedPCRs))
	for len(out) < len(quotedPCRs) {
		var missing []int
		for _, p := range quotedPCRs {
			if _, ok := out[p]; !ok {
				missing = append(missing, p)
			}
		}
		rsp, err := tpm2.PCRRead{PCRSelectionIn: pcrSelection(missing)}.Execute(e.tpm)
		if err != nil {
			return nil, fmt.Errorf("tpm: read PCRs: %w", err)
		}
		got, err := pcrValues(rsp)
		if err != nil {
			return nil, err
		}
		progress := false
		for _, p := range missing {
			if v, ok := got[p]; ok {
				out[p] = v
				progress = true
			}
		}
		if !progress {
			return nil, errors.New("tpm: read PCRs: the SHA-256 bank of PCRs 0-7 is not available")
		}
	}
	return out, nil
}

// pcrValues maps the SHA-256 values in a TPM2_PCR_Read response to their
// indices.
func pcrValues(rsp *tpm2.PCRReadResponse) (map[int][]byte, error) {
	out := map[int][]byte{}
	digests := rsp.PCRValues.Digests
	n := 0
	for _, sel := range rsp.PCRSelectionOut.PCRSelections {
		for i := range len(sel.PCRSelect) * 8 {
			if sel.PCRSelect[i/8]&(1<<(i%8)) == 0 {
				continue
			}
			if n >= len(digests) {
				return nil, errors.New("tpm: read PCRs: malformed response")
			}
			if sel.Hash == tpm2.TPMAlgSHA256 && len(digests[n].Buffer) == sha256.Size {
				out[i] = bytes.Clone(digests[n].Buffer)
			}
			n++
		}
	}
	return out, nil
}

// pcrDigest is a quote's PCR digest over quotedPCRs: SHA-256 of the values
// in ascending index order.
func pcrDigest(pcrs map[int][]byte) []byte {
	h := sha256.New()
	for _, p := range quotedPCRs {
		h.Write(pcrs[p])
	}
	return h.Sum(nil)
}
