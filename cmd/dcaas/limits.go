package main

import (
	"fmt"
	"net"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/dcaas/dcaas/internal/connlimit"
)

// limitFlags are the connection caps of a TCP listener (--max-conns,
// --max-conns-per-client).
type limitFlags struct{ lim connlimit.Limits }

func (l *limitFlags) register(fl *pflag.FlagSet, what string, total, perClient int) {
	fl.IntVar(&l.lim.Total, "max-conns", total, "most connections open at once on "+what+"; more are closed at once (0: no cap)")
	fl.IntVar(&l.lim.PerClient, "max-conns-per-client", perClient, "most connections open at once from one IP address on "+what+" (0: no cap; behind a TCP load balancer every connection comes from it)")
}

func (l *limitFlags) validate() error {
	if err := l.lim.Validate(); err != nil {
		return fmt.Errorf("--max-conns / --max-conns-per-client: %w", err)
	}
	return nil
}

// wrap caps ln and exports <namespace>_connections_open and
// <namespace>_connections_refused_total{reason} on reg.
func (l *limitFlags) wrap(ln net.Listener, reg prometheus.Registerer, namespace string) net.Listener {
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "connections_refused_total",
		Help: "Connections closed on accept because a cap (--max-conns: total, --max-conns-per-client: per_client) was reached.",
	}, []string{"reason"})
	for _, r := range []connlimit.Refusal{connlimit.RefusedTotal, connlimit.RefusedPerClient} {
		refused.WithLabelValues(string(r))
	}
	cl := connlimit.Wrap(ln, l.lim, func(r connlimit.Refusal) { refused.WithLabelValues(string(r)).Inc() })
	reg.MustRegister(refused, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: namespace, Name: "connections_open", Help: "Connections open now on the capped listener.",
	}, func() float64 { return float64(cl.Open()) }))
	return cl
}
