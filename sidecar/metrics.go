package sidecar

import (
	"crypto/fips140"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	keysImported prometheus.Counter
	leaseExpired prometheus.Counter
	revoked      prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, s *Sidecar) *metrics {
	m := &metrics{
		keysImported: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "dcaas_sidecar", Name: "keys_loaded_total", Help: "Data keys loaded into the sidecar.",
		}),
	}
	m.leaseExpired = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "dcaas_sidecar", Name: "lease_expired_total", Help: "Operations refused because the key's lease had run out.",
	})
	m.revoked = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "dcaas_sidecar", Name: "keys_revoked_total", Help: "Keys evicted because the KMS revoked them.",
	})
	reg.MustRegister(
		m.keysImported, m.leaseExpired, m.revoked,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "dcaas_sidecar", Name: "keys_loaded", Help: "Data keys currently loaded.",
		}, func() float64 { return float64(s.ring.Len()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "dcaas_sidecar", Name: "kms_reachable", Help: "1 when the last KMS check succeeded.",
		}, func() float64 {
			if s.reachable.Load() {
				return 1
			}
			return 0
		}),
	)
	return m
}

func fipsMode() bool { return fips140.Enabled() }
