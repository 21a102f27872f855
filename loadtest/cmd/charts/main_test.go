package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCharts draws every chart from small summaries in the shapes that
// run.sh figures writes, and skips a chart whose summaries are missing.
func TestCharts(t *testing.T) {
	in := t.TempDir()
	bench := func(streams int, interval string, p99 float64) string {
		return fmt.Sprintf(`{"orderstream":{"name":"orderstream","streams":%[1]d,"orders":1,"interval":%[2]q,`+
			`"deliveriesPerSecond":900,"p50ms":10,"p95ms":20,"p99ms":%[3]g},`+
			`"raw":{"name":"raw","streams":%[1]d,"orders":1,"interval":%[2]q,`+
			`"deliveriesPerSecond":1000,"p50ms":8,"p95ms":15,"p99ms":20}}`, streams, interval, p99)
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
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(in, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
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
	}
	if _, err := os.Stat(filepath.Join(out, "rate.svg")); !os.IsNotExist(err) {
		t.Errorf("rate.svg without rate summaries: %v", err)
	}
	if err := run(t.TempDir(), out, "svg"); err == nil {
		t.Error("no summaries at all: want an error")
	}
}
