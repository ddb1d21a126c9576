package console

import (
	"bytes"
	"context"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// requestsMetric is the KMS's per-route request counter (label code).
const requestsMetric = "dcaas_kms_http_requests_total"

// sample is one reading of the KMS's counters.
type sample struct {
	At       time.Time
	Requests float64 // every answered request
	Errors   float64 // answers with a 4xx or 5xx status
	Released float64 // dcaas_kms_keys_released_total
}

// samples is the last hour of readings, oldest first.
type samples struct {
	mu   sync.Mutex
	max  int
	list []sample
	err  string // why the last reading failed, "" if it did not
}

func (c *Console) sample(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	raw, err := c.kms.Metrics(ctx)
	var s sample
	if err == nil {
		s, err = parseSample(raw)
	}
	c.samples.mu.Lock()
	defer c.samples.mu.Unlock()
	if err != nil {
		c.samples.err = err.Error()
		return
	}
	s.At = c.cfg.Now()
	c.samples.err = ""
	c.samples.list = append(c.samples.list, s)
	if len(c.samples.list) > c.samples.max {
		c.samples.list = c.samples.list[len(c.samples.list)-c.samples.max:]
	}
}

// parseSample reads the counters of one /metrics answer (Prometheus text
// format).
func parseSample(raw []byte) (sample, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(raw))
	if err != nil {
		return sample{}, fmt.Errorf("console: the KMS's metrics do not parse: %w", err)
	}
	var s sample
	if f := fams[requestsMetric]; f != nil {
		for _, m := range f.GetMetric() {
			v := m.GetCounter().GetValue()
			s.Requests += v
			for _, l := range m.GetLabel() {
				if l.GetName() == "code" {
					if code, err := strconv.Atoi(l.GetValue()); err == nil && code >= 400 {
						s.Errors += v
					}
				}
			}
		}
	}
	if f := fams["dcaas_kms_keys_released_total"]; f != nil {
		for _, m := range f.GetMetric() {
			s.Released += m.GetCounter().GetValue()
		}
	}
	return s, nil
}

// series is one chart's points: the increase of a counter between
// consecutive samples.
func (c *Console) series(pick func(sample) float64) (at []time.Time, v []float64) {
	c.samples.mu.Lock()
	defer c.samples.mu.Unlock()
	l := c.samples.list
	for i := 1; i < len(l); i++ {
		d := pick(l[i]) - pick(l[i-1])
		if d < 0 { // the KMS restarted: its counters began again
			d = pick(l[i])
		}
		at, v = append(at, l[i].At), append(v, d)
	}
	return at, v
}

var charts = map[string]struct {
	title string
	pick  func(sample) float64
	color string
}{
	"requests": {"Requests answered", func(s sample) float64 { return s.Requests }, "#2563eb"},
	"errors":   {"Error answers (4xx, 5xx)", func(s sample) float64 { return s.Errors }, "#dc2626"},
	"released": {"Keys released to sidecars", func(s sample) float64 { return s.Released }, "#059669"},
}

// chartSVG serves one chart as an SVG image, drawn here: no script.
func (c *Console) chartSVG(w http.ResponseWriter, r *http.Request, _ *session) {
	ch, ok := charts[r.PathValue("chart")]
	if !ok {
		c.fail(w, r, http.StatusNotFound, "There is no such chart.")
		return
	}
	at, v := c.series(ch.pick)
	w.Header().Set("Content-Type", "image/svg+xml")
	_, _ = w.Write(renderSVG(ch.title, ch.color, at, v, c.cfg.Now()))
}

// renderSVG draws a line chart of v: over the last hour, or since the
// first point when the console has sampled for less.
func renderSVG(title, color string, at []time.Time, v []float64, now time.Time) []byte {
	const width, height, left, top, bottom = 560.0, 180.0, 44.0, 24.0, 22.0
	plotW, plotH := width-left-8, height-top-bottom
	peak := 0.0
	for _, x := range v {
		peak = max(peak, x)
	}
	if peak == 0 {
		peak = 1
	}
	span := time.Hour
	if len(at) > 1 && now.Sub(at[0]) < span {
		span = now.Sub(at[0])
	}
	from := now.Add(-span)
	xs, ys := make([]float64, len(v)), make([]float64, len(v))
	var pts []string
	for i := range v {
		xs[i] = max(left, left+plotW*float64(at[i].Sub(from))/float64(span))
		ys[i] = top + plotH*(1-v[i]/peak)
		pts = append(pts, fmt.Sprintf("%.1f,%.1f", xs[i], ys[i]))
	}
	var b strings.Builder
	esc := template.HTMLEscapeString
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%g" height="%g" viewBox="0 0 %g %g" font-family="sans-serif" font-size="11">`, width, height, width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="#fff"/><text x="%g" y="14" font-weight="bold">%s</text>`, left, esc(title))
	fmt.Fprintf(&b, `<line x1="%g" y1="%g" x2="%g" y2="%g" stroke="#999"/>`, left, top+plotH, left+plotW, top+plotH)
	fmt.Fprintf(&b, `<line x1="%g" y1="%g" x2="%g" y2="%g" stroke="#999"/>`, left, top, left, top+plotH)
	fmt.Fprintf(&b, `<text x="%g" y="%g" text-anchor="end">%s</text>`, left-4, top+4, esc(strconv.FormatFloat(peak, 'f', -1, 64)))
	fmt.Fprintf(&b, `<text x="%g" y="%g" text-anchor="end">0</text>`, left-4, top+plotH)
	fmt.Fprintf(&b, `<text x="%g" y="%g">-%s</text><text x="%g" y="%g" text-anchor="end">now</text>`, left, height-6, esc(span.Round(time.Second).String()), left+plotW, height-6)
	switch len(pts) {
	case 0:
		fmt.Fprintf(&b, `<text x="%g" y="%g" text-anchor="middle" fill="#666">no samples yet</text>`, left+plotW/2, top+plotH/2)
	case 1:
		fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`, xs[0], ys[0], color)
	default:
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`, color, strings.Join(pts, " "))
	}
	b.WriteString(`</svg>`)
	return []byte(b.String())
}
