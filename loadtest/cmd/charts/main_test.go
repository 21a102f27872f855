package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// summaries writes small summaries in the shapes that run.sh figures and
// run.sh rolling write, and returns their folder.
func summaries(t *testing.T, extra map[string]string) string {
	t.Helper()
	in := t.TempDir()
	bench := func(streams int, interval string, p99 float64) string {
		return fmt.Sprintf(`{"orderstream":{"name":"orderstream","streams":%[1]d,"orders":1,"interval":%[2]q,`+
			`"deliveriesPerSecond":900,"p50ms":10,"p95ms":20,"p99ms":%[3]g,"serverCpuPerDeliveryMicros":7},`+
			`"raw":{"name":"raw","streams":%[1]d,"orders":1,"interval":%[2]q,`+
			`"deliveriesPerSecond":1000,"p50ms":8,"p95ms":15,"p99ms":20,"serverCpuPerDeliveryMicros":14}}`, streams, interval, p99)
	}
	files := map[string]string{
		"hold.json": `[{"name":"raw","memory":[{"streams":0,"rssKiB":7000},{"streams":100,"rssKiB":7200}],"kibPerStream":2},` +
			`{"name":"orderstream","memory":[{"streams":0,"rssKiB":8000},{"streams":100,"rssKiB":11000}],"kibPerStream":30}]`,
		"latency-1000.json":             bench(1000, "1s", 25),
		"latency-5000.json":             bench(5000, "1s", 40),
		"fanout.json":                   bench(5000, "0s", 30),
		"rolling-nodrain-connects.json": `[{"t":-1,"n":2},{"t":0,"n":100},{"t":3,"n":4900}]`,
		"rolling-drain-connects.json":   `[{"t":0,"n":300},{"t":1,"n":320},{"t":2,"n":310}]`,
	}
	for name, body := range extra {
		files[name] = body
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(in, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return in
}

// TestCharts draws every chart from small summaries, and skips a chart
// whose summaries are missing.
func TestCharts(t *testing.T) {
	in := summaries(t, map[string]string{"raw-shape.txt": "goroutine\n"})
	out := t.TempDir()
	if err := run(in, out, "svg"); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"rss.svg", "latency.svg", "baseline.svg", "rolling.svg"} {
		b, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "<svg") {
			t.Errorf("%s is not an SVG", name)
		}
		if name != "rolling.svg" && !strings.Contains(string(b), "raw, a goroutine per connection") {
			t.Errorf("%s does not name the raw server by the shape in raw-shape.txt", name)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "rate.svg")); !os.IsNotExist(err) {
		t.Errorf("rate.svg without rate summaries: %v", err)
	}
	if err := run(t.TempDir(), out, "svg"); err == nil {
		t.Error("no summaries at all: want an error")
	}
}

// TestRollingChartMarksSignals: each SIGTERM and the SIGKILL of
// rolling-MODE-phases.txt is a marker at its time since t0, named by its
// instance, in each mode's panel; without a t0 line, t0 is the whole second
// of the first SIGTERM (the files of runs made before run.sh wrote t0).
func TestRollingChartMarksSignals(t *testing.T) {
	in := summaries(t, map[string]string{
		"rolling-nodrain-phases.txt": "1000 t0\n1000.5 sigterm 0\n1003 exited 0\n1003.2 healthy 0\n" +
			"1016.5 sigterm 1\n1032.5 sigterm 2\n1048 sigkill 0\n",
		"rolling-drain-phases.txt":   "2000.9 sigterm 0\n2016.7 sigterm 1\n2032 sigterm 2\n2048.1 sigkill 0\n",
		"rolling-drain-summary.json": `{"mode":"drain","instanceEnv":"SHUTDOWN_DRAIN=10s RETRY_JITTER=2s"}`,
	})
	f, err := rollingChart(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.panels) != 2 {
		t.Fatalf("%d panels, want one per mode", len(f.panels))
	}
	for i, want := range []string{"without a drain: SHUTDOWN_DRAIN=0s, streams end at once",
		"with a drain: SHUTDOWN_DRAIN=10s RETRY_JITTER=2s"} {
		if got := f.panels[i].Title.Text; got != want {
			t.Errorf("panel %d is titled %q, want %q", i, got, want)
		}
	}
	for _, c := range []struct {
		file string
		want []phase
	}{
		{"rolling-nodrain-phases.txt", []phase{{0.5, "SIGTERM #1"}, {16.5, "SIGTERM #2"}, {32.5, "SIGTERM #3"}, {48, "SIGKILL #1"}}},
		{"rolling-drain-phases.txt", []phase{{0.9, "SIGTERM #1"}, {16.7, "SIGTERM #2"}, {32, "SIGTERM #3"}, {48.1, "SIGKILL #1"}}},
	} {
		got, err := readPhases(filepath.Join(in, c.file))
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(c.want) {
			t.Fatalf("%s: %v, want %v", c.file, got, c.want)
		}
		for i := range got {
			if got[i].label != c.want[i].label || abs(got[i].t-c.want[i].t) > 1e-6 {
				t.Errorf("%s: marker %d is %v, want %v", c.file, i, got[i], c.want[i])
			}
		}
	}
	out := t.TempDir()
	if err := f.save(filepath.Join(out, "rolling.svg"), "svg"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(out, "rolling.svg"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"SIGTERM #1", "SIGTERM #3", "SIGKILL #1"} {
		if n := strings.Count(string(b), want); n != 2 {
			t.Errorf("%q is drawn %d times, want once in each panel", want, n)
		}
	}
	if _, err := readPhases(filepath.Join(in, "missing.txt")); !os.IsNotExist(err) {
		t.Errorf("a missing phases file: %v, want not-exist (the chart draws no markers)", err)
	}
}

// TestLegendsClearOfTitleAndData: every chart's legend lies under its
// panels (axes included) and its title above them.
func TestLegendsClearOfTitleAndData(t *testing.T) {
	in := summaries(t, map[string]string{
		"rate-1s.json":               `{"orderstream":{"name":"orderstream","streams":100,"interval":"1s","deliveriesPerSecond":100},"raw":{"name":"raw","streams":100,"interval":"1s","deliveriesPerSecond":90}}`,
		"rate-100ms.json":            `{"orderstream":{"name":"orderstream","streams":100,"interval":"100ms","deliveriesPerSecond":900},"raw":{"name":"raw","streams":100,"interval":"100ms","deliveriesPerSecond":800}}`,
		"rolling-nodrain-phases.txt": "1000 t0\n1000.5 sigterm 0\n1048 sigkill 0\n",
	})
	for name, mk := range map[string]func(string) (*figure, error){
		"rss": rssChart, "latency": latencyChart, "baseline": baselineChart, "rate": rateChart, "rolling": rollingChart,
	} {
		f, err := mk(in)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(f.legend) == 0 {
			t.Errorf("%s has no legend", name)
		}
		c := vgimg.New(width, 10*vg.Centimeter)
		lay := f.draw(draw.New(c))
		if len(lay.panels) != len(f.panels) {
			t.Fatalf("%s: %d panels drawn, want %d", name, len(lay.panels), len(f.panels))
		}
		for i, p := range lay.panels {
			if lay.legend.Max.Y > p.Min.Y {
				t.Errorf("%s: the legend (top %v) reaches into panel %d (bottom %v)", name, lay.legend.Max.Y, i, p.Min.Y)
			}
			if lay.title.Min.Y < p.Max.Y {
				t.Errorf("%s: the title (bottom %v) reaches into panel %d (top %v)", name, lay.title.Min.Y, i, p.Max.Y)
			}
		}
		if lay.legend.Size().Y <= 0 || lay.title.Size().Y <= 0 {
			t.Errorf("%s: legend %v, title %v: want both drawn", name, lay.legend, lay.title)
		}
	}
}

func abs(x float64) float64 { return max(x, -x) }
