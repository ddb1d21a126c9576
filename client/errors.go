package client

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/dcaas/dcaas/api"
)

// Error is an error answer of a KMS or sidecar: the stable API code to
// branch on, the server's sentence for people, and the HTTP status it came
// with. Match it with errors.Is against the sentinel of its code
// (errors.Is(err, ErrAlreadyUsed)) or errors.As to read the fields. It
// never holds a secret.
type Error struct {
	Code    api.Code
	Message string
	// Status is the HTTP status of the answer (0 for a batch item).
	Status int
}

func (e *Error) Error() string {
	if e.Status == 0 {
		return fmt.Sprintf("%s: %s", e.Code, e.Message)
	}
	return fmt.Sprintf("%s (HTTP %d): %s", e.Code, e.Status, e.Message)
}

// Unwrap returns the sentinel of e's code (ErrExpired for "expired"), or
// nil for a code this version of the SDK does not know.
func (e *Error) Unwrap() error { return sentinels[e.Code] }

// Is makes errors.Is match an *Error or *api.Error target that carries only
// a code: errors.Is(err, &client.Error{Code: api.CodeExpired}).
func (e *Error) Is(target error) bool {
	switch t := target.(type) {
	case *Error:
		return t.Code == e.Code && t.Message == ""
	case *api.Error:
		return t.Code == e.Code && t.Message == ""
	}
	return false
}

// As lets errors.As and api.CodeOf read an *Error as the *api.Error of
// the same code, message and status.
func (e *Error) As(target any) bool {
	if p, ok := target.(**api.Error); ok {
		*p = &api.Error{Code: e.Code, Message: e.Message, Status: e.Status}
		return true
	}
	return false
}

// BatchError returns the error of one batch result as an *Error (with
// Status 0), or nil when the operation succeeded.
func BatchError(r api.BatchResult) error {
	if r.Error == nil {
		return nil
	}
	return &Error{Code: r.Error.Code, Message: r.Error.Message}
}

// errorFromResponse turns a non-200 answer into an *Error. A body that is
// not an API error (a proxy's page, a truncated answer) becomes an error
// whose code follows the status: unavailable for 502, 503 and 504,
// request_too_large for 413, internal otherwise.
func errorFromResponse(status int, body []byte) *Error {
	var eb struct {
		Error *struct {
			Code    api.Code `json:"code"`
			Message string   `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &eb); err == nil && eb.Error != nil && eb.Error.Code != "" {
		return &Error{Code: eb.Error.Code, Message: eb.Error.Message, Status: status}
	}
	code := api.CodeInternal
	switch status {
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		code = api.CodeUnavailable
	case http.StatusRequestEntityTooLarge:
		code = api.CodeTooLarge
	}
	return &Error{Code: code, Status: status, Message: fmt.Sprintf("the server answered %d %s without an API error body", status, http.StatusText(status))}
}
