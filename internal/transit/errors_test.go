package transit

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/dcaas/dcaas/api"
)

func TestFromError(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		prefix string
	}{
		{api.Errorf(api.CodeNotFound, "Key k is not loaded."), 400, "encryption key not found: "},
		{api.Errorf(api.CodeDecryptFailed, "no"), 400, ""},
		{api.Errorf(api.CodeWrongKeyType, "no"), 400, ""},
		{api.Errorf(api.CodeInvalidArgument, "no"), 400, ""},
		{api.Errorf(api.CodeExpired, "lease"), 400, ""},
		{api.Errorf(api.CodeConflict, "no"), 400, ""},
		{api.Errorf(api.CodeForbidden, "uid 7"), 403, "permission denied: "},
		{api.Errorf(api.CodeUnauthenticated, "who"), 403, "permission denied: "},
		{api.Errorf(api.CodePolicyDenied, "no"), 403, "permission denied: "},
		{api.Errorf(api.CodeRevoked, "no"), 403, "permission denied: "},
		{api.Errorf(api.CodeUsageLimitExceeded, "rotate"), 403, "permission denied: "},
		{api.Errorf(api.CodeTooLarge, "big"), 413, ""},
		{api.Errorf(api.CodeUnavailable, "down"), 503, ""},
		{api.Errorf(api.CodeInternal, "bug"), 500, ""},
		{api.Errorf(api.Code("new_code"), "?"), 500, ""},
		{errors.New("a secret detail"), 500, "internal error"},
		{badRequest("bad"), 400, "bad"},
	} {
		got := FromError(tc.err)
		if got.Status != tc.status || !strings.HasPrefix(got.Message, tc.prefix) {
			t.Errorf("FromError(%v) = %d %q, want %d %q…", tc.err, got.Status, got.Message, tc.status, tc.prefix)
		}
		if strings.Contains(got.Message, "secret detail") {
			t.Errorf("FromError(%v) leaks the error's text", tc.err)
		}
		w := httptest.NewRecorder()
		WriteError(w, tc.err)
		var body struct{ Errors []string }
		if w.Code != tc.status || json.Unmarshal(w.Body.Bytes(), &body) != nil || len(body.Errors) != 1 || body.Errors[0] != got.Message {
			t.Errorf("WriteError(%v) = %d %s", tc.err, w.Code, w.Body)
		}
	}
}

func TestBatchStatus(t *testing.T) {
	p, _ := decodeParams([]byte(`{"partial_failure_response_code":207}`))
	bad, _ := decodeParams([]byte(`{"partial_failure_response_code":700}`))
	none, _ := decodeParams(nil)
	for _, tc := range []struct {
		t    tally
		p    *params
		want int
	}{
		{tally{ok: 3}, none, http.StatusOK},
		{tally{ok: 2, user: 1}, none, http.StatusBadRequest},
		{tally{ok: 2, internal: 1}, none, http.StatusInternalServerError},
		{tally{ok: 2, user: 1, internal: 1}, none, http.StatusBadRequest},
		{tally{ok: 2, user: 1}, p, 207},
		{tally{user: 3}, p, http.StatusBadRequest}, // nothing succeeded
		{tally{ok: 1, user: 1}, bad, http.StatusBadRequest},
	} {
		got, warn, err := tc.t.status(tc.p)
		if err != nil || got != tc.want {
			t.Errorf("%+v status = %d, %v; want %d", tc.t, got, err, tc.want)
		}
		if tc.p == bad && len(warn) != 1 {
			t.Errorf("an out-of-range partial_failure_response_code gave no warning")
		}
	}
}
