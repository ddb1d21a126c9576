package main

import (
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dcaas/dcaas/internal/buildinfo"
)

// What kms serve and sidecar serve set up alike: their metrics registry,
// their optional TCP listeners, and the --metrics-listen server.

// newServeRegistry returns the metrics registry of a server: the Go and
// process collectors and the build info, to which the server adds its own.
func newServeRegistry() (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if err := buildinfo.Register(reg); err != nil {
		return nil, err
	}
	return reg, nil
}

// listenOptional binds addr, the value of the flag --name, on TCP; an
// empty addr (the listener was not asked for) gives a nil listener. The
// caller closes a listener it gets.
func listenOptional(name, addr string) (net.Listener, error) {
	if addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--%s %q: %w", name, addr, err)
	}
	return ln, nil
}

// metricsServer is the server of --metrics-listen: GET /metrics from reg,
// and GET /healthz and /readyz answered by health (the API's handler).
func metricsServer(reg *prometheus.Registry, health http.Handler) *http.Server {
	mm := http.NewServeMux()
	mm.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mm.Handle("GET /healthz", health)
	mm.Handle("GET /readyz", health)
	return &http.Server{Handler: mm, ReadHeaderTimeout: 10 * time.Second}
}
