// Package attest verifies the hardware evidence a sidecar sends with its
// enrollment request (docs/design.md, "Enrollment"), on the KMS side.
//
// Where to start: [Verifier] is the pluggable seam the KMS calls;
// [TPMVerifier] is the built-in TPM 2.0 implementation, configured with an
// allow-list of attestation keys ([AKFingerprint]) and an optional PCR
// policy and named PCR profiles; [VerifyEKCert] and [MakeCredential] let
// the KMS trust an AK through its TPM's EK certificate chain instead
// (TPM2_MakeCredential / ActivateCredential). Every refusal wraps one of the
// sentinel errors (ErrMalformed, ErrUnknownAK, ErrBadSignature,
// ErrNonceMismatch, ErrPCRMismatch, ErrUntrustedEK), to branch on with
// errors.Is.
//
// Evidence is an api.Attestation as internal/enclave/tpm produces it: the
// AK's TPMT_PUBLIC, a TPMS_ATTEST quote, its TPMT_SIGNATURE and the quoted
// SHA-256 PCR values. There is no accept-everything verifier: a KMS that
// does not check evidence does not enroll with hardware attestation.
package attest
