// Command charts turns the JSON summaries of a figures run (run.sh figures)
// into the SVG charts that loadtest/README.md shows:
//
//	rss.svg        server RSS against idle streams held, orderstream and raw
//	latency.svg    latency p50/p99 against subscribers on one order
//	baseline.svg   fan-out deliveries/s and p99, orderstream against raw
//	rate.svg       one 10k-subscriber order: deliveries/s against publish rate
//	rolling.svg    streams connecting per second through a rolling restart and
//	               a kill, without and with SHUTDOWN_DRAIN (run.sh rolling)
//
//	go run ./cmd/charts -in results/figures -out results/figures
//
// A chart whose inputs are missing is skipped, with a note.
package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

func main() {
	in := flag.String("in", "results/figures", "folder with the summaries of a figures run")
	out := flag.String("out", "", "folder for the SVG files (default: -in)")
	format := flag.String("format", "svg", "svg, or png to look at them without a browser")
	flag.Parse()
	if *out == "" {
		*out = *in
	}
	if *format != "svg" && *format != "png" {
		fmt.Fprintln(os.Stderr, "charts: -format svg or png")
		os.Exit(2)
	}
	if err := run(*in, *out, *format); err != nil {
		fmt.Fprintln(os.Stderr, "charts:", err)
		os.Exit(1)
	}
}

// hold is what `baseline bench -hold -json` writes, one per server.
type hold struct {
	Name   string `json:"name"`
	Memory []struct {
		Streams int   `json:"streams"`
		RSSKiB  int64 `json:"rssKiB"`
	} `json:"memory"`
	KiBPerStream float64 `json:"kibPerStream"`
}

// benchSummary is what `baseline bench -json` writes per server.
type benchSummary struct {
	Name      string  `json:"name"`
	Streams   int     `json:"streams"`
	Orders    int     `json:"orders"`
	Interval  string  `json:"interval"`
	Expected  int     `json:"expected"`
	Delivered int     `json:"delivered"`
	PerSecond float64 `json:"deliveriesPerSecond"`
	P50       float64 `json:"p50ms"`
	P95       float64 `json:"p95ms"`
	P99       float64 `json:"p99ms"`
	CPU       float64 `json:"serverCpuPerDeliveryMicros"`
}

var servers = []string{"orderstream", "raw"}

// Colours and dashes: orderstream solid blue, raw dashed grey.
var style = map[string]struct {
	c    color.Color
	dash []vg.Length
}{
	"orderstream": {color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}, nil},
	"raw":         {color.RGBA{R: 0x80, G: 0x80, B: 0x80, A: 0xff}, []vg.Length{vg.Points(4), vg.Points(3)}},
	// The rolling run's two modes: without a drain as raw, with one as orderstream.
	"nodrain": {color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}, []vg.Length{vg.Points(4), vg.Points(3)}},
	"drain":   {color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}, nil},
}

func run(in, out, format string) error {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	charts := []struct {
		file string
		make func(in string) (*plot.Plot, error)
	}{
		{"rss.svg", rssChart},
		{"latency.svg", latencyChart},
		{"baseline.svg", baselineChart},
		{"rate.svg", rateChart},
		{"rolling.svg", rollingChart},
	}
	made := 0
	for _, c := range charts {
		p, err := c.make(in)
		if errors.Is(err, os.ErrNotExist) {
			fmt.Printf("skip %s: %v\n", c.file, err)
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: %w", c.file, err)
		}
		path := filepath.Join(out, strings.TrimSuffix(c.file, ".svg")+"."+format)
		if err := p.Save(16*vg.Centimeter, 9*vg.Centimeter, path); err != nil {
			return fmt.Errorf("save %s: %w", path, err)
		}
		fmt.Println("wrote", path)
		made++
	}
	if made == 0 {
		return fmt.Errorf("no summaries in %s: run `run.sh figures` first", in)
	}
	return nil
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func newPlot(title, x, y string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = x
	p.Y.Label.Text = y
	p.Legend.Top = true
	p.Legend.Left = true
	p.Add(plotter.NewGrid())
	p.X.Tick.Marker = wholeTicks{}
	p.Y.Tick.Marker = wholeTicks{}
	return p
}

// wholeTicks are gonum's default ticks, labelled without decimals when the
// values are whole (10000 rather than 10000.00).
type wholeTicks struct{}

func (wholeTicks) Ticks(lo, hi float64) []plot.Tick {
	ts := plot.DefaultTicks{}.Ticks(lo, hi)
	for i, t := range ts {
		if t.Label != "" && t.Value == math.Trunc(t.Value) && math.Abs(t.Value) < 1e9 {
			ts[i].Label = strconv.FormatFloat(t.Value, 'f', 0, 64)
		}
	}
	return ts
}

func addLine(p *plot.Plot, label string, server string, xys plotter.XYs, dashed bool, shape draw.GlyphDrawer) error {
	l, pts, err := plotter.NewLinePoints(xys)
	if err != nil {
		return err
	}
	st := style[server]
	l.Color, pts.Color = st.c, st.c
	l.Width = vg.Points(1.5)
	if dashed || st.dash != nil {
		l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	}
	pts.Shape = shape
	p.Add(l, pts)
	p.Legend.Add(label, l, pts)
	return nil
}

// rssChart: hold.json, RSS in MiB against streams held.
func rssChart(in string) (*plot.Plot, error) {
	var hs []hold
	if err := readJSON(filepath.Join(in, "hold.json"), &hs); err != nil {
		return nil, err
	}
	p := newPlot("Server memory with idle streams (one process)", "streams held", "RSS (MiB)")
	for _, h := range hs {
		var xys plotter.XYs
		for _, m := range h.Memory {
			xys = append(xys, plotter.XY{X: float64(m.Streams), Y: float64(m.RSSKiB) / 1024})
		}
		label := fmt.Sprintf("%s (%.1f KiB/stream)", h.Name, h.KiBPerStream)
		if err := addLine(p, label, h.Name, xys, false, draw.CircleGlyph{}); err != nil {
			return nil, err
		}
	}
	p.Y.Min = 0
	return p, nil
}

// benchFiles reads every prefix-*.json bench summary of in, keyed by file.
func benchFiles(in, prefix string) (map[string]map[string]benchSummary, error) {
	files, err := filepath.Glob(filepath.Join(in, prefix+"-*.json"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s-*.json: %w", filepath.Join(in, prefix), os.ErrNotExist)
	}
	out := map[string]map[string]benchSummary{}
	for _, f := range files {
		var m map[string]benchSummary
		if err := readJSON(f, &m); err != nil {
			return nil, err
		}
		out[f] = m
	}
	return out, nil
}

// latencyChart: latency-<S>.json, one order with S subscribers.
func latencyChart(in string) (*plot.Plot, error) {
	files, err := benchFiles(in, "latency")
	if err != nil {
		return nil, err
	}
	byServer := map[string][]benchSummary{}
	interval := ""
	for _, m := range files {
		for name, s := range m {
			byServer[name] = append(byServer[name], s)
			interval = s.Interval
		}
	}
	p := newPlot(fmt.Sprintf("Event latency, subscribers on one order (a status every %s)", interval),
		"subscribers on the order", "latency (ms)")
	for _, name := range servers {
		ss := byServer[name]
		slices.SortFunc(ss, func(a, b benchSummary) int { return a.Streams - b.Streams })
		var p50, p99 plotter.XYs
		for _, s := range ss {
			p50 = append(p50, plotter.XY{X: float64(s.Streams), Y: s.P50})
			p99 = append(p99, plotter.XY{X: float64(s.Streams), Y: s.P99})
		}
		if len(ss) == 0 {
			continue
		}
		if err := addLine(p, name+" p50", name, p50, false, draw.CircleGlyph{}); err != nil {
			return nil, err
		}
		if err := addLine(p, name+" p99", name, p99, true, draw.TriangleGlyph{}); err != nil {
			return nil, err
		}
	}
	p.Y.Min = 0
	return p, nil
}

// baselineChart: fanout.json, bars of deliveries/s and p99 as a fraction of raw.
func baselineChart(in string) (*plot.Plot, error) {
	var m map[string]benchSummary
	if err := readJSON(filepath.Join(in, "fanout.json"), &m); err != nil {
		return nil, err
	}
	svc, okS := m["orderstream"]
	raw, okR := m["raw"]
	if !okS || !okR || raw.PerSecond == 0 || raw.P99 == 0 || raw.P50 == 0 {
		return nil, errors.New("fanout.json: want both orderstream and raw")
	}
	p := newPlot(fmt.Sprintf("Fan-out against the raw baseline: %d streams over %d orders, all at once", svc.Streams, svc.Orders),
		"", "orderstream / raw")
	vals := plotter.Values{svc.PerSecond / raw.PerSecond, svc.P50 / raw.P50, svc.P99 / raw.P99, 0}
	if raw.CPU > 0 {
		vals[3] = svc.CPU / raw.CPU
	}
	bars, err := plotter.NewBarChart(vals, vg.Points(40))
	if err != nil {
		return nil, err
	}
	bars.Color = style["orderstream"].c
	bars.LineStyle.Width = 0
	p.Add(bars)
	p.NominalX(
		fmt.Sprintf("deliveries/s\n%.0f vs %.0f", svc.PerSecond, raw.PerSecond),
		fmt.Sprintf("p50 latency\n%.0f vs %.0f ms", svc.P50, raw.P50),
		fmt.Sprintf("p99 latency\n%.0f vs %.0f ms", svc.P99, raw.P99),
		fmt.Sprintf("server CPU/delivery\n%.1f vs %.1f µs", svc.CPU, raw.CPU),
	)
	// The targets: deliveries/s at least 0.9 of raw, p99 at most 1.2x.
	for _, t := range []struct {
		y     float64
		label string
	}{{0.9, "target: deliveries ≥ 0.9"}, {1.2, "target: p99 ≤ 1.2"}} {
		l, err := plotter.NewLine(plotter.XYs{{X: -0.5, Y: t.y}, {X: 3.5, Y: t.y}})
		if err != nil {
			return nil, err
		}
		l.Dashes = []vg.Length{vg.Points(2), vg.Points(2)}
		l.Color = color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}
		p.Add(l)
		p.Legend.Add(t.label, l)
	}
	p.Y.Min = 0
	p.Y.Max = max(1.5, slices.Max(vals)) * 1.25 // room for the legend
	p.Legend.Left = false
	return p, nil
}

// rateChart: rate-<interval>.json, one order with many subscribers, its
// statuses published every interval: deliveries per second against what was
// offered (subscribers times publishes per second). Where the curve falls
// below the offered line, each publish waits for the last one's fan-out.
func rateChart(in string) (*plot.Plot, error) {
	files, err := benchFiles(in, "rate")
	if err != nil {
		return nil, err
	}
	byServer := map[string]plotter.XYs{}
	n, top := 0, 0.0
	for _, m := range files {
		for name, s := range m {
			d, err := time.ParseDuration(s.Interval)
			if err != nil || d <= 0 {
				return nil, fmt.Errorf("rate summary with interval %q", s.Interval)
			}
			rate := float64(time.Second) / float64(d)
			byServer[name] = append(byServer[name], plotter.XY{X: rate, Y: s.PerSecond})
			n, top = s.Streams, max(top, rate)
		}
	}
	p := newPlot(fmt.Sprintf("One order with %d subscribers: deliveries/s against publish rate", n),
		"publishes per second (each to every subscriber)", "deliveries per second")
	offered, err := plotter.NewLine(plotter.XYs{{X: 0, Y: 0}, {X: top, Y: top * float64(n)}})
	if err != nil {
		return nil, err
	}
	offered.Dashes = []vg.Length{vg.Points(1), vg.Points(3)}
	p.Add(offered)
	p.Legend.Add("offered", offered)
	for _, name := range servers {
		xys := byServer[name]
		if len(xys) == 0 {
			continue
		}
		slices.SortFunc(xys, func(a, b plotter.XY) int { return cmp.Compare(a.X, b.X) })
		if err := addLine(p, name, name, xys, false, draw.CircleGlyph{}); err != nil {
			return nil, err
		}
	}
	p.X.Min, p.Y.Min = 0, 0
	p.Y.Max = top * float64(n) / 4 // the offered line runs off the chart; the plateau is the point
	for _, xys := range byServer {
		for _, xy := range xys {
			p.Y.Max = max(p.Y.Max, xy.Y*1.2)
		}
	}
	return p, nil
}

// rollingChart: rolling-{nodrain,drain}-connects.json ([{t, n}]: streams
// that connected in second t since the first SIGTERM), one line each.
func rollingChart(in string) (*plot.Plot, error) {
	p := newPlot("Reconnects through a rolling restart and a kill", "seconds since the first SIGTERM", "streams connected per second")
	labels := map[string]string{"nodrain": "streams end at once (SHUTDOWN_DRAIN=0)", "drain": "SHUTDOWN_DRAIN + RETRY_JITTER"}
	found := 0
	for _, mode := range []string{"nodrain", "drain"} {
		var points []struct {
			T float64 `json:"t"`
			N float64 `json:"n"`
		}
		err := readJSON(filepath.Join(in, "rolling-"+mode+"-connects.json"), &points)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		// A second without a connect is absent from the file: draw it as 0.
		var xys plotter.XYs
		for _, pt := range points {
			for len(xys) > 0 && xys[len(xys)-1].X+1 < pt.T {
				xys = append(xys, plotter.XY{X: xys[len(xys)-1].X + 1})
			}
			xys = append(xys, plotter.XY{X: pt.T, Y: pt.N})
		}
		l, err := plotter.NewLine(xys)
		if err != nil {
			return nil, err
		}
		st := style[mode]
		l.Color, l.Dashes, l.Width = st.c, st.dash, vg.Points(1.2)
		p.Add(l)
		p.Legend.Add(labels[mode], l)
		found++
	}
	if found == 0 {
		return nil, fmt.Errorf("rolling-*-connects.json: %w", os.ErrNotExist)
	}
	p.Legend.Left = false
	return p, nil
}
