package transit

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/dcaas/dcaas/api"
)

// Error is a refusal in transit's shape: an HTTP status and the sentence
// that goes in the body's "errors" list. Code is the dcaas error code the
// refusal came from ("" when transit itself refused the request).
type Error struct {
	Status  int
	Message string
	Code    api.Code
}

func (e *Error) Error() string { return fmt.Sprintf("transit %d: %s", e.Status, e.Message) }

func badRequest(format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Message: fmt.Sprintf(format, args...)}
}

func tooLarge(format string, args ...any) *Error {
	return &Error{Status: http.StatusRequestEntityTooLarge, Message: fmt.Sprintf(format, args...)}
}

// statusOf is the HTTP status transit answers for each dcaas code. Transit
// answers every problem with the request or the key with 400 (an unknown
// key included: "encryption key not found"), and every refusal of the
// caller with 403 ("permission denied"); the rest keep dcaas's status.
// Codes not listed get 400 if dcaas gives them a 4xx status, else 500.
var statusOf = map[api.Code]int{
	api.CodeUnauthenticated:    http.StatusForbidden,
	api.CodeForbidden:          http.StatusForbidden,
	api.CodeWrongTenant:        http.StatusForbidden,
	api.CodePolicyDenied:       http.StatusForbidden,
	api.CodeInvalidToken:       http.StatusForbidden,
	api.CodeAttestationFailed:  http.StatusForbidden,
	api.CodeRevoked:            http.StatusForbidden,
	api.CodeUsageLimitExceeded: http.StatusForbidden,
	api.CodeTooLarge:           http.StatusRequestEntityTooLarge,
	api.CodeMethodNotAllowed:   http.StatusMethodNotAllowed,
	api.CodeUnavailable:        http.StatusServiceUnavailable,
	api.CodeInternal:           http.StatusInternalServerError,
	api.CodeApprovalRequired:   http.StatusForbidden,
}

// FromError converts any error to a transit refusal. An *api.Error keeps
// its sentence and code under transit's status; anything else becomes a
// generic 500 (the caller logs the original).
func FromError(err error) *Error {
	var te *Error
	if errors.As(err, &te) {
		return te
	}
	var ae *api.Error
	if !errors.As(err, &ae) {
		return &Error{Status: http.StatusInternalServerError, Message: "internal error", Code: api.CodeInternal}
	}
	st, ok := statusOf[ae.Code]
	if !ok {
		st = http.StatusInternalServerError
		if s := ae.Code.Status(); s >= 400 && s < 500 {
			st = http.StatusBadRequest
		}
	}
	msg := ae.Message
	switch {
	case st == http.StatusForbidden:
		msg = "permission denied: " + msg
	case ae.Code == api.CodeNotFound:
		msg = "encryption key not found: " + msg
	}
	return &Error{Status: st, Message: msg, Code: ae.Code}
}

// errorBody is transit's error response.
type errorBody struct {
	Errors []string `json:"errors"`
}

// WriteError answers err in transit's shape: {"errors": ["…"]} with
// transit's status for it.
func WriteError(w http.ResponseWriter, err error) {
	te := FromError(err)
	writeJSON(w, te.Status, errorBody{Errors: []string{te.Message}})
}
