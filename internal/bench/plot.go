package bench

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"math"
	"strings"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// Plot draws results as a horizontal bar chart of operations per second
// (log scale, since the modes span orders of magnitude), each bar labelled
// with its figure and its ratio to the central path, and writes a PNG.
func Plot(w io.Writer, title string, results []Result) error {
	const (
		width    = 1000
		rowH     = 34
		left     = 230
		right    = 190
		top      = 50
		barInset = 6
	)
	height := top + rowH*len(results) + 40
	img := image.NewRGBA(image.Rect(0, 0, width, height))
	draw.Draw(img, img.Bounds(), image.NewUniform(color.White), image.Point{}, draw.Src)
	text := func(x, y int, s string, c color.Color) {
		s = strings.ReplaceAll(s, "µ", "u") // the bitmap font is ASCII
		d := &font.Drawer{Dst: img, Src: image.NewUniform(c), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
		d.DrawString(s)
	}
	text(12, 24, title, color.Black)
	maxOps := 1.0
	for _, r := range results {
		maxOps = math.Max(maxOps, r.OpsPerSec)
	}
	lo := 1.0 // log10 scale from 10 ops/s
	hi := math.Ceil(math.Log10(maxOps))
	scale := func(v float64) int {
		if v <= 10 {
			return 0
		}
		return int(float64(width-left-right) * (math.Log10(v) - lo) / (hi - lo))
	}
	grid := color.RGBA{220, 220, 220, 255}
	for p := lo; p <= hi; p++ {
		x := left + scale(math.Pow(10, p))
		draw.Draw(img, image.Rect(x, top-8, x+1, top+rowH*len(results)), image.NewUniform(grid), image.Point{}, draw.Src)
		text(x-12, top+rowH*len(results)+16, fmt.Sprintf("1e%d", int(p)), color.Gray{100})
	}
	palette := []color.RGBA{{46, 134, 193, 255}, {39, 174, 96, 255}, {22, 160, 133, 255}, {142, 68, 173, 255}, {192, 57, 43, 255}, {127, 140, 141, 255}}
	for i, r := range results {
		y := top + i*rowH
		text(12, y+rowH/2+4, r.Mode, color.Black)
		bw := max(scale(r.OpsPerSec), 1)
		draw.Draw(img, image.Rect(left, y+barInset, left+bw, y+rowH-barInset), image.NewUniform(palette[i%len(palette)]), image.Point{}, draw.Src)
		label := fmt.Sprintf("%s ops/s", human(r.OpsPerSec))
		if r.VsCentral > 0 {
			label += fmt.Sprintf("  x%.1f", r.VsCentral)
		}
		text(left+bw+8, y+rowH/2+4, label, color.Black)
	}
	return png.Encode(w, img)
}

// human formats a rate with thousands separators.
func human(v float64) string {
	n := int64(math.Round(v))
	s := fmt.Sprint(n)
	out := make([]byte, 0, len(s)+len(s)/3)
	for i, c := range []byte(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, c)
	}
	return string(out)
}

// Human formats a rate for tables.
func Human(v float64) string { return human(v) }
