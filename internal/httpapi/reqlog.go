package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// RequestIDHeader carries a request's id: a caller's own when it is sane
// (see saneRequestID), else one the server makes; the answer echoes it.
const RequestIDHeader = "X-Request-Id"

// maxRequestID bounds an incoming request id.
const maxRequestID = 128

// LogRequests makes the router write one structured line per request at
// info level (issue 15): method, route pattern (never the raw path, which
// holds ids), status, caller, duration and request id. Bodies, headers
// and query values are never logged. caller names the caller of a request
// (a certificate subject, a Unix uid); nil means the TLS client
// certificate's subject. The line is skipped, at no cost beyond the
// check, when the logger's handler is not enabled for info.
func (rt *Router) LogRequests(caller func(*http.Request) string) {
	if caller == nil {
		caller = TLSCaller
	}
	rt.caller = caller
}

// TLSCaller is the subject of a request's TLS client certificate, or "".
func TLSCaller(r *http.Request) string {
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		return r.TLS.PeerCertificates[0].Subject.String()
	}
	return ""
}

// requestLogging reports whether this request is to be logged.
func (rt *Router) requestLogging(r *http.Request) bool {
	return rt.caller != nil && rt.log != nil && rt.log.Enabled(r.Context(), slog.LevelInfo)
}

// saneRequestID reports whether an incoming request id may be used (and
// logged) as it is: 1 to 128 printable ASCII characters, no spaces.
func saneRequestID(id string) bool {
	if id == "" || len(id) > maxRequestID {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}

// Request ids the server makes: a random per-process prefix and a counter,
// unique without a random read per request.
var (
	idPrefix  = newIDPrefix()
	idCounter atomic.Uint64
)

func newIDPrefix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:]) + "-"
}

func newRequestID() string {
	var buf [32]byte
	b := append(buf[:0], idPrefix...)
	return string(strconv.AppendUint(b, idCounter.Add(1), 10))
}

// requestID returns the id of r (the caller's, if sane, or a new one) and
// echoes it in the answer's header.
func requestID(w http.ResponseWriter, r *http.Request) string {
	id := ""
	if v := r.Header[RequestIDHeader]; len(v) == 1 && saneRequestID(v[0]) {
		id = v[0]
	} else {
		id = newRequestID()
	}
	w.Header()[RequestIDHeader] = []string{id}
	return id
}

// logRequest writes the request's line.
func (rt *Router) logRequest(ctx context.Context, r *http.Request, route string, status int, id string, took time.Duration) {
	if status == 0 {
		status = http.StatusOK
	}
	rt.log.LogAttrs(ctx, slog.LevelInfo, "request",
		slog.String("method", r.Method),
		slog.String("route", route),
		slog.Int("status", status),
		slog.String("caller", rt.caller(r)),
		slog.Duration("duration", took),
		slog.String("request_id", id))
}
