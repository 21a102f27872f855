// Command charts turns the JSON summaries of a figures run (run.sh figures:
// hold.SERVER.json and rounds-KxM-INTERVAL.SERVER.json for orderstream and
// each raw form) or a rolling run (run.sh rolling) into the SVG charts that
// docs/performance.md shows:
//
//	rss.svg        server RSS against idle streams held, every server
//	latency.svg    latency p50 and p99 against subscribers on one order, a
//	               status a second (the rounds runs 1xM-1s)
//	baseline.svg   fan-out at full speed: deliveries/s of every server in
//	               each full-speed rounds run
//	rate.svg       one order's deliveries/s against its publish rate (the
//	               rounds runs 1xM-INTERVAL of the largest M with several)
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
	Rounds    int     `json:"rounds"`
	Expected  int     `json:"expected"`
	Delivered int     `json:"delivered"`
	PerSecond float64 `json:"deliveriesPerSecond"`
	P50       float64 `json:"p50ms"`
	P95       float64 `json:"p95ms"`
	P99       float64 `json:"p99ms"`
	CPU       float64 `json:"serverCpuPerDeliveryMicros"`
}

// servers in the order the charts draw them; a server of another name is
// drawn after them, grey.
var servers = []string{"orderstream", "raw-goroutine", "raw-writev", "raw-loop"}

// names says what each server is.
var names = map[string]string{
	"orderstream":   "orderstream",
	"raw-goroutine": "raw, a goroutine per connection",
	"raw-writev":    "raw, a goroutine per connection, writev",
	"raw-loop":      "raw, one writing loop",
}

// Colours and dashes: orderstream solid blue, the raw forms dashed.
var style = map[string]struct {
	c    color.Color
	dash []vg.Length
}{
	"orderstream":   {color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}, nil},
	"raw-goroutine": {color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff}, []vg.Length{vg.Points(4), vg.Points(3)}},
	"raw-writev":    {color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}, []vg.Length{vg.Points(6), vg.Points(2)}},
	"raw-loop":      {color.RGBA{R: 0x80, G: 0x80, B: 0x80, A: 0xff}, []vg.Length{vg.Points(2), vg.Points(2)}},
	"other":         {color.RGBA{R: 0xb0, G: 0xb0, B: 0xb0, A: 0xff}, []vg.Length{vg.Points(1), vg.Points(2)}},
	"marker":        {color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}, []vg.Length{vg.Points(2), vg.Points(2)}},
}

func styleOf(server string) (color.Color, []vg.Length) {
	st, ok := style[server]
	if !ok {
		st = style["other"]
	}
	return st.c, st.dash
}

// label is how a chart names a server.
func label(server string) string {
	if n, ok := names[server]; ok {
		return n
	}
	return server
}

// serverNames is the servers of m in drawing order.
func serverNames[V any](m map[string]V) []string {
	var out []string
	for name := range m {
		out = append(out, name)
	}
	slices.SortFunc(out, func(a, b string) int {
		ia, ib := slices.Index(servers, a), slices.Index(servers, b)
		if ia < 0 {
			ia = len(servers)
		}
		if ib < 0 {
			ib = len(servers)
		}
		return cmp.Or(cmp.Compare(ia, ib), strings.Compare(a, b))
	})
	return out
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

func addLine(f *figure, p *plot.Plot, label string, server string, xys plotter.XYs, shape draw.GlyphDrawer) error {
	l, pts, err := plotter.NewLinePoints(xys)
	if err != nil {
		return err
	}
	c, dash := styleOf(server)
	l.Color, pts.Color = c, c
	l.Width = vg.Points(1.5)
	l.Dashes = dash
	pts.Shape = shape
	p.Add(l, pts)
	f.add(label, l, pts)
	return nil
}

// rssChart: hold.SERVER.json, RSS in MiB against streams held.
func rssChart(in string) (*figure, error) {
	files, err := filepath.Glob(filepath.Join(in, "hold.*.json"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s: %w", filepath.Join(in, "hold.*.json"), os.ErrNotExist)
	}
	byServer := map[string]hold{}
	for _, file := range files {
		var hs []hold
		if err := readJSON(file, &hs); err != nil {
			return nil, err
		}
		for _, h := range hs {
			byServer[h.Name] = h
		}
	}
	p := newPlot("streams held", "RSS (MiB)")
	f := &figure{title: "Server memory with idle streams (one process)", panels: []*plot.Plot{p}}
	for _, name := range serverNames(byServer) {
		h := byServer[name]
		var xys plotter.XYs
		for _, m := range h.Memory {
			xys = append(xys, plotter.XY{X: float64(m.Streams), Y: float64(m.RSSKiB) / 1024})
		}
		if err := addLine(f, p, fmt.Sprintf("%s: %.2f KiB per stream", label(name), h.KiBPerStream), name, xys, draw.CircleGlyph{}); err != nil {
			return nil, err
		}
	}
	p.Y.Min = 0
	return f, nil
}

// roundsRun is one rounds run of a figures run: its summaries by server.
type roundsRun struct {
	name            string
	orders, streams int
	interval        time.Duration
	servers         map[string]benchSummary
}

// roundsRuns reads every rounds-*.SERVER.json of in, grouped by run.
func roundsRuns(in string) ([]roundsRun, error) {
	files, err := filepath.Glob(filepath.Join(in, "rounds-*.json"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s: %w", filepath.Join(in, "rounds-*.json"), os.ErrNotExist)
	}
	runs := map[string]*roundsRun{}
	for _, file := range files {
		var m map[string]benchSummary
		if err := readJSON(file, &m); err != nil {
			return nil, err
		}
		name, _, _ := strings.Cut(filepath.Base(file), ".")
		for server, s := range m {
			iv, err := time.ParseDuration(s.Interval)
			if err != nil {
				return nil, fmt.Errorf("%s: interval %q: %w", file, s.Interval, err)
			}
			r := runs[name]
			if r == nil {
				r = &roundsRun{name: name, orders: s.Orders, streams: s.Streams, interval: iv, servers: map[string]benchSummary{}}
				runs[name] = r
			}
			r.servers[server] = s
		}
	}
	var out []roundsRun
	for _, r := range runs {
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b roundsRun) int {
		return cmp.Or(cmp.Compare(a.orders, b.orders), cmp.Compare(a.streams, b.streams), cmp.Compare(b.interval, a.interval))
	})
	return out, nil
}

// latencyChart: the rounds runs of one order at a status a second, p50 and
// p99 against subscribers.
func latencyChart(in string) (*figure, error) {
	runs, err := roundsRuns(in)
	if err != nil {
		return nil, err
	}
	p50s, p99s := map[string]plotter.XYs{}, map[string]plotter.XYs{}
	for _, r := range runs {
		if r.orders != 1 || r.interval != time.Second {
			continue
		}
		for name, s := range r.servers {
			p50s[name] = append(p50s[name], plotter.XY{X: float64(r.streams), Y: s.P50})
			p99s[name] = append(p99s[name], plotter.XY{X: float64(r.streams), Y: s.P99})
		}
	}
	if len(p99s) == 0 {
		return nil, fmt.Errorf("no rounds run of one order at a status a second (1xM@1s): %w", os.ErrNotExist)
	}
	top, bottom := newPlot("", "p50 (ms)"), newPlot("subscribers on the order", "p99 (ms)")
	f := &figure{title: "Event latency, publish to receipt, subscribers on one order (a status a second)",
		panels: []*plot.Plot{top, bottom}, height: 14 * vg.Centimeter}
	for _, name := range serverNames(p99s) {
		if err := addLine(f, bottom, label(name), name, p99s[name], draw.CircleGlyph{}); err != nil {
			return nil, err
		}
		l, pts, err := plotter.NewLinePoints(p50s[name])
		if err != nil {
			return nil, err
		}
		c, dash := styleOf(name)
		l.Color, pts.Color, l.Width, l.Dashes = c, c, vg.Points(1.5), dash
		top.Add(l, pts)
	}
	top.Y.Min, bottom.Y.Min = 0, 0
	return f, nil
}

// baselineChart: every full-speed rounds run, each server's deliveries/s,
// its value over its bar.
func baselineChart(in string) (*figure, error) {
	runs, err := roundsRuns(in)
	if err != nil {
		return nil, err
	}
	var full []roundsRun
	all := map[string]bool{}
	for _, r := range runs {
		if r.interval == 0 {
			full = append(full, r)
			for name := range r.servers {
				all[name] = true
			}
		}
	}
	if len(full) == 0 {
		return nil, fmt.Errorf("no rounds run at full speed (KxM@0s): %w", os.ErrNotExist)
	}
	p := newPlot("", "deliveries per second")
	f := &figure{title: "Fan-out at full speed: every status of every order at once", panels: []*plot.Plot{p}}
	names := serverNames(all)
	w := vg.Points(min(24, 300/float64(len(full)*len(names))))
	var groups []string
	top := 0.0
	for i, name := range names {
		vals := make(plotter.Values, len(full))
		var at plotter.XYs
		var texts []string
		for j, r := range full {
			vals[j] = r.servers[name].PerSecond
			top = max(top, vals[j])
			at = append(at, plotter.XY{X: float64(j), Y: vals[j]})
			texts = append(texts, fmt.Sprintf("%.0fk", vals[j]/1000))
		}
		bars, err := plotter.NewBarChart(vals, w)
		if err != nil {
			return nil, err
		}
		bars.Color, _ = styleOf(name)
		bars.LineStyle.Width = 0
		bars.Offset = w * vg.Length(float64(i)-float64(len(names)-1)/2)
		p.Add(bars)
		f.add(label(name), bars)
		values, err := plotter.NewLabels(plotter.XYLabels{XYs: at, Labels: texts})
		if err != nil {
			return nil, err
		}
		for k := range values.TextStyle {
			values.TextStyle[k].XAlign = draw.XCenter
			values.TextStyle[k].Font = font.From(plot.DefaultFont, vg.Points(7))
		}
		values.Offset = vg.Point{X: bars.Offset, Y: vg.Points(2)}
		p.Add(values)
	}
	for _, r := range full {
		if r.orders == 1 {
			groups = append(groups, fmt.Sprintf("one order × %d", r.streams))
		} else {
			groups = append(groups, fmt.Sprintf("%d orders × %d", r.orders, r.streams/r.orders))
		}
	}
	p.NominalX(groups...)
	p.Y.Min, p.Y.Max = 0, top*1.15
	return f, nil
}

// rateChart: the rounds runs of one order with the most subscribers that
// was run at several publish rates: deliveries per second against what was
// offered (subscribers times publishes per second). Where a curve falls
// below the offered line, each publish waits for the last one's fan-out.
func rateChart(in string) (*figure, error) {
	runs, err := roundsRuns(in)
	if err != nil {
		return nil, err
	}
	rated := map[int][]roundsRun{}
	n := 0
	for _, r := range runs {
		if r.orders == 1 && r.interval > 0 {
			rated[r.streams] = append(rated[r.streams], r)
			if len(rated[r.streams]) > 1 {
				n = max(n, r.streams)
			}
		}
	}
	if n == 0 {
		return nil, fmt.Errorf("no order run at several publish rates (1xM@INTERVAL): %w", os.ErrNotExist)
	}
	byServer := map[string]plotter.XYs{}
	top := 0.0
	for _, r := range rated[n] {
		rate := float64(time.Second) / float64(r.interval)
		top = max(top, rate)
		for name, s := range r.servers {
			byServer[name] = append(byServer[name], plotter.XY{X: rate, Y: s.PerSecond})
		}
	}
	p := newPlot("publishes per second (each to every subscriber)", "deliveries per second")
	f := &figure{title: fmt.Sprintf("One order with %d subscribers: deliveries/s against publish rate", n), panels: []*plot.Plot{p}}
	for _, name := range serverNames(byServer) {
		xys := byServer[name]
		slices.SortFunc(xys, func(a, b plotter.XY) int { return cmp.Compare(a.X, b.X) })
		if err := addLine(f, p, label(name), name, xys, draw.CircleGlyph{}); err != nil {
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
