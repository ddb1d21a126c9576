package httpapi

import (
	"log/slog"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dcaas/dcaas/api"
)

// Metrics are the per-route request metrics both servers export.
type Metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewMetrics registers the request metrics of one server (namespace
// "dcaas_kms" or "dcaas_sidecar") with reg.
func NewMetrics(reg prometheus.Registerer, namespace string) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "http_requests_total",
			Help: "HTTP requests by route pattern and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "http_request_duration_seconds",
			Help:    "HTTP request latency by route pattern.",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"route"}),
	}
	reg.MustRegister(m.requests, m.duration)
	return m
}

// Router is an http.ServeMux that answers unknown paths and methods with
// docs/api.md JSON errors, recovers from handler panics with a generic 500, and
// records metrics by route pattern (never by raw path, which would put ids
// in label values).
type Router struct {
	mux       *http.ServeMux
	log       *slog.Logger
	metrics   *Metrics
	patterns  []string
	fallbacks []fallback
	caller    func(*http.Request) string // set by LogRequests: request lines on
}

// fallback answers unmatched requests under a path prefix.
type fallback struct {
	prefix string
	f      func(w http.ResponseWriter, r *http.Request, methodNotAllowed bool)
}

// Fallback makes f answer the requests under prefix (e.g. "/v1/transit/")
// that no pattern matches, instead of the router's JSON 404/405, so an
// API of another protocol mounted there refuses in its own shape.
// methodNotAllowed tells f whether the path exists with other methods.
func (rt *Router) Fallback(prefix string, f func(w http.ResponseWriter, r *http.Request, methodNotAllowed bool)) {
	rt.fallbacks = append(rt.fallbacks, fallback{prefix, f})
}

// NewRouter returns an empty router. metrics may be nil.
func NewRouter(log *slog.Logger, metrics *Metrics) *Router {
	return &Router{mux: http.NewServeMux(), log: log, metrics: metrics}
}

// Handle registers h for a Go 1.22 method+path pattern.
func (rt *Router) Handle(pattern string, h http.Handler) {
	rt.mux.Handle(pattern, h)
	rt.patterns = append(rt.patterns, pattern)
}

// HandleFunc registers f for a pattern.
func (rt *Router) HandleFunc(pattern string, f http.HandlerFunc) { rt.Handle(pattern, f) }

// Patterns lists the registered patterns ("POST /v1/tenants"), in
// registration order; the OpenAPI spec test compares them to the spec.
func (rt *Router) Patterns() []string { return append([]string(nil), rt.patterns...) }

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// canonicalPath reports whether p is a path the router serves as it is:
// absolute, with no empty, "." or ".." segments. (http.ServeMux would
// redirect the others with an HTML body; the router refuses them in JSON.)
func canonicalPath(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c == p
}

// ServeHTTP implements http.Handler.
func (rt *Router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	logging, reqID := rt.requestLogging(r), ""
	if logging {
		reqID = requestID(w, r)
	}
	if !canonicalPath(r.URL.Path) {
		sw := &statusWriter{ResponseWriter: w}
		WriteError(sw, rt.log, r, api.Errorf(api.CodeNotFound, "There is no endpoint %s %s: the path is not in canonical form (no empty, . or .. segments).", r.Method, r.URL.Path))
		if rt.metrics != nil {
			rt.metrics.requests.WithLabelValues("unmatched", strconv.Itoa(sw.status)).Inc()
		}
		if logging {
			rt.logRequest(r.Context(), r, "unmatched", sw.status, reqID, time.Since(start))
		}
		return
	}
	h, pattern := rt.mux.Handler(r)
	sw := &statusWriter{ResponseWriter: w}
	route := pattern
	if pattern == "" {
		route = "unmatched"
		// The mux's own 404/405 handler: learn which it is, answer in JSON.
		probe := &probeWriter{header: http.Header{}}
		h.ServeHTTP(probe, r)
		fb := rt.fallbackFor(r.URL.Path)
		switch {
		case fb != nil:
			if allow := probe.header.Get("Allow"); allow != "" {
				sw.Header().Set("Allow", allow)
			}
			fb(sw, r, probe.status == http.StatusMethodNotAllowed)
		case probe.status == http.StatusMethodNotAllowed:
			if allow := probe.header.Get("Allow"); allow != "" {
				sw.Header().Set("Allow", allow)
			}
			WriteError(sw, rt.log, r, api.Errorf(api.CodeMethodNotAllowed, "Method %s is not allowed on %s.", r.Method, r.URL.Path))
		default:
			WriteError(sw, rt.log, r, api.Errorf(api.CodeNotFound, "There is no endpoint %s %s.", r.Method, r.URL.Path))
		}
	} else {
		func() {
			defer func() {
				if p := recover(); p != nil {
					if p == http.ErrAbortHandler {
						panic(p)
					}
					rt.log.Error("handler panic", "route", pattern, "panic", p)
					if sw.status == 0 {
						WriteError(sw, rt.log, r, api.Errorf(api.CodeInternal, "The server hit an internal error; it has been logged."))
					}
				}
			}()
			// The mux itself dispatches, so r.PathValue works in handlers.
			rt.mux.ServeHTTP(sw, r)
		}()
	}
	took := time.Since(start)
	if rt.metrics != nil {
		code := sw.status
		if code == 0 {
			code = http.StatusOK
		}
		rt.metrics.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
		rt.metrics.duration.WithLabelValues(route).Observe(took.Seconds())
	}
	if logging {
		rt.logRequest(r.Context(), r, route, sw.status, reqID, took)
	}
}

func (rt *Router) fallbackFor(path string) func(http.ResponseWriter, *http.Request, bool) {
	for _, fb := range rt.fallbacks {
		if strings.HasPrefix(path, fb.prefix) {
			return fb.f
		}
	}
	return nil
}

type probeWriter struct {
	header http.Header
	status int
}

func (p *probeWriter) Header() http.Header         { return p.header }
func (p *probeWriter) Write(b []byte) (int, error) { return len(b), nil }
func (p *probeWriter) WriteHeader(code int)        { p.status = code }
