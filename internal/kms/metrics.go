package kms

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dcaas/dcaas/api"
)

// kmsMetrics are the KMS's domain metrics (request metrics come from
// httpapi). Label values are fixed words, never ids or secrets.
type kmsMetrics struct {
	enrollments *prometheus.CounterVec // mode, outcome
	released    *prometheus.CounterVec // flow
	created     *prometheus.CounterVec // type
	rotations   prometheus.Counter
	renewals    prometheus.Counter
}

func newKMSMetrics(reg prometheus.Registerer) *kmsMetrics {
	m := &kmsMetrics{
		enrollments: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "dcaas_kms", Name: "enrollments_total",
			Help: "Sidecar enrollments by mode (token, attestation) and outcome (ok, or the error code).",
		}, []string{"mode", "outcome"}),
		released: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "dcaas_kms", Name: "keys_released_total",
			Help: "Data keys released to sidecars, by flow (rewrap, load, derive, refresh).",
		}, []string{"flow"}),
		created: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "dcaas_kms", Name: "datakeys_created_total",
			Help: "Data keys and key versions created, by type.",
		}, []string{"type"}),
	}
	m.rotations = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "dcaas_kms", Name: "automatic_rotations_total",
		Help: "Key versions the KMS made because a key's rotation period passed or its usage neared the safe limit.",
	})
	m.renewals = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "dcaas_kms", Name: "instance_renewals_total",
		Help: "Sidecar certificate renewals.",
	})
	reg.MustRegister(m.enrollments, m.released, m.created, m.rotations, m.renewals)
	return m
}

// enrolled counts one enrollment attempt.
func (m *kmsMetrics) enrolled(attested bool, err error) {
	mode := "token"
	if attested {
		mode = "attestation"
	}
	outcome := "ok"
	if err != nil {
		outcome = string(api.CodeOf(err))
	}
	m.enrollments.WithLabelValues(mode, outcome).Inc()
}
