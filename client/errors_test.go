package client

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/dcaas/dcaas/api"
)

// TestSentinelsCoverEveryCode parses api/errors.go: every Code constant
// must have its sentinel. If it fails, run `go generate ./client`.
func TestSentinelsCoverEveryCode(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "../api/errors.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	ast.Inspect(f, func(nd ast.Node) bool {
		v, ok := nd.(*ast.ValueSpec)
		if !ok {
			return true
		}
		if id, ok := v.Type.(*ast.Ident); !ok || id.Name != "Code" {
			return true
		}
		for _, val := range v.Values {
			code, _ := strconv.Unquote(val.(*ast.BasicLit).Value)
			n++
			if sentinels[api.Code(code)] == nil {
				t.Errorf("api code %q has no sentinel: run go generate ./client", code)
			}
		}
		return true
	})
	if n == 0 || n != len(sentinels) {
		t.Fatalf("api/errors.go has %d codes, the client %d sentinels", n, len(sentinels))
	}
}

func TestErrorIs(t *testing.T) {
	for code, sentinel := range sentinels {
		var err error = &Error{Code: code, Message: "m", Status: code.Status()}
		wrapped := fmt.Errorf("doing x: %w", err)
		if !errors.Is(wrapped, sentinel) {
			t.Errorf("errors.Is(%s error, its sentinel) = false", code)
		}
		if !errors.Is(wrapped, &Error{Code: code}) || !errors.Is(wrapped, &api.Error{Code: code}) {
			t.Errorf("errors.Is(%s error, code-only target) = false", code)
		}
		for other, s := range sentinels {
			if other != code && errors.Is(wrapped, s) {
				t.Errorf("errors.Is(%s error, sentinel of %s) = true", code, other)
			}
		}
		var e *Error
		if !errors.As(wrapped, &e) || e.Code != code || e.Status != code.Status() {
			t.Errorf("errors.As(%s error) = %+v", code, e)
		}
	}
	unknown := &Error{Code: "from_the_future", Status: 418}
	if errors.Unwrap(unknown) != nil || errors.Is(unknown, ErrInternal) {
		t.Error("an unknown code matches a sentinel")
	}
	if errors.Is(&Error{Code: api.CodeExpired}, &Error{Code: api.CodeExpired, Message: "specific"}) {
		t.Error("a target with a message matches by code alone")
	}
}

func TestErrorFromResponse(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		want   api.Code
		msg    string
	}{
		{"api error", 409, `{"error":{"code":"already_used","message":"The grant was used."}}`, api.CodeAlreadyUsed, "The grant was used."},
		{"unknown code kept", 400, `{"error":{"code":"new_code","message":"m"}}`, "new_code", "m"},
		{"proxy 502", 502, `<html>bad gateway</html>`, api.CodeUnavailable, ""},
		{"empty 503", 503, ``, api.CodeUnavailable, ""},
		{"proxy 504", 504, `timeout`, api.CodeUnavailable, ""},
		{"proxy 413", 413, `too big`, api.CodeTooLarge, ""},
		{"bare 404", 404, `404 page not found`, api.CodeInternal, ""},
		{"error without code", 400, `{"error":{"message":"m"}}`, api.CodeInternal, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := errorFromResponse(tc.status, []byte(tc.body))
			if e.Code != tc.want || e.Status != tc.status || (tc.msg != "" && e.Message != tc.msg) || e.Message == "" {
				t.Fatalf("errorFromResponse(%d, %q) = %+v, want code %s", tc.status, tc.body, e, tc.want)
			}
		})
	}
}

func TestBatchError(t *testing.T) {
	if BatchError(api.BatchResult{Plaintext: []byte("x")}) != nil {
		t.Fatal("BatchError(success) != nil")
	}
	err := BatchError(api.BatchResult{Error: &api.Error{Code: api.CodeNotFound, Message: "Key k is not loaded."}})
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("BatchError = %v, want ErrNotFound", err)
	}
}

func TestErrorMessage(t *testing.T) {
	e := &Error{Code: api.CodeExpired, Message: "The grant has expired.", Status: http.StatusGone}
	if got, want := e.Error(), "expired (HTTP 410): The grant has expired."; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
}

// TestErrorAsAPIError: errors.As and api.CodeOf read an *Error, wrapped
// or not, as the *api.Error of the same code, message and status.
func TestErrorAsAPIError(t *testing.T) {
	e := &Error{Code: api.CodeRevoked, Message: "the instance is revoked.", Status: http.StatusForbidden}
	for _, err := range []error{e, fmt.Errorf("loading: %w", e)} {
		var ae *api.Error
		if !errors.As(err, &ae) || *ae != (api.Error{Code: api.CodeRevoked, Message: e.Message, Status: 403}) {
			t.Errorf("errors.As(%v) = %+v", err, ae)
		}
		if got := api.CodeOf(err); got != api.CodeRevoked {
			t.Errorf("api.CodeOf(%v) = %s", err, got)
		}
	}
	var ce *Error
	if errors.As(errors.New("plain"), &ce) || api.CodeOf(errors.New("plain")) != api.CodeInternal {
		t.Error("a plain error read as an API error")
	}
}

// TestDoRefusesForeignPaths: a path that, appended to the base URL, would
// name another host (or is not a path) is refused before any request.
func TestDoRefusesForeignPaths(t *testing.T) {
	k, err := NewKMS([]string{"https://kms.invalid:8443"}, nil, nil, nil, WithRetry(1, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"@evil.example/v1/status", "evil.example/x", "//evil.example/x", "", "v1/status"} {
		if err := k.Do(t.Context(), http.MethodGet, p, nil, nil); err == nil || !strings.Contains(err.Error(), "want an absolute path") {
			t.Errorf("Do(%q) = %v, want it refused", p, err)
		}
	}
}
