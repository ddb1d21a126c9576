package sidecar_test

import (
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/devenv"
	"github.com/dcaas/dcaas/internal/e2e"
	"github.com/dcaas/dcaas/internal/httpapi"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
)

// probe GETs path (/healthz, /readyz) over the sidecar's socket and
// returns the status, the body and the X-Request-Id of the answer.
func probe(t *testing.T, socket string, path string, hdr map[string]string) (int, api.Health, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "GET", "http://sidecar"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	code, h, header := e2e.GetHealth(t, devenv.UnixHTTP(socket), req)
	return code, h, header.Get(httpapi.RequestIDHeader)
}

// logLines are the JSON log lines in logs whose msg is msg.
func logLines(t *testing.T, logs string, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, m := range e2e.LogLines(logs, msg) {
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// TestSidecarHealth (issue 15): /readyz is 200 while enrolled whether or
// not the KMS answers (kms_reachable is a field, not a failure); the loss
// of the KMS is logged once however many polls fail, and its return too;
// every request gets one log line with its route pattern, caller and
// request id, which the answer echoes.
func TestSidecarHealth(t *testing.T) {
	f := newFixture(t, nil)
	code, h, _ := probe(t, f.socket, "/readyz", nil)
	if code != 200 || h.Status != api.HealthOK || h.KMSReachable == nil || !*h.KMSReachable || len(h.Checks) != 1 || !h.Checks[0].OK || h.Version == "" {
		t.Fatalf("/readyz = %d %+v", code, h)
	}

	f.env.Stop()
	eventually(t, "reporting the KMS down", func() error {
		if _, h, _ := probe(t, f.socket, "/healthz", nil); h.KMSReachable == nil || *h.KMSReachable {
			return fmt.Errorf("/healthz with the KMS down = %+v", h)
		}
		return nil
	})
	time.Sleep(300 * time.Millisecond) // six more failed polls (every 50 ms)
	code, h, _ = probe(t, f.socket, "/readyz", nil)
	if code != 200 || h.Status != api.HealthOK || *h.KMSReachable {
		t.Errorf("/readyz with the KMS down = %d %+v, want 200 with kms_reachable false", code, h)
	}
	if n := len(logLines(t, string(f.logs.Bytes()), "the KMS cannot be reached; serving loaded keys until their leases run out")); n != 1 {
		t.Errorf("the loss of the KMS was logged %d times, want once", n)
	}
	back := len(logLines(t, string(f.logs.Bytes()), "the KMS is reachable"))
	f.env.Restart()
	eventually(t, "logging the KMS back", func() error {
		if n := len(logLines(t, string(f.logs.Bytes()), "the KMS is reachable")); n != back+1 {
			return fmt.Errorf("the KMS's return was logged %d times, want %d", n-back, 1)
		}
		return nil
	})

	// The request log: the route pattern, never the raw path or query.
	const id = "probe-42"
	_, _, echoed := probe(t, f.socket, "/readyz?secret=hunter2", map[string]string{"X-Request-Id": id})
	if echoed != id {
		t.Errorf("X-Request-Id echoed %q, want %q", echoed, id)
	}
	_, _, made := probe(t, f.socket, "/readyz", map[string]string{"X-Request-Id": "bad id"})
	if made == "" || made == "bad id" {
		t.Errorf("an insane X-Request-Id was answered with %q, want a fresh id", made)
	}
	if _, _, long := probe(t, f.socket, "/readyz", map[string]string{"X-Request-Id": strings.Repeat("x", 129)}); len(long) > 128 {
		t.Errorf("a 129-character X-Request-Id was kept")
	}
	err := f.local.Do(t.Context(), "DELETE", "/v1/keys/key_unknown123", nil, nil)
	kmstest.WantError(t, err, 404, api.CodeNotFound)
	logs := string(f.logs.Bytes())
	if strings.Contains(logs, "hunter2") {
		t.Error("a query value was logged")
	}
	var sawProbe, sawDelete bool
	uid := "uid:" + strconv.Itoa(os.Getuid())
	for _, l := range logLines(t, logs, "request") {
		switch {
		case l["request_id"] == id:
			sawProbe = l["route"] == "GET /readyz" && l["method"] == "GET" && l["status"] == 200.0 && l["caller"] == uid && l["duration"] != nil
			if !sawProbe {
				t.Errorf("request line %v", l)
			}
		case l["route"] == "DELETE /v1/keys/{key_id}":
			sawDelete = l["status"] == 404.0 && l["caller"] == uid && l["request_id"] != ""
			if !sawDelete {
				t.Errorf("request line %v", l)
			}
		}
	}
	if !sawProbe || !sawDelete {
		t.Errorf("request lines: probe %t, delete %t; log:\n%s", sawProbe, sawDelete, logs)
	}
}
