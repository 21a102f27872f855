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
	files := map[string]string{
		"rolling-nodrain-connects.json": `[{"t":-1,"n":2},{"t":0,"n":100},{"t":3,"n":4900}]`,
		"rolling-drain-connects.json":   `[{"t":0,"n":300},{"t":1,"n":320},{"t":2,"n":310}]`,
	}
	for i, server := range []string{"orderstream", "raw-goroutine", "raw-writev", "raw-loop"} {
		x := float64(i + 1)
		files["hold."+server+".json"] = fmt.Sprintf(`[{"name":%q,"memory":[{"streams":0,"rssKiB":7000},{"streams":100,"rssKiB":%d}],"kibPerStream":%g}]`,
			server, 7000+int(100*x), x)
		for _, r := range []struct {
			k, m     int
			interval string
		}{{1, 1000, "0s"}, {100, 100, "0s"}, {1, 1000, "1s"}, {1, 5000, "1s"}} {
			files[fmt.Sprintf("rounds-%dx%d-%s.%s.json", r.k, r.m, r.interval, server)] = fmt.Sprintf(
				`{%[1]q:{"name":%[1]q,"streams":%[2]d,"orders":%[3]d,"interval":%[4]q,"rounds":3,"deliveriesPerSecond":%[5]g,"p50ms":%[6]g,"p95ms":20,"p99ms":%[7]g}}`,
				server, r.k*r.m, r.k, r.interval, 1000*x, 5*x, 20*x)
		}
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

// TestCharts draws every chart from small summaries, each server named,
// and skips a chart whose summaries are missing.
func TestCharts(t *testing.T) {
	in := summaries(t, nil)
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
		if name == "rolling.svg" {
			continue
		}
		for _, server := range []string{"orderstream", "raw, a goroutine per connection", "raw, a goroutine per connection, writev", "raw, one writing loop"} {
			if !strings.Contains(string(b), server) {
				t.Errorf("%s does not name %q", name, server)
			}
		}
	}
	// One order at one rate only: no rate chart.
	if _, err := os.Stat(filepath.Join(out, "rate.svg")); !os.IsNotExist(err) {
		t.Errorf("rate.svg without an order at several rates: %v", err)
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
		"rounds-1x5000-100ms.orderstream.json": `{"orderstream":{"name":"orderstream","streams":5000,"orders":1,"interval":"100ms","deliveriesPerSecond":40000}}`,
		"rounds-1x5000-100ms.raw-loop.json":    `{"raw-loop":{"name":"raw-loop","streams":5000,"orders":1,"interval":"100ms","deliveriesPerSecond":42000}}`,
		"rolling-nodrain-phases.txt":           "1000 t0\n1000.5 sigterm 0\n1048 sigkill 0\n",
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
