package console

import (
	"encoding/xml"
	"math"
	"strings"
	"testing"
	"time"
)

const exposition = `# HELP dcaas_kms_http_requests_total HTTP requests by route pattern and status code.
# TYPE dcaas_kms_http_requests_total counter
dcaas_kms_http_requests_total{code="200",route="GET /v1/tenants"} 7
dcaas_kms_http_requests_total{code="401",route="GET /v1/tenants"} 2
dcaas_kms_http_requests_total{code="503",route="POST /v1/datakeys"} 1
dcaas_kms_http_requests_total{code="304",route="GET /healthz"} 3
# HELP dcaas_kms_keys_released_total Data keys released to sidecars, by flow.
# TYPE dcaas_kms_keys_released_total counter
dcaas_kms_keys_released_total{flow="rewrap"} 4
dcaas_kms_keys_released_total{flow="load"} 5
# HELP go_goroutines Number of goroutines.
# TYPE go_goroutines gauge
go_goroutines 12
`

func TestParseSample(t *testing.T) {
	for _, c := range []struct {
		name, in string
		want     sample
		err      bool
	}{
		{"kms metrics", exposition, sample{Requests: 13, Errors: 3, Released: 9}, false},
		{"empty", "", sample{}, false},
		{"other metrics only", "# TYPE up gauge\nup 1\n", sample{}, false},
		{"not the text format", "dcaas_kms_http_requests_total{code=\"200\" 1\n", sample{}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := parseSample([]byte(c.in))
			if (err != nil) != c.err {
				t.Fatalf("parseSample() error = %v, want error %v", err, c.err)
			}
			if got != c.want {
				t.Errorf("parseSample() = %+v, want %+v", got, c.want)
			}
		})
	}
}

// FuzzParseSample: any answer parses or is refused with the console's
// error, never a panic; and without a minus sign in it (no negative
// count), the errors counted are some of the requests counted.
func FuzzParseSample(f *testing.F) {
	f.Add([]byte(exposition))
	f.Add([]byte(""))
	f.Add([]byte("dcaas_kms_http_requests_total{code=\"abc\"} 1\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		s, err := parseSample(raw)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "console: ") {
				t.Errorf("parseSample(%q) error = %v, want the console's", raw, err)
			}
			return
		}
		if !strings.Contains(string(raw), "-") && !math.IsNaN(s.Requests) && s.Errors > s.Requests {
			t.Errorf("parseSample(%q) = %+v: more errors than requests", raw, s)
		}
	})
}

func TestRenderSVG(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name  string
		n     int
		shape string
	}{
		{"no samples", 0, "no samples yet"},
		{"one point", 1, "<circle"},
		{"a line", 5, "<polyline"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var at []time.Time
			var v []float64
			for i := range c.n {
				at = append(at, now.Add(-time.Duration(c.n-i)*time.Minute))
				v = append(v, float64(i))
			}
			svg := string(renderSVG(`<b>"title"</b>`, "#000", at, v, now))
			if !strings.Contains(svg, c.shape) {
				t.Errorf("renderSVG(%d points) lacks %q: %s", c.n, c.shape, svg)
			}
			if strings.Contains(svg, "<b>") {
				t.Errorf("renderSVG put the title in as markup: %s", svg)
			}
			if err := xml.Unmarshal([]byte(svg), new(struct{})); err != nil {
				t.Errorf("renderSVG(%d points) is not well-formed XML: %v", c.n, err)
			}
		})
	}
}
