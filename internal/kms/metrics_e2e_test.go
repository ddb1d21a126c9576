package kms_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
)

// TestMetricsForAdminsOnly: GET /metrics on the KMS's API listener
// answered anyone (issue 12). It answers admin callers only; everyone
// else gets the usual 401 or 403, audited as denied.
func TestMetricsForAdminsOnly(t *testing.T) {
	w := newWorld(t, kcrypto.DefaultKEM())
	get := func(c *kmstest.Client) (int, string) {
		t.Helper()
		resp, err := c.HTTP.Get(c.Base + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(b)
	}
	status, body := get(w.env.Admin)
	if status != http.StatusOK || !strings.Contains(body, "dcaas_kms_http_requests_total") {
		t.Fatalf("admin GET /metrics = %d %.200q, want 200 with the KMS's metrics", status, body)
	}
	for name, c := range map[string]*kmstest.Client{
		"anonymous": w.env.Anonymous(),
		"custodian": w.cust,
		"pipeline":  w.pipe,
		"sidecar":   w.side.Client(t, w.env),
	} {
		t.Run(name, func(t *testing.T) {
			status, body := get(c)
			if name == "anonymous" {
				kmstest.WantError(t, c.Do("GET", "/metrics", nil, nil), http.StatusUnauthorized, api.CodeUnauthenticated)
			} else {
				kmstest.WantError(t, c.Do("GET", "/metrics", nil, nil), http.StatusForbidden, api.CodeForbidden)
			}
			if strings.Contains(body, "dcaas_kms_") {
				t.Errorf("%s GET /metrics = %d with metrics in the body", name, status)
			}
		})
	}
	var recs api.AuditPage
	w.env.Admin.MustDo(t, "GET", "/v1/audit", nil, &recs)
	denied := 0
	for _, r := range recs.Records {
		if r.Action == "metrics.read" {
			if r.Outcome != "denied" {
				t.Errorf("audit record %+v for a scrape, want refusals only", r)
			}
			denied++
		}
	}
	if denied != 8 {
		t.Errorf("%d metrics.read refusals audited, want 8", denied)
	}
}
