package datadir

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestReplacingRegisterer: the metrics of a failed unseal attempt's KMS
// are replaced by the next attempt's instead of making it panic.
func TestReplacingRegisterer(t *testing.T) {
	reg := prometheus.NewRegistry()
	opts := prometheus.GaugeOpts{Name: "dcaas_test_gauge", Help: "h"}
	first, second := prometheus.NewGauge(opts), prometheus.NewGauge(opts)
	first.Set(1)
	second.Set(2)
	replacing{reg}.MustRegister(first)
	func() {
		defer func() {
			if r := recover(); r == nil {
				t.Fatal("plain MustRegister of a duplicate did not panic: the guard tests nothing")
			}
		}()
		reg.MustRegister(second)
	}()
	replacing{reg}.MustRegister(second)
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 1 || len(mfs[0].GetMetric()) != 1 {
		t.Fatalf("gathered %d families, %v", len(mfs), err)
	}
	if v := mfs[0].GetMetric()[0].GetGauge().GetValue(); v != 2 {
		t.Fatalf("the registry serves %v, want the second attempt's 2", v)
	}
}
