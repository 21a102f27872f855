package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeFigures writes a figures run's files in the shapes bench writes:
// per server a hold and the rounds runs; speed scales each server's
// deliveries/s, and its times and memory go the other way.
func writeFigures(t *testing.T, dir string, speed map[string]float64) {
	t.Helper()
	write := func(name string, v any) {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for server, x := range speed {
		write("hold."+server+".json", []holdRun{{Name: server, Streams: 19500, Held: 19500, KiBPerStream: 2 / x,
			Box: box{LoadBefore: "0.50 0.40 0.30", Cores: 2}}})
		for _, r := range []struct {
			k, n, rounds int
			interval     string
		}{{1, 1000, 200, "0s"}, {1, 10000, 10, "0s"}, {100, 10000, 10, "0s"}, {1, 1000, 20, "100ms"}, {1, 10000, 5, "1s"}} {
			s := summary{Name: server, N: r.n, K: r.k, Interval: r.interval, Rounds: r.rounds,
				Expected: r.n * r.rounds * perOrder, Delivered: r.n * r.rounds * perOrder, Ended: r.n * r.rounds,
				PerSecond: 1000 * x * float64(r.n), P99: 30 / x, ConnectP50: float64(r.n) / 10 / x,
				RSSAfterKiB: int64(60 * 1024 / x), Box: box{LoadBefore: "1.25 1.00 0.90", Cores: 2}}
			write(fmt.Sprintf("rounds-%dx%d-%s.%s.json", r.k, r.n/r.k, r.interval, server), map[string]summary{server: s})
		}
	}
	// Not a run's summary: never read as one.
	write("figures.json", map[string]string{"note": "an earlier table"})
}

func TestTable(t *testing.T) {
	dir := t.TempDir()
	writeFigures(t, dir, map[string]float64{"orderstream": 1, "raw-loop": 0.5, "raw-goroutine": 2, "raw-writev": 4})
	if err := os.WriteFile(filepath.Join(dir, "pinning.txt"), []byte("not pinned: 2 cores\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := table([]string{"-in", dir, "-note", "small sizes: not to be quoted"}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "figures.json"))
	if err != nil {
		t.Fatal(err)
	}
	var got figures
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if want := "orderstream raw-goroutine raw-writev raw-loop"; strings.Join(got.Servers, " ") != want {
		t.Errorf("servers %v, want %s", got.Servers, want)
	}
	want := []struct {
		figure, best string
		ratio        float64
	}{
		{"RSS per idle stream, 19,500 streams held", "raw-writev", 4},
		{"most deliveries/s, one order × 1,000", "raw-writev", 0.25},
		{"most deliveries/s, one order × 10,000", "raw-writev", 0.25},
		{"most deliveries/s, 100 orders × 100", "raw-writev", 0.25},
		{"p99 at that rate, one order × 1,000", "raw-writev", 4},
		{"p99 at that rate, one order × 10,000", "raw-writev", 4},
		{"p99 at that rate, 100 orders × 100", "raw-writev", 4},
		{"p99, 1,000 subscribers, 10 publishes/s (a status every 100ms)", "raw-writev", 4},
		{"p99, 10,000 subscribers, 1 publish/s (a status every 1s)", "raw-writev", 4},
		{"time to accept a round's streams, one order × 1,000 (median of 200 rounds)", "raw-writev", 4},
		{"time to accept a round's streams, one order × 10,000 (median of 10 rounds)", "raw-writev", 4},
		{"time to accept a round's streams, 100 orders × 100 (median of 10 rounds)", "raw-writev", 4},
		{"server RSS after 200 rounds of 1,000 streams (one order × 1,000)", "raw-writev", 4},
	}
	if len(got.Rows) != len(want) {
		for _, r := range got.Rows {
			t.Log(r.Figure)
		}
		t.Fatalf("%d rows, want %d", len(got.Rows), len(want))
	}
	for i, w := range want {
		r := got.Rows[i]
		if r.Figure != w.figure || r.BestRaw != w.best || fmt.Sprintf("%.3f", r.Ratio) != fmt.Sprintf("%.3f", w.ratio) || len(r.Values) != 4 {
			t.Errorf("row %d: %q best %s ratio %.3f, %d values; want %q best %s ratio %.3f", i, r.Figure, r.BestRaw, r.Ratio, len(r.Values), w.figure, w.best, w.ratio)
		}
	}
	md, err := os.ReadFile(filepath.Join(dir, "figures.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		"**small sizes: not to be quoted**", "- cores: 2", "- pinning: not pinned: 2 cores",
		"load average (1 min) before the runs: 0.50 to 1.25",
		"| figure | orderstream | raw-goroutine | raw-writev | raw-loop | best raw | ratio |",
		"| most deliveries/s, one order × 10,000 (deliveries/s) | 10,000,000 | 20,000,000 | 40,000,000 | 5,000,000 | 40,000,000 (writev) | 0.25x |",
		"| RSS per idle stream, 19,500 streams held (KiB) | 2.00 | 1.00 | 0.50 | 4.00 | 0.50 (writev) | 4.00x |",
		"| time to accept a round's streams, one order × 10,000 (median of 10 rounds) (s) | 1.000 |",
		"0 gaps, 0 duplicates, 0 errors",
	} {
		if !strings.Contains(string(md), s) {
			t.Errorf("figures.md lacks %q:\n%s", s, md)
		}
	}
}

// TestTableNamesProblems: a run that lost events, or a server missing from
// a run, fails the table and is named in it.
func TestTableNamesProblems(t *testing.T) {
	dir := t.TempDir()
	writeFigures(t, dir, map[string]float64{"orderstream": 1, "raw-loop": 1})
	lossy := summary{Name: "raw-loop", N: 100, K: 1, Interval: "0s", Rounds: 1, Expected: 600, Delivered: 590, Ended: 90, Gaps: 10}
	b, _ := json.Marshal(map[string]summary{"raw-loop": lossy})
	if err := os.WriteFile(filepath.Join(dir, "rounds-1x100-0s.raw-loop.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	err := table([]string{"-in", dir})
	if err == nil {
		t.Fatal("no error")
	}
	md, _ := os.ReadFile(filepath.Join(dir, "figures.md"))
	for _, s := range []string{
		"rounds-1x100-0s.raw-loop: 590 of 600 delivered, 90 of 100 streams ended by the server, 10 gaps",
		"rounds-1x100-0s: no figure for orderstream",
	} {
		if !strings.Contains(string(md), s) {
			t.Errorf("figures.md lacks %q:\n%s", s, md)
		}
	}
	if err := table([]string{"-in", t.TempDir()}); err == nil {
		t.Error("an empty folder: no error")
	}
}

func TestThousands(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 19500: "19,500", 1234567: "1,234,567", -4200: "-4,200"} {
		if got := thousands(v); got != want {
			t.Errorf("thousands(%v) = %q, want %q", v, got, want)
		}
	}
}
