// Package api is dcaas's public wire contract: the JSON request and response
// types of the KMS and sidecar REST APIs, the stable error codes, and the
// names (key types, KEMs, actions) they use. It imports nothing of dcaas, so
// the SDK and third-party clients can depend on it alone.
package api

import (
	"errors"
	"fmt"
	"net/http"
)

// Code is a stable, machine-readable error code. Clients branch on it; the
// message next to it is for people and may change.
type Code string

// The error codes of docs/api.md. Each has one HTTP status (see Status).
const (
	CodeBadRequest         Code = "bad_request"          // malformed JSON, wrong types, bad base64
	CodeUnknownField       Code = "unknown_field"        // a JSON field the endpoint does not take
	CodeInvalidArgument    Code = "invalid_argument"     // well-formed but unacceptable value
	CodeInvalidEKB         Code = "invalid_ekb"          // EKB malformed, tampered or not openable
	CodeInvalidCSR         Code = "invalid_csr"          // CSR malformed or its signature is wrong
	CodeInvalidCert        Code = "invalid_certificate"  // certificate malformed, foreign, expired
	CodeInvalidCiphertext  Code = "invalid_ciphertext"   // not a dcaas ciphertext
	CodeDecryptFailed      Code = "decryption_failed"    // wrong key, wrong AAD or modified ciphertext (one opaque error)
	CodeInvalidSealedKey   Code = "invalid_sealed_key"   // a sealed_key that does not open in this sidecar
	CodeWrongKeyType       Code = "wrong_key_type"       // the key's type does not support the operation
	CodeTooLarge           Code = "request_too_large"    // body over the size limit
	CodeUnauthenticated    Code = "unauthenticated"      // no or unknown client identity
	CodeForbidden          Code = "forbidden"            // identity known, action not allowed
	CodeWrongTenant        Code = "wrong_tenant"         // cross-tenant attempt
	CodePolicyDenied       Code = "policy_denied"        // the key policy does not name the caller
	CodeInvalidToken       Code = "invalid_token"        // enrollment token or grant unknown
	CodeAttestationFailed  Code = "attestation_failed"   // TPM evidence refused
	CodeRevoked            Code = "revoked"              // instance, certificate or key revoked
	CodeNotFound           Code = "not_found"            // unknown id
	CodeMethodNotAllowed   Code = "method_not_allowed"   // path exists, method does not
	CodeConflict           Code = "conflict"             // already exists, stale version
	CodeAlreadyUsed        Code = "already_used"         // single-use token or grant used before
	CodeExpired            Code = "expired"              // token, grant, nonce, lease expired (or a load's policy limits used up): reload
	CodeUsageLimitExceeded Code = "usage_limit_exceeded" // a key version reached its safe number of encryptions: rotate the key
	CodeUnavailable        Code = "unavailable"          // a dependency (store, seal, KMS) is down
	CodeNotEnrolled        Code = "not_enrolled"         // a sidecar waiting for its enrollment token (POST /v1/enroll)
	CodeInternal           Code = "internal"             // a bug; details are logged, not returned
	// TR-31 key blocks (docs/import-export.md).
	CodeInvalidKeyBlock     Code = "invalid_key_block"     // a TR-31 key block that is malformed or has a header field X9.143 does not define
	CodeUnsupportedKeyBlock Code = "unsupported_key_block" // a valid TR-31 key block (or export) whose attributes dcaas cannot honour
	CodeSealed              Code = "sealed"                // the KMS started sealed and waits for unseal key shares (POST /v1/sys/unseal)
)

// Attestation-bound release (issue 16).
const (
	CodeAttestationRequired Code = "attestation_required" // the receiving sidecar does not meet the key policy's release conditions
	// Added by issue 16 (quorum approvals).
	CodeApprovalRequired Code = "approval_required" // the tenant's quorum must approve the action first (POST /v1/approvals)
	CodeKCVMismatch      Code = "kcv_mismatch"      // a key or key component does not have the key check value given
	CodeDuplicateAdmin   Code = "duplicate_admin"   // an admin entered a component of this key already (split knowledge)
)

var statusOf = map[Code]int{
	CodeBadRequest:        http.StatusBadRequest,
	CodeUnknownField:      http.StatusBadRequest,
	CodeInvalidArgument:   http.StatusBadRequest,
	CodeInvalidEKB:        http.StatusBadRequest,
	CodeInvalidCSR:        http.StatusBadRequest,
	CodeInvalidCert:       http.StatusBadRequest,
	CodeInvalidCiphertext: http.StatusBadRequest,
	CodeDecryptFailed:     http.StatusBadRequest,
	CodeInvalidSealedKey:  http.StatusBadRequest,
	CodeWrongKeyType:      http.StatusBadRequest,
	CodeTooLarge:          http.StatusRequestEntityTooLarge,
	CodeUnauthenticated:   http.StatusUnauthorized,
	CodeForbidden:         http.StatusForbidden,
	CodeWrongTenant:       http.StatusForbidden,
	CodePolicyDenied:      http.StatusForbidden,
	CodeInvalidToken:      http.StatusForbidden,
	CodeAttestationFailed: http.StatusForbidden,
	CodeRevoked:           http.StatusForbidden,
	CodeNotFound:          http.StatusNotFound,
	CodeMethodNotAllowed:  http.StatusMethodNotAllowed,
	CodeConflict:          http.StatusConflict,
	CodeAlreadyUsed:       http.StatusConflict,
	CodeExpired:           http.StatusGone,
	// 403, not 429: the refusal is final for this key version. 429 invites
	// the caller (and our SDK, and proxies) to back off and retry, and no
	// retry ever succeeds; only a new key version does.
	CodeUsageLimitExceeded: http.StatusForbidden,
	CodeUnavailable:        http.StatusServiceUnavailable,
	CodeNotEnrolled:        http.StatusServiceUnavailable,
	CodeInternal:           http.StatusInternalServerError,
	// TR-31 key blocks.
	CodeInvalidKeyBlock:     http.StatusBadRequest,
	CodeUnsupportedKeyBlock: http.StatusBadRequest,
	CodeSealed:              http.StatusServiceUnavailable,
	// The sidecar must enroll with TPM attestation or re-attest first.
	CodeAttestationRequired: http.StatusForbidden,
	CodeApprovalRequired:    http.StatusForbidden,
	CodeKCVMismatch:         http.StatusBadRequest,
	CodeDuplicateAdmin:      http.StatusForbidden,
}

// Status is the HTTP status that goes with c; unknown codes map to 500.
func (c Code) Status() int {
	if s, ok := statusOf[c]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// Error is an API error: a stable code and a sentence a person understands.
// It is both the Go error domain packages return and the JSON body the
// server writes (inside ErrorBody).
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
	// Status is the HTTP status the error arrived with (clients only).
	Status int `json:"-"`
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Code, e.Message) }

// Is makes errors.Is(err, &api.Error{Code: c}) match on the code alone.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code && t.Message == ""
}

// Errorf builds an *Error with a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// CodeOf returns the API code carried by err, or CodeInternal.
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// ErrorBody is the JSON shape of every error response.
type ErrorBody struct {
	Error *Error `json:"error"`
}
