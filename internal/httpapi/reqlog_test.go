package httpapi

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestSaneRequestID(t *testing.T) {
	for _, tc := range []struct {
		id   string
		want bool
	}{
		{"abc-123", true},
		{"0f8fad5b-d9cb-469f-a165-70867728950e", true},
		{strings.Repeat("x", 128), true},
		{strings.Repeat("x", 129), false},
		{"", false},
		{"has space", false},
		{"tab\there", false},
		{"newline\nforged log line", false},
		{"nonascii\u00e9", false},
		{"del\x7f", false},
	} {
		if got := saneRequestID(tc.id); got != tc.want {
			t.Errorf("saneRequestID(%q) = %t, want %t", tc.id, got, tc.want)
		}
	}
}

// TestRequestLog: one info line per request with the route pattern (not
// the path with its ids, nor the query), status, caller, duration and the
// request id, which the answer echoes; none when the level is above info
// or LogRequests was not called.
func TestRequestLog(t *testing.T) {
	newRouter := func(level slog.Level, logRequests bool) (*Router, *bytes.Buffer) {
		var buf bytes.Buffer
		rt := NewRouter(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: level})), nil)
		rt.HandleFunc("DELETE /v1/keys/{key_id}", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
		if logRequests {
			rt.LogRequests(func(*http.Request) string { return "CN=app,O=acme" })
		}
		return rt, &buf
	}
	for _, tc := range []struct {
		name        string
		level       slog.Level
		logRequests bool
		path, id    string
		wantLine    bool
		wantRoute   string
		wantStatus  float64
		keepID      bool
	}{
		{"logged", slog.LevelInfo, true, "/v1/keys/key_secretid?token=hunter2", "req-1", true, "DELETE /v1/keys/{key_id}", 204, true},
		{"unmatched", slog.LevelInfo, true, "/v1/nothing/key_secretid", "", true, "unmatched", 404, false},
		{"insane id replaced", slog.LevelInfo, true, "/v1/keys/k", "a b", true, "DELETE /v1/keys/{key_id}", 204, false},
		{"level warn", slog.LevelWarn, true, "/v1/keys/k", "req-2", false, "", 0, false},
		{"off", slog.LevelInfo, false, "/v1/keys/k", "req-3", false, "", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt, buf := newRouter(tc.level, tc.logRequests)
			req := httptest.NewRequest("DELETE", tc.path, nil)
			if tc.id != "" {
				req.Header.Set(RequestIDHeader, tc.id)
			}
			w := httptest.NewRecorder()
			rt.ServeHTTP(w, req)
			echoed := w.Header().Get(RequestIDHeader)
			if !tc.wantLine {
				if buf.Len() != 0 || echoed != "" {
					t.Fatalf("logged %q, echoed %q; want nothing", buf.String(), echoed)
				}
				return
			}
			if strings.Contains(buf.String(), "key_secretid") || strings.Contains(buf.String(), "hunter2") {
				t.Errorf("the line holds the raw path or the query: %s", buf.String())
			}
			var line map[string]any
			if err := json.Unmarshal(buf.Bytes(), &line); err != nil || strings.Count(buf.String(), "\n") != 1 {
				t.Fatalf("want one JSON line, got %q (%v)", buf.String(), err)
			}
			if line["msg"] != "request" || line["level"] != "INFO" || line["method"] != "DELETE" || line["route"] != tc.wantRoute ||
				line["status"] != tc.wantStatus || line["caller"] != "CN=app,O=acme" || line["duration"] == nil {
				t.Errorf("line = %v", line)
			}
			if line["request_id"] != echoed || echoed == "" || (tc.keepID && echoed != tc.id) || (!tc.keepID && echoed == tc.id) {
				t.Errorf("request_id %v, echoed %q, sent %q (keep %t)", line["request_id"], echoed, tc.id, tc.keepID)
			}
		})
	}
}

// BenchmarkRequestLog shows the line's cost, off and on (not run by make
// test): go test -run '^$' -bench RequestLog ./internal/httpapi/
func BenchmarkRequestLog(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "off"
		if on {
			name = "on"
		}
		b.Run(name, func(b *testing.B) {
			rt := NewRouter(slog.New(slog.NewJSONHandler(discard{}, nil)), nil)
			rt.HandleFunc("GET /x", func(w http.ResponseWriter, r *http.Request) {})
			if on {
				rt.LogRequests(func(*http.Request) string { return "uid:1000" })
			}
			req := httptest.NewRequest("GET", "/x", nil)
			b.ReportAllocs()
			for b.Loop() {
				rt.ServeHTTP(nopWriter{h: http.Header{}}, req)
			}
		})
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

type nopWriter struct{ h http.Header }

func (w nopWriter) Header() http.Header         { return w.h }
func (w nopWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w nopWriter) WriteHeader(int)             {}
