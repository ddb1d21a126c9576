package kms

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/ca"
	"github.com/dcaas/dcaas/internal/httpapi"
)

// Kinds of dcaas_cert_expiry_timestamp_seconds the KMS exports (sidecars
// export their own kinds under the same name).
const (
	expiryServer     = "server"     // this process's TLS server certificate
	expiryCA         = "ca"         // the issuing CA certificate
	expiryCATrusted  = "ca_trusted" // the soonest-expiring other trusted CA certificate (during a rotation)
	certExpiryMetric = "dcaas_cert_expiry_timestamp_seconds"
)

// kmsMetrics are the KMS's domain metrics (request metrics come from
// httpapi). Label values are fixed words, never ids or secrets.
type kmsMetrics struct {
	enrollments *prometheus.CounterVec // mode, outcome
	released    *prometheus.CounterVec // flow
	created     *prometheus.CounterVec // type
	rotations   prometheus.Counter
	renewals    prometheus.Counter
	certExpiry  *prometheus.GaugeVec // kind
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
		certExpiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: certExpiryMetric,
			Help: "When a certificate expires (unix seconds), by kind: server (the KMS's TLS certificate), ca (the issuing CA), ca_trusted (another CA still trusted during a rotation).",
		}, []string{"kind"}),
	}
	m.rotations = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "dcaas_kms", Name: "automatic_rotations_total",
		Help: "Key versions the KMS made because a key's rotation period passed or its usage neared the safe limit.",
	})
	m.renewals = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "dcaas_kms", Name: "instance_renewals_total",
		Help: "Sidecar certificate renewals.",
	})
	reg.MustRegister(m.enrollments, m.released, m.created, m.rotations, m.renewals, m.certExpiry)
	return m
}

// publishCA sets the CA expiry gauges for authority.
func (m *kmsMetrics) publishCA(authority *ca.CA) {
	roots := authority.Roots()
	m.certExpiry.WithLabelValues(expiryCA).Set(float64(roots[0].NotAfter.Unix()))
	if len(roots) == 1 {
		m.certExpiry.DeleteLabelValues(expiryCATrusted)
		return
	}
	soonest := roots[1].NotAfter
	for _, r := range roots[2:] {
		if r.NotAfter.Before(soonest) {
			soonest = r.NotAfter
		}
	}
	m.certExpiry.WithLabelValues(expiryCATrusted).Set(float64(soonest.Unix()))
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

// metricsRoute serves GET /metrics on the API's listener to admin callers
// only (issue 12: it answered anyone, and the metrics tell who enrolls,
// loads and is refused): the metrics of Config.Reg when it can also
// gather them, as a *prometheus.Registry can. A Prometheus without a
// client certificate scrapes a plain listener instead (`kms serve
// --metrics-listen`). Refusals are audited like any other call's; scrapes
// are not, or one scraper would add a record every few seconds forever.
func (k *KMS) metricsRoute() {
	g, ok := k.cfg.Reg.(prometheus.Gatherer)
	if !ok {
		return
	}
	metrics := promhttp.HandlerFor(g, promhttp.HandlerOpts{})
	k.router.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		who, err := k.authenticate(ctx, r)
		if err == nil && who.Role != api.RoleAdmin {
			err = api.Errorf(api.CodeForbidden, "The %s role may not call %s %s: the metrics are for admins (or scrape the plain --metrics-listen listener).", who.Role, r.Method, r.URL.Path)
		}
		if err == nil {
			metrics.ServeHTTP(w, r)
			return
		}
		c := &call{k: k, w: w, r: r, action: "metrics.read", caller: who}
		if who != nil {
			c.tenant = who.Tenant
		}
		if seq, aerr := k.record(ctx, k.db, c, err); aerr != nil {
			k.log.Error("audit append failed", "action", "metrics.read", "err", aerr)
		} else {
			k.audit.Stored(seq)
		}
		httpapi.WriteError(w, k.log, r, err)
	})
}
