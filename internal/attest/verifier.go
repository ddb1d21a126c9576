package attest

import (
	"context"
	"errors"

	"github.com/dcaas/dcaas/api"
)

// Errors a Verifier refuses evidence with; they are wrapped with detail.
var (
	// ErrMalformed: the evidence does not parse, or is not what a TPM quote
	// by an attestation key looks like (wrong structure type, a key that
	// is not a restricted signing key, a hash other than SHA-256).
	ErrMalformed = errors.New("attest: malformed evidence")
	// ErrUnknownAK: the attestation key is not on the allow-list.
	ErrUnknownAK = errors.New("attest: attestation key not allowed")
	// ErrBadSignature: the quote's signature does not verify with the
	// attestation key.
	ErrBadSignature = errors.New("attest: bad quote signature")
	// ErrNonceMismatch: the evidence answers another challenge, or binds
	// other keys (stale, replayed or substituted evidence).
	ErrNonceMismatch = errors.New("attest: evidence does not answer this challenge")
	// ErrPCRMismatch: the reported PCR values are not the quoted ones, or
	// the platform state does not satisfy the PCR policy.
	ErrPCRMismatch = errors.New("attest: PCR values do not match")
)

// Verifier decides whether enrollment evidence proves what want expects.
// Implementations are safe for concurrent use.
type Verifier interface {
	// Verify returns what the evidence proves, or an error wrapping one of
	// this package's sentinels. It does not modify ev.
	Verify(ctx context.Context, ev *api.Attestation, want Expected) (*Result, error)
}

// Expected is what the KMS requires the evidence to answer.
type Expected struct {
	// Nonce is the challenge the KMS issued; it must not be empty.
	Nonce []byte
	// QualifyingData is what the quote must carry as extraData:
	// enclave.QualifyingData(Nonce, the CSR's SPKI, the transport public
	// key). It must not be empty.
	QualifyingData []byte
	// AKTrusted: the AK was vouched for otherwise (its EK certificate
	// chain and credential activation), so it need not be allow-listed.
	AKTrusted bool
	// AKFingerprint, if set, is the only AK accepted (a re-attestation
	// must come from the AK the instance enrolled with).
	AKFingerprint string
}

// Result is what verified evidence proves. The caller owns it.
type Result struct {
	// AKFingerprint is the allow-listed attestation key that signed.
	AKFingerprint string
	// PCRs are the quoted SHA-256 PCR values, index → 32 bytes.
	PCRs map[int][]byte
	// Profiles are the names of the verifier's attestation profiles the
	// quote satisfied, sorted (empty, not nil, when none).
	Profiles []string
}
