package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/dcaas/dcaas/api"
)

// GetHealth sends req, a GET of /healthz or /readyz, with c and returns
// the answer's status, its body decoded and its header; the test fails if
// the request fails or the body is no api.Health.
func GetHealth(t testing.TB, c *http.Client, req *http.Request) (int, api.Health, http.Header) {
	t.Helper()
	path := req.URL.Path
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var h api.Health
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatalf("GET %s: body %q: %v", path, b, err)
	}
	return resp.StatusCode, h, resp.Header
}

// HealthAt GETs url, a /healthz or /readyz, with c and returns the
// answer's status and its body decoded (see GetHealth).
func HealthAt(t testing.TB, c *http.Client, url string) (int, api.Health) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	code, h, _ := GetHealth(t, c, req)
	return code, h
}
