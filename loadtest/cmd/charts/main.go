// Command charts turns the JSON summaries of a figures run (run.sh figures)
// or a rolling run (run.sh rolling) into the SVG charts that
// docs/performance.md shows:
//
//	rss.svg        server RSS against idle streams held, orderstream and raw
//	latency.svg    latency p50/p99 against subscribers on one order
//	baseline.svg   fan-out at full speed, orderstream over raw: deliveries/s,
//	               latency and server CPU per delivery
//	rate.svg       one 10k-subscriber order: deliveries/s against publish rate
//	rolling.svg    streams connecting per second through a rolling restart and
//	               a kill, without and with SHUTDOWN_DRAIN, each SIGTERM and
//	               the SIGKILL marked (run.sh rolling)
//
//	go run ./cmd/charts -in results/figures -out results/figures
//
// A chart whose inputs are missing is skipped, with a note. Legends sit in a
// strip under the axes, never over the title or the data.
package main

import (
	"bufio"
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
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

func main() {
	in := flag.String("in", "results/figures", "folder with the summaries of a figures or rolling run")
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
	"marker":      {color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}, []vg.Length{vg.Points(2), vg.Points(2)}},
}

// figure is one image: a title, panels stacked top to bottom (their axes
// aligned), and a legend in a strip under them.
type figure struct {
	title  string
	panels []*plot.Plot
	legend []legendEntry
	height vg.Length // default 10 cm
}

type legendEntry struct {
	name   string
	thumbs []plot.Thumbnailer
}

const width = 16 * vg.Centimeter

func (f *figure) add(name string, thumbs ...plot.Thumbnailer) {
	f.legend = append(f.legend, legendEntry{name, thumbs})
}

func (f *figure) save(path, format string) error {
	h := f.height
	if h == 0 {
		h = 10 * vg.Centimeter
	}
	c, err := draw.NewFormattedCanvas(width, h, format)
	if err != nil {
		return err
	}
	f.draw(draw.New(c))
	file, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := c.WriteTo(file); err != nil {
		file.Close()
		return err
	}
	return file.Close()
}

// layout is where a figure's parts went: the title, the legend, and each
// panel (axes and data).
type layout struct {
	title, legend vg.Rectangle
	panels        []draw.Canvas
}

func (f *figure) draw(dc draw.Canvas) layout {
	var lay layout
	dc.SetColor(color.White)
	dc.Fill(dc.Rectangle.Path())
	dc = draw.Crop(dc, vg.Points(4), -vg.Points(8), vg.Points(4), -vg.Points(4))

	title := plot.New().Title.TextStyle
	title.Font.Size = vg.Points(13)
	title.XAlign = draw.XCenter
	title.YAlign = draw.YTop
	dc.FillText(title, vg.Point{X: dc.Center().X, Y: dc.Max.Y}, f.title)
	lay.title = vg.Rectangle{Min: vg.Point{X: dc.Min.X, Y: dc.Max.Y - title.Rectangle(f.title).Size().Y}, Max: dc.Max}
	dc.Max.Y = lay.title.Min.Y - vg.Points(6)

	// The legend at the bottom: in two columns if the names fit, else one.
	if n := len(f.legend); n > 0 {
		newLegend := func() plot.Legend {
			l := plot.NewLegend()
			l.Top, l.Left = true, true
			l.ThumbnailWidth = vg.Points(24)
			l.Padding = vg.Points(2)
			return l
		}
		cols := min(n, 2)
		probe := newLegend()
		for _, e := range f.legend {
			if probe.ThumbnailWidth+probe.TextStyle.Rectangle("  "+e.name).Size().X+vg.Points(8) > dc.Size().X/2 {
				cols = 1
			}
		}
		rows := (n + cols - 1) / cols
		legends := make([]plot.Legend, cols)
		for i := range legends {
			legends[i] = newLegend()
		}
		for i, e := range f.legend {
			legends[i/rows].Add(e.name, e.thumbs...)
		}
		strip := legends[0].Rectangle(dc).Size().Y + vg.Points(4)
		lay.legend = vg.Rectangle{Min: dc.Min, Max: vg.Point{X: dc.Max.X, Y: dc.Min.Y + strip}}
		for i := range legends {
			col := dc
			col.Min.X += vg.Length(i) * dc.Size().X / vg.Length(cols)
			col.Max.X = col.Min.X + dc.Size().X/vg.Length(cols)
			col.Max.Y = col.Min.Y + strip
			legends[i].Draw(draw.Crop(col, vg.Points(8), 0, 0, 0))
		}
		dc.Min.Y = lay.legend.Max.Y + vg.Points(6)
	}

	tiles := draw.Tiles{Rows: len(f.panels), Cols: 1, PadY: vg.Points(10)}
	grid := make([][]*plot.Plot, len(f.panels))
	for i, p := range f.panels {
		grid[i] = []*plot.Plot{p}
	}
	for i, row := range plot.Align(grid, tiles, dc) {
		f.panels[i].Draw(row[0])
		lay.panels = append(lay.panels, row[0])
	}
	return lay
}

func run(in, out, format string) error {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	charts := []struct {
		file string
		make func(in string) (*figure, error)
	}{
		{"rss.svg", rssChart},
		{"latency.svg", latencyChart},
		{"baseline.svg", baselineChart},
		{"rate.svg", rateChart},
		{"rolling.svg", rollingChart},
	}
	made := 0
	for _, c := range charts {
		f, err := c.make(in)
		if errors.Is(err, os.ErrNotExist) {
			fmt.Printf("skip %s: %v\n", c.file, err)
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: %w", c.file, err)
		}
		path := filepath.Join(out, strings.TrimSuffix(c.file, ".svg")+"."+format)
		if err := f.save(path, format); err != nil {
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

// rawLabel names the raw server of a figures run by its shape, which
// run.sh figures records in raw-shape.txt (RAW_SHAPE).
func rawLabel(in string) string {
	b, err := os.ReadFile(filepath.Join(in, "raw-shape.txt"))
	switch strings.TrimSpace(string(b)) {
	case "loop":
		return "raw, one writing loop"
	case "goroutine":
		return "raw, a goroutine per connection"
	}
	if err == nil {
		return "raw, " + strings.TrimSpace(string(b))
	}
	return "raw"
}

// label is how a chart names a server.
func label(in, server string) string {
	if server == "raw" {
		return rawLabel(in)
	}
	return server
}

func newPlot(x, y string) *plot.Plot {
	p := plot.New()
	p.X.Label.Text = x
	p.Y.Label.Text = y
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

func addLine(f *figure, p *plot.Plot, label string, server string, xys plotter.XYs, dashed bool, shape draw.GlyphDrawer) error {
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
	f.add(label, l, pts)
	return nil
}

// rssChart: hold.json, RSS in MiB against streams held.
func rssChart(in string) (*figure, error) {
	var hs []hold
	if err := readJSON(filepath.Join(in, "hold.json"), &hs); err != nil {
		return nil, err
	}
	p := newPlot("streams held", "RSS (MiB)")
	f := &figure{title: "Server memory with idle streams (one process)", panels: []*plot.Plot{p}}
	slices.SortFunc(hs, func(a, b hold) int { return cmp.Compare(slices.Index(servers, a.Name), slices.Index(servers, b.Name)) })
	for _, h := range hs {
		var xys plotter.XYs
		for _, m := range h.Memory {
			xys = append(xys, plotter.XY{X: float64(m.Streams), Y: float64(m.RSSKiB) / 1024})
		}
		name := fmt.Sprintf("%s: %.1f KiB per stream", label(in, h.Name), h.KiBPerStream)
		if err := addLine(f, p, name, h.Name, xys, false, draw.CircleGlyph{}); err != nil {
			return nil, err
		}
	}
	p.Y.Min = 0
	return f, nil
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
func latencyChart(in string) (*figure, error) {
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
	p := newPlot("subscribers on the order", "latency, publish to receipt (ms)")
	f := &figure{title: fmt.Sprintf("Event latency, subscribers on one order (a status every %s)", interval), panels: []*plot.Plot{p}}
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
		if err := addLine(f, p, label(in, name)+": p99", name, p99, true, draw.TriangleGlyph{}); err != nil {
			return nil, err
		}
		if err := addLine(f, p, label(in, name)+": p50", name, p50, false, draw.CircleGlyph{}); err != nil {
			return nil, err
		}
	}
	p.Y.Min = 0
	return f, nil
}

// baselineChart: fanout.json, each figure of orderstream as a multiple of
// raw's, its value written over its bar.
func baselineChart(in string) (*figure, error) {
	var m map[string]benchSummary
	if err := readJSON(filepath.Join(in, "fanout.json"), &m); err != nil {
		return nil, err
	}
	svc, okS := m["orderstream"]
	raw, okR := m["raw"]
	if !okS || !okR || raw.PerSecond == 0 || raw.P99 == 0 || raw.P50 == 0 {
		return nil, errors.New("fanout.json: want both orderstream and raw")
	}
	p := newPlot("", "orderstream / raw")
	f := &figure{
		title:  fmt.Sprintf("Fan-out at full speed: %d streams over %d orders, every status at once", svc.Streams, svc.Orders),
		panels: []*plot.Plot{p},
	}
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
		fmt.Sprintf("deliveries/s\n(higher is better)\n%.0f vs %.0f", svc.PerSecond, raw.PerSecond),
		fmt.Sprintf("latency p50\n(lower is better)\n%.0f vs %.0f ms", svc.P50, raw.P50),
		fmt.Sprintf("latency p99\n(lower is better)\n%.0f vs %.0f ms", svc.P99, raw.P99),
		fmt.Sprintf("server CPU per delivery\n(lower is better)\n%.1f vs %.1f µs", svc.CPU, raw.CPU),
	)
	top := max(1.2, slices.Max(vals)) * 1.15 // room for the values over the bars
	same, err := plotter.NewLine(plotter.XYs{{X: -0.5, Y: 1}, {X: 3.5, Y: 1}})
	if err != nil {
		return nil, err
	}
	same.Color, same.Dashes = style["raw"].c, style["raw"].dash
	p.Add(same)
	var at plotter.XYs
	var texts []string
	for i, v := range vals {
		at = append(at, plotter.XY{X: float64(i), Y: v + top*0.02})
		texts = append(texts, fmt.Sprintf("%.2fx", v))
	}
	values, err := plotter.NewLabels(plotter.XYLabels{XYs: at, Labels: texts})
	if err != nil {
		return nil, err
	}
	for i := range values.TextStyle {
		values.TextStyle[i].XAlign = draw.XCenter
	}
	p.Add(values)
	p.Y.Min, p.Y.Max = 0, top
	f.add("orderstream ÷ "+rawLabel(in), bars)
	f.add(rawLabel(in)+" = 1", same)
	return f, nil
}

// rateChart: rate-<interval>.json, one order with many subscribers, its
// statuses published every interval: deliveries per second against what was
// offered (subscribers times publishes per second). Where the curve falls
// below the offered line, each publish waits for the last one's fan-out.
func rateChart(in string) (*figure, error) {
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
	p := newPlot("publishes per second (each to every subscriber)", "deliveries per second")
	f := &figure{title: fmt.Sprintf("One order with %d subscribers: deliveries/s against publish rate", n), panels: []*plot.Plot{p}}
	for _, name := range servers {
		xys := byServer[name]
		if len(xys) == 0 {
			continue
		}
		slices.SortFunc(xys, func(a, b plotter.XY) int { return cmp.Compare(a.X, b.X) })
		if err := addLine(f, p, label(in, name), name, xys, false, draw.CircleGlyph{}); err != nil {
			return nil, err
		}
	}
	offered, err := plotter.NewLine(plotter.XYs{{X: 0, Y: 0}, {X: top, Y: top * float64(n)}})
	if err != nil {
		return nil, err
	}
	offered.Dashes = []vg.Length{vg.Points(1), vg.Points(3)}
	p.Add(offered)
	f.add("offered (subscribers × publishes per second)", offered)
	p.X.Min, p.Y.Min = 0, 0
	p.Y.Max = top * float64(n) / 4 // the offered line runs off the chart; the plateau is the point
	for _, xys := range byServer {
		for _, xy := range xys {
			p.Y.Max = max(p.Y.Max, xy.Y*1.2)
		}
	}
	return f, nil
}

// rollingMode is one half of a rolling run: its name in the files, and its
// title, which ends with the instances' settings when the summary has them.
type rollingMode struct {
	name, title, settings string
}

var rollingModes = []rollingMode{
	{"nodrain", "without a drain", "SHUTDOWN_DRAIN=0s, streams end at once"},
	{"drain", "with a drain", "SHUTDOWN_DRAIN and RETRY_JITTER"},
}

// phase is a step of a rolling run, in seconds since its t0.
type phase struct {
	t     float64
	label string
}

// readPhases reads rolling-MODE-phases.txt ("<epoch seconds> <step>
// <instance>" lines) into the SIGTERMs and the SIGKILL, in seconds since
// the connects' t0: the "t0" line if run.sh wrote one, else the whole
// second of the first SIGTERM (which is how run.sh took t0 before it
// wrote it down).
func readPhases(path string) ([]phase, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	type step struct {
		at   float64
		what string
		inst string
	}
	var steps []step
	t0 := math.NaN()
	sc := bufio.NewScanner(file)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		at, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return nil, fmt.Errorf("%s: %q: %w", path, sc.Text(), err)
		}
		switch fields[1] {
		case "t0":
			t0 = at
		case "sigterm", "sigkill":
			if len(fields) < 3 {
				return nil, fmt.Errorf("%s: %q: no instance", path, sc.Text())
			}
			if math.IsNaN(t0) && fields[1] == "sigterm" && len(steps) == 0 {
				t0 = math.Floor(at)
			}
			steps = append(steps, step{at, fields[1], fields[2]})
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	var out []phase
	for _, s := range steps {
		name := strings.ToUpper(s.what)
		// Instances are numbered from 0 in the file, from 1 on the chart.
		if i, err := strconv.Atoi(s.inst); err == nil {
			name += fmt.Sprintf(" #%d", i+1)
		}
		out = append(out, phase{s.at - t0, name})
	}
	return out, nil
}

// rollingChart: rolling-{nodrain,drain}-connects.json ([{t, n}]: streams
// that connected in second t since t0, just before the first SIGTERM), one
// panel each, with rolling-MODE-phases.txt's SIGTERMs and SIGKILL marked.
func rollingChart(in string) (*figure, error) {
	f := &figure{title: "Streams reconnecting through a rolling restart and a kill (nginx, 3 instances)",
		height: 15 * vg.Centimeter}
	type panel struct {
		mode   rollingMode
		xys    plotter.XYs
		phases []phase
	}
	var panels []panel
	lo, hi, top := -5.0, 0.0, 0.0
	lastMarker := math.Inf(-1)
	for _, mode := range rollingModes {
		var points []struct {
			T float64 `json:"t"`
			N float64 `json:"n"`
		}
		err := readJSON(filepath.Join(in, "rolling-"+mode.name+"-connects.json"), &points)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		phases, err := readPhases(filepath.Join(in, "rolling-"+mode.name+"-phases.txt"))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		var s summary
		if err := readJSON(filepath.Join(in, "rolling-"+mode.name+"-summary.json"), &s); err == nil && s.InstanceEnv != "" {
			mode.settings = s.InstanceEnv
		}
		mode.title += ": " + mode.settings
		slices.SortFunc(points, func(a, b struct {
			T float64 `json:"t"`
			N float64 `json:"n"`
		}) int {
			return cmp.Compare(a.T, b.T)
		})
		// A second without a connect is absent from the file: draw it as 0.
		var xys plotter.XYs
		for _, pt := range points {
			if len(xys) == 0 {
				for t := min(lo, pt.T); t < pt.T; t++ {
					xys = append(xys, plotter.XY{X: t})
				}
			}
			for len(xys) > 0 && xys[len(xys)-1].X+1 < pt.T {
				xys = append(xys, plotter.XY{X: xys[len(xys)-1].X + 1})
			}
			xys = append(xys, plotter.XY{X: pt.T, Y: pt.N})
			top = max(top, pt.N)
		}
		if len(xys) > 0 {
			lo, hi = min(lo, xys[0].X), max(hi, xys[len(xys)-1].X)
		}
		for _, ph := range phases {
			lo, hi = min(lo, ph.t), max(hi, ph.t)
			lastMarker = max(lastMarker, ph.t)
		}
		panels = append(panels, panel{mode, xys, phases})
	}
	if len(panels) == 0 {
		return nil, fmt.Errorf("rolling-*-connects.json: %w", os.ErrNotExist)
	}
	top = max(top, 1) * 1.2               // room for the markers' names over the data
	hi = max(hi+1, lastMarker+(hi-lo)/10) // and right of the last marker
	marked := false
	for i, pn := range panels {
		p := newPlot("", "connects per second")
		if i == len(panels)-1 {
			p.X.Label.Text = "seconds since the first SIGTERM"
		}
		p.Title.Text = pn.mode.title
		p.Title.TextStyle.Font.Size = vg.Points(11)
		if len(pn.xys) > 0 {
			l, err := plotter.NewLine(pn.xys)
			if err != nil {
				return nil, err
			}
			l.Color, l.Width = style["orderstream"].c, vg.Points(1.2)
			p.Add(l)
			if i == 0 {
				f.add("streams connected through nginx per second (k6 sse_connecting)", l)
			}
		}
		var at plotter.XYs
		var names []string
		for _, ph := range pn.phases {
			m, err := plotter.NewLine(plotter.XYs{{X: ph.t, Y: 0}, {X: ph.t, Y: top}})
			if err != nil {
				return nil, err
			}
			m.Color, m.Dashes, m.Width = style["marker"].c, style["marker"].dash, vg.Points(1)
			p.Add(m)
			if !marked {
				f.add("SIGTERM to an instance (restarted once it exits), then SIGKILL to the first", m)
				marked = true
			}
			at = append(at, plotter.XY{X: ph.t, Y: top})
			names = append(names, ph.label)
		}
		if len(at) > 0 {
			lbl, err := plotter.NewLabels(plotter.XYLabels{XYs: at, Labels: names})
			if err != nil {
				return nil, err
			}
			for j := range lbl.TextStyle {
				lbl.TextStyle[j].Font = font.From(plot.DefaultFont, vg.Points(9))
				lbl.TextStyle[j].YAlign = text.YTop
				lbl.TextStyle[j].Color = style["marker"].c
			}
			lbl.Offset = vg.Point{X: vg.Points(2)}
			p.Add(lbl)
		}
		p.X.Min, p.X.Max = lo, hi
		p.Y.Min, p.Y.Max = 0, top
		f.panels = append(f.panels, p)
	}
	return f, nil
}

// summary is the part of rolling-MODE-summary.json the chart names a mode by.
type summary struct {
	InstanceEnv string `json:"instanceEnv"`
}
