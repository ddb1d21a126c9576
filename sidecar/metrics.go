package sidecar

import (
	"crypto/fips140"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	keysImported prometheus.Counter
	leaseExpired prometheus.Counter
	revoked      prometheus.Counter
	rotations    prometheus.Counter
	renewals     *prometheus.CounterVec
	certExpiry   *prometheus.GaugeVec
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
	m.rotations = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "dcaas_sidecar", Name: "key_versions_delivered_total", Help: "New key versions fetched from the KMS after a rotation.",
	})
	m.renewals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "dcaas_sidecar", Name: "certificate_renewals_total", Help: "Renewals of the identity and wrapping certificates, by outcome.",
	}, []string{"outcome"})
	// One name on both sides (the KMS exports its own kinds), so one alert
	// rule covers every certificate.
	m.certExpiry = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "dcaas_cert_expiry_timestamp_seconds", Help: "When each certificate this process uses expires (Unix seconds).",
	}, []string{"kind"})
	reg.MustRegister(
		m.keysImported, m.leaseExpired, m.revoked, m.rotations, m.renewals, m.certExpiry,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "dcaas_sidecar", Name: "keys_loaded", Help: "Data keys currently loaded.",
		}, func() float64 { return float64(s.ring.Len()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "dcaas_sidecar", Name: "kms_reachable", Help: "1 when the last KMS check succeeded.",
		}, func() float64 { return b2f(s.reachable.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "dcaas_sidecar", Name: "enrolled",
			Help: "1 while the sidecar holds a live, unrevoked identity; 0 while it waits for an enrollment token, after its identity lapsed, or once revoked.",
		}, func() float64 { return b2f(s.Enrolled()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "dcaas_sidecar", Name: "revoked", Help: "1 once the KMS revoked this instance: it serves nothing again.",
		}, func() float64 { return b2f(s.revoked.Load()) }),
	)
	return m
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func fipsMode() bool { return fips140.Enabled() }
