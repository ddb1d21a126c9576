package kms

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dcaas/dcaas/internal/ca"
	"github.com/dcaas/dcaas/internal/store"
)

// testClock is a settable clock (kmstest's cannot be imported here).
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *testClock) Set(t time.Time) { c.mu.Lock(); defer c.mu.Unlock(); c.t = t }

// lockedBuffer collects log output written from several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// servedKMS opens a KMS whose certificate loop never ticks (the test calls
// checkCerts itself) and serves it over TLS on a loopback port.
func servedKMS(t *testing.T, clock *testClock, ttl time.Duration) (*Server, string, *prometheus.Registry, *lockedBuffer) {
	t.Helper()
	logs := &lockedBuffer{}
	reg := prometheus.NewRegistry()
	srv, err := openTest(context.Background(), t, Options{
		DataDir: filepath.Join(t.TempDir(), "kms"), ServerHosts: []string{"127.0.0.1"}, Now: clock.Now, Reg: reg,
		Logger: slog.New(slog.NewJSONHandler(logs, nil)),
		Config: Config{ServerCertTTL: ttl, CertTicks: make(chan time.Time)},
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv.KMS.Handler(), TLSConfig: srv.TLSConfig, ErrorLog: log.New(io.Discard, "", 0)}
	go func() { _ = hs.Serve(tls.NewListener(ln, srv.TLSConfig)) }()
	t.Cleanup(func() { hs.Close(); srv.Close() })
	return srv, ln.Addr().String(), reg, logs
}

// presented dials addr with a fresh TLS connection, verifying the server
// certificate against the KMS's trust bundle at the clock's time, and
// returns the certificate it presented.
func presented(t *testing.T, srv *Server, addr string, clock *testClock) *x509.Certificate {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: srv.KMS.authority().Pool(), ServerName: "127.0.0.1", Time: clock.Now})
	if err != nil {
		t.Fatalf("TLS handshake with the KMS: %v", err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

func TestServerCertRenewal(t *testing.T) {
	start := time.Now()
	clock := &testClock{t: start}
	const ttl = 90 * 24 * time.Hour
	srv, addr, reg, logs := servedKMS(t, clock, ttl)
	k := srv.KMS

	first := presented(t, srv, addr, clock)
	// X.509 times have whole seconds.
	if d := start.Add(ttl).Sub(first.NotAfter); d < 0 || d >= time.Second {
		t.Fatalf("first server certificate expires at %v, want %v (%v after start)", first.NotAfter, start.Add(ttl), ttl)
	}
	if v := expiryGauges(t, reg)[expiryServer]; v != float64(first.NotAfter.Unix()) {
		t.Errorf("%s{kind=server} = %v, want %d", certExpiryMetric, v, first.NotAfter.Unix())
	}

	renewAt := start.Add(ttl * 2 / 3)
	steps := []struct {
		name  string
		now   time.Time
		renew bool
	}{
		{"a day after start", start.Add(24 * time.Hour), false},
		{"a second before two thirds", renewAt.Add(-time.Second), false},
		{"at two thirds", renewAt.Add(time.Second), true},
		{"right after the renewal", renewAt.Add(2 * time.Second), false},
	}
	prev := first
	renewals := 0
	for _, s := range steps {
		clock.Set(s.now)
		k.checkCerts(t.Context())
		got := presented(t, srv, addr, clock)
		if renewed := !got.Equal(prev); renewed != s.renew {
			t.Fatalf("%s: renewed = %t, want %t", s.name, renewed, s.renew)
		}
		if s.renew {
			renewals++
			if err := k.authority().Verify(got, ca.UsageServer, s.now); err != nil {
				t.Errorf("%s: the renewed certificate does not verify: %v", s.name, err)
			}
			if !got.NotAfter.After(prev.NotAfter) || got.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(prev.PublicKey) {
				t.Errorf("%s: the renewed certificate has no later expiry or the same key", s.name)
			}
			rec, err := k.st.GetCert(t.Context(), ca.SerialString(got))
			if err != nil || rec.Kind != store.CertServer {
				t.Errorf("%s: registry entry of the renewed certificate = %+v, %v", s.name, rec, err)
			}
			if v := expiryGauges(t, reg)[expiryServer]; v != float64(got.NotAfter.Unix()) {
				t.Errorf("%s: %s{kind=server} = %v, want %d", s.name, certExpiryMetric, v, got.NotAfter.Unix())
			}
		}
		prev = got
	}
	if n := strings.Count(logs.String(), "TLS server certificate renewed"); n != renewals {
		t.Errorf("%d renewal log lines, want %d", n, renewals)
	}
	if strings.Contains(logs.String(), "PRIVATE KEY") {
		t.Error("the log holds a private key")
	}
	gauges := expiryGauges(t, reg)
	if len(gauges) != 2 || gauges[expiryCA] != float64(k.authority().Cert().NotAfter.Unix()) {
		t.Errorf("%s = %v; want server and ca (%d)", certExpiryMetric, gauges, k.authority().Cert().NotAfter.Unix())
	}
}

// expiryGauges gathers dcaas_cert_expiry_timestamp_seconds by kind.
func expiryGauges(t *testing.T, reg prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != certExpiryMetric {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "kind" {
					out[l.GetValue()] = m.GetGauge().GetValue()
				}
			}
		}
	}
	return out
}

func TestRenewalTime(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		life, want time.Duration
	}{
		{90 * 24 * time.Hour, 60 * 24 * time.Hour},
		{30 * time.Second, 20 * time.Second},
		{10 * time.Second, 6666666666},
	} {
		if got := renewalTime(t0, t0.Add(tt.life)); !got.Equal(t0.Add(tt.want)) {
			t.Errorf("renewalTime(life %v) = +%v, want +%v", tt.life, got.Sub(t0), tt.want)
		}
	}
}

func TestConfigRefusesCertTTLs(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"defaults", Config{}, true},
		{"seconds", Config{AppCertTTL: 10 * time.Second, InstanceCertTTL: 30 * time.Second, ServerCertTTL: 15 * time.Second}, true},
		{"ten years", Config{AppCertTTL: MaxCertTTL}, true},
		{"below the minimum", Config{ServerCertTTL: 900 * time.Millisecond}, false},
		{"negative", Config{InstanceCertTTL: -time.Hour}, false},
		{"beyond the CA", Config{AppCertTTL: MaxCertTTL + time.Hour}, false},
		{"negative check interval", Config{CertCheckInterval: -time.Second}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cfg.validate(); (err == nil) != tt.ok {
				t.Errorf("validate() = %v, want ok %t", err, tt.ok)
			}
		})
	}
	c := Config{ServerCertTTL: 10 * time.Second}
	c.setDefaults()
	if c.CertCheckInterval != 500*time.Millisecond {
		t.Errorf("CertCheckInterval for a 10 s server certificate = %v, want 500ms", c.CertCheckInterval)
	}
}
