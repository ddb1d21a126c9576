package main_test

import (
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/e2e"
)

// TestKMSConnectionFlood: the real KMS with its default caps, flooded by
// three clients holding a thousand idle TCP connections each (no TLS
// handshake), keeps answering an admin on its keep-alive connection and
// on new ones; the flood's connections over the per-client cap are
// refused and counted.
func TestKMSConnectionFlood(t *testing.T) {
	t.Parallel()
	p := e2e.StartKMS(t, e2e.KMSConfig{Flags: []string{"--max-conns-per-client", "200", "--max-conns", "1000"}})
	admin := rawAdmin(t, p)
	admin.MustDo(t, "POST", "/v1/tenants", api.CreateTenantRequest{Name: "acme"}, nil)

	var flood []net.Conn
	defer func() {
		for _, c := range flood {
			c.Close()
		}
	}()
	for _, src := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.5"} {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
		for range 1000 {
			c, err := d.Dial("tcp", p.Addr())
			if err != nil {
				continue // reset at once: refused
			}
			flood = append(flood, c)
		}
	}
	var lat []time.Duration
	for i := range 100 {
		c := admin
		if i%10 == 0 {
			c = rawAdmin(t, p) // a new connection now and then
		}
		start := time.Now()
		if err := c.Do("GET", "/v1/instances", nil, nil); err != nil {
			t.Fatalf("admin call %d during the flood: %v", i, err)
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	_, metrics := httpGet(t, rawAdmin(t, p).HTTP, p.URL()+"/metrics")
	t.Logf("admin during the flood: p50 %v, p99 %v", lat[len(lat)/2], lat[len(lat)*99/100])
	var refused float64 = -1
	for _, line := range strings.Split(metrics, "\n") {
		if v, ok := strings.CutPrefix(line, `dcaas_kms_connections_refused_total{reason="per_client"} `); ok {
			refused, _ = strconv.ParseFloat(v, 64)
		}
	}
	if refused < 2400 {
		t.Errorf("dcaas_kms_connections_refused_total{reason=\"per_client\"} = %v, want at least 2400 (3 × (1000 − 200))", refused)
	}
	if !strings.Contains(metrics, "dcaas_kms_connections_open ") {
		t.Error("/metrics lacks dcaas_kms_connections_open")
	}
}
