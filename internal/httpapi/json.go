// Package httpapi is the REST plumbing the KMS and the sidecar share: strict
// JSON decoding with body limits, the one place that turns errors into an
// HTTP status and an docs/api.md error body, routing with JSON 404/405, panic
// recovery, and request metrics.
package httpapi

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/wire"
)

// DefaultBodyLimit is the request body limit when a route sets none.
const DefaultBodyLimit = 1 << 20

// Decode reads r's JSON body into v strictly: unknown fields, trailing data,
// wrong types, bad base64 and bodies over limit bytes are *api.Error values
// with the codes of docs/api.md.
func Decode(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	if limit <= 0 {
		limit = DefaultBodyLimit
	}
	if r.ContentLength > limit {
		return api.Errorf(api.CodeTooLarge, "The request body is larger than the %d-byte limit.", limit)
	}
	buf := wire.GetBody()
	// The body goes into the pooled array, or a larger one that replaces
	// it (wire.ReadBody wipes what it leaves behind).
	data, err := wire.ReadBody(*buf, http.MaxBytesReader(w, r.Body, limit), r.ContentLength)
	defer wire.PutBody(buf, data)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return api.Errorf(api.CodeTooLarge, "The request body is larger than the %d-byte limit.", limit)
		}
		return api.Errorf(api.CodeBadRequest, "The request body could not be read.")
	}
	// Hot operations take internal/wire's fast path; anything it declines
	// goes to the strict decoder on the same bytes.
	if wire.Decode(data, v) {
		return nil // the fast path refuses more than api.MaxBatchOps items
	}
	if err := wire.CheckSize(data, v); err != nil {
		return err
	}
	return DecodeBytes(data, v)
}

// DecodeBytes is Decode for a body already read into memory (batch items).
// An object that repeats a key is refused: encoding/json keeps the last
// value, and a check that read the first could disagree with an action
// that uses the last.
func DecodeBytes(b []byte, v any) error {
	if err := checkDuplicateKeys(b); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err, 0)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return api.Errorf(api.CodeBadRequest, "The request must hold exactly one JSON object.")
	}
	return nil
}

// checkDuplicateKeys refuses JSON in which an object repeats a key. It
// reads b as a token stream; malformed JSON passes here and is reported by
// the decoder.
func checkDuplicateKeys(b []byte) error {
	type frame struct {
		object    bool
		expectKey bool
		keys      []string
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var stack []frame
	valueDone := func() {
		if n := len(stack); n > 0 && stack[n-1].object {
			stack[n-1].expectKey = true
		}
	}
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil // the end, or malformed: the decoder says which
		}
		if n := len(stack); n > 0 && stack[n-1].object && stack[n-1].expectKey {
			if k, ok := tok.(string); ok {
				top := &stack[n-1]
				for _, seen := range top.keys {
					if seen == k {
						return api.Errorf(api.CodeBadRequest, "The request repeats the key %q in one object.", k)
					}
				}
				top.keys = append(top.keys, k)
				top.expectKey = false
				continue
			}
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, frame{object: true, expectKey: true})
		case json.Delim('['):
			stack = append(stack, frame{})
		case json.Delim('}'), json.Delim(']'):
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
			valueDone()
		default:
			valueDone()
		}
	}
}

func decodeError(err error, limit int64) error {
	var (
		mbe   *http.MaxBytesError
		syn   *json.SyntaxError
		typ   *json.UnmarshalTypeError
		b64   base64.CorruptInputError
		apiE  *api.Error
		field = func(f string) string {
			if f == "" {
				return "the body"
			}
			return fmt.Sprintf("field %q", f)
		}
	)
	switch {
	case errors.As(err, &apiE):
		return apiE
	case errors.As(err, &mbe):
		return api.Errorf(api.CodeTooLarge, "The request body is larger than the %d-byte limit.", limit)
	case errors.Is(err, io.EOF):
		return api.Errorf(api.CodeBadRequest, "The request body is empty; a JSON object is required.")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return api.Errorf(api.CodeBadRequest, "The request body is truncated JSON.")
	case errors.As(err, &syn):
		return api.Errorf(api.CodeBadRequest, "The request body is not valid JSON (at byte %d).", syn.Offset)
	case errors.As(err, &typ):
		return api.Errorf(api.CodeBadRequest, "In %s: expected a JSON %s, got %s.", field(typ.Field), jsonKind(typ.Type.String()), typ.Value)
	case errors.As(err, &b64):
		return api.Errorf(api.CodeBadRequest, "A byte field is not valid standard (padded) base64.")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.TrimPrefix(err.Error(), "json: unknown field ")
		return api.Errorf(api.CodeUnknownField, "The request has an unknown field %s.", name)
	case strings.Contains(err.Error(), "exceeded max depth"):
		return api.Errorf(api.CodeBadRequest, "The request body is nested too deeply.")
	}
	return api.Errorf(api.CodeBadRequest, "The request body could not be read as JSON.")
}

func jsonKind(goType string) string {
	switch {
	case goType == "string", strings.HasSuffix(goType, "Type"), strings.HasSuffix(goType, "Role"),
		strings.HasSuffix(goType, "KEM"), strings.HasSuffix(goType, "Action"), strings.HasSuffix(goType, "Enclave"):
		return "string"
	case goType == "[]uint8":
		return "base64 string"
	case strings.HasPrefix(goType, "[]"):
		return "array"
	case strings.HasPrefix(goType, "map["), strings.HasPrefix(goType, "api."), strings.HasPrefix(goType, "*api."):
		return "object"
	case goType == "bool":
		return "boolean"
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "uint"), strings.HasPrefix(goType, "float"):
		return "number"
	case goType == "time.Time", goType == "*time.Time":
		return "RFC 3339 time string"
	}
	return "value of another type"
}

// WriteJSON writes v as a JSON response with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	buf := wire.GetBody()
	if b, ok := wire.AppendPooled(buf, v, "\n"); ok {
		defer wire.PutBody(buf, b)
		h.Set("Content-Length", strconv.Itoa(len(b)))
		w.WriteHeader(status)
		_, _ = w.Write(b)
		return
	}
	wire.PutBody(buf, *buf) // declined: nothing was written to it
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}

// WriteError writes err as an docs/api.md error body. An *api.Error keeps its
// code and message; anything else is logged and answered as a generic 500,
// so internal details never reach a caller.
func WriteError(w http.ResponseWriter, log *slog.Logger, r *http.Request, err error) {
	var e *api.Error
	if !errors.As(err, &e) {
		if log != nil {
			log.Error("internal error", "method", r.Method, "path", r.URL.Path, "err", err)
		}
		e = &api.Error{Code: api.CodeInternal, Message: "The server hit an internal error; it has been logged."}
	}
	WriteJSON(w, e.Code.Status(), api.ErrorBody{Error: e})
}
