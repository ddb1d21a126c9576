package httpapi

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/dcaas/dcaas/api"
)

func TestRouterFallback(t *testing.T) {
	rt := NewRouter(nil, nil)
	rt.HandleFunc("POST /v1/transit/encrypt/{name}", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	rt.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	rt.Fallback("/v1/transit/", func(w http.ResponseWriter, r *http.Request, methodNotAllowed bool) {
		w.WriteHeader(http.StatusTeapot)
		fmt.Fprint(w, methodNotAllowed)
	})
	for _, tc := range []struct {
		method, path string
		status       int
		body         string // the fallback's, or the dcaas error code
	}{
		{"POST", "/v1/transit/encrypt/k", http.StatusNoContent, ""},
		{"POST", "/v1/transit/export/k", http.StatusTeapot, "false"},
		{"GET", "/v1/transit/encrypt/k", http.StatusTeapot, "true"},
		{"GET", "/v1/nothing", http.StatusNotFound, string(api.CodeNotFound)},
		{"POST", "/v1/status", http.StatusMethodNotAllowed, string(api.CodeMethodNotAllowed)},
	} {
		w := httptest.NewRecorder()
		rt.ServeHTTP(w, httptest.NewRequest(tc.method, tc.path, nil))
		got := w.Body.String()
		if tc.status == http.StatusNotFound || tc.status == http.StatusMethodNotAllowed {
			var b api.ErrorBody
			if err := json.Unmarshal(w.Body.Bytes(), &b); err != nil || b.Error == nil {
				t.Fatalf("%s %s: body %q is not an ErrorBody", tc.method, tc.path, got)
			}
			got = string(b.Error.Code)
		}
		if w.Code != tc.status || got != tc.body {
			t.Errorf("%s %s = %d %q, want %d %q", tc.method, tc.path, w.Code, got, tc.status, tc.body)
		}
	}
	if allow := func() string {
		w := httptest.NewRecorder()
		rt.ServeHTTP(w, httptest.NewRequest("GET", "/v1/transit/encrypt/k", nil))
		return w.Header().Get("Allow")
	}(); allow == "" {
		t.Error("a fallback's 405 lost the Allow header")
	}
}

// TestRouterUncleanPaths: paths http.ServeMux would redirect with an HTML
// body get a JSON 404 instead.
func TestRouterUncleanPaths(t *testing.T) {
	rt := NewRouter(slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	rt.HandleFunc("GET /v1/keys", func(w http.ResponseWriter, r *http.Request) { WriteJSON(w, 200, map[string]bool{"ok": true}) })
	for _, p := range []string{"//v1/keys", "/v1//keys", "/v1/./keys", "/v1/x/../keys", "/v1/keys/."} {
		t.Run(p, func(t *testing.T) {
			rec := httptest.NewRecorder()
			r := httptest.NewRequest("GET", "http://sidecar/", nil)
			r.URL.Path = p
			rt.ServeHTTP(rec, r)
			if rec.Code != http.StatusNotFound || !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") || !strings.Contains(rec.Body.String(), `"not_found"`) {
				t.Fatalf("GET %s = %d %q %s, want a JSON 404", p, rec.Code, rec.Header().Get("Content-Type"), rec.Body)
			}
		})
	}
	rec := httptest.NewRecorder()
	rt.ServeHTTP(rec, httptest.NewRequest("GET", "http://sidecar/v1/keys", nil))
	if rec.Code != 200 {
		t.Fatalf("GET /v1/keys = %d, want 200", rec.Code)
	}
}
