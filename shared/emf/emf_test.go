package emf

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// checkEMF holds a line to the specification's rules that CloudWatch
// enforces (a line that breaks one is stored as a log event and makes no
// metric): the _aws member with a millisecond Timestamp and its
// CloudWatchMetrics directives; each directive's Namespace, Dimensions (sets
// of at most 30 keys) and Metrics (at most 100, names of 1 to 255
// characters); every dimension key a root member holding a string, every
// metric a root member holding a number; a known unit.
func checkEMF(t *testing.T, line []byte) map[string]any {
	t.Helper()
	if !bytes.HasSuffix(line, []byte("\n")) || bytes.Count(line, []byte("\n")) != 1 {
		t.Fatalf("not one newline-terminated line: %q", line)
	}
	var root map[string]any
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	if err := dec.Decode(&root); err != nil {
		t.Fatalf("not a JSON object: %v: %s", err, line)
	}
	aws, ok := root["_aws"].(map[string]any)
	if !ok {
		t.Fatalf("no _aws object: %s", line)
	}
	ts, ok := aws["Timestamp"].(json.Number)
	if _, err := ts.Int64(); !ok || err != nil {
		t.Fatalf("_aws.Timestamp %v is no integer of milliseconds", aws["Timestamp"])
	}
	directives, ok := aws["CloudWatchMetrics"].([]any)
	if !ok || len(directives) == 0 {
		t.Fatalf("_aws.CloudWatchMetrics missing or empty: %s", line)
	}
	units := map[string]bool{"": true, "Count": true, "Seconds": true, "Milliseconds": true, "Bytes": true, "Percent": true, "None": true, "Count/Second": true}
	for _, d := range directives {
		dir, _ := d.(map[string]any)
		if ns, _ := dir["Namespace"].(string); ns == "" || len(ns) > 255 {
			t.Errorf("Namespace %v", dir["Namespace"])
		}
		sets, ok := dir["Dimensions"].([]any)
		if !ok {
			t.Fatalf("Dimensions is no array of sets: %v", dir["Dimensions"])
		}
		for _, s := range sets {
			keys, ok := s.([]any)
			if !ok || len(keys) > 30 {
				t.Fatalf("dimension set %v: not an array of at most 30 keys", s)
			}
			for _, k := range keys {
				name, _ := k.(string)
				if v, ok := root[name].(string); !ok || v == "" {
					t.Errorf("dimension %q has no string member in the root object", name)
				}
			}
		}
		metrics, ok := dir["Metrics"].([]any)
		if !ok || len(metrics) == 0 || len(metrics) > 100 {
			t.Fatalf("Metrics %v: want 1 to 100", dir["Metrics"])
		}
		for _, m := range metrics {
			def, _ := m.(map[string]any)
			name, _ := def["Name"].(string)
			if name == "" || len(name) > 255 {
				t.Errorf("metric name %q", name)
			}
			if _, ok := root[name].(json.Number); !ok {
				t.Errorf("metric %q has no number member in the root object: %v", name, root[name])
			}
			unit, _ := def["Unit"].(string)
			if !units[unit] {
				t.Errorf("metric %q: unit %q", name, unit)
			}
		}
	}
	return root
}

func TestLine(t *testing.T) {
	at := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		setup   func(reg *prometheus.Registry)
		metrics []Metric
		want    map[string]string // root members, as JSON text
		wantErr string
	}{
		{
			name: "the streams gauge",
			setup: func(reg *prometheus.Registry) {
				g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "orderstream_streams_open", Help: "h"})
				reg.MustRegister(g)
				g.Set(1234)
			},
			metrics: Streams,
			want:    map[string]string{"StreamsOpen": "1234", "Service": `"shop-prod"`},
		},
		{
			name: "a labelled gauge reports its total",
			setup: func(reg *prometheus.Registry) {
				g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "open", Help: "h"}, []string{"proto"})
				reg.MustRegister(g)
				g.WithLabelValues("h1").Set(3)
				g.WithLabelValues("h2").Set(4)
			},
			metrics: []Metric{{Name: "Open", Family: "open", Unit: "Count"}},
			want:    map[string]string{"Open": "7"},
		},
		{
			name: "a family not registered is left out",
			setup: func(reg *prometheus.Registry) {
				g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "present", Help: "h"})
				reg.MustRegister(g)
			},
			metrics: []Metric{{Name: "Present", Family: "present"}, {Name: "Absent", Family: "absent"}},
			want:    map[string]string{"Present": "0"},
		},
		{
			name:    "no family at all: no line",
			setup:   func(*prometheus.Registry) {},
			metrics: Streams,
			wantErr: "no metric has a value",
		},
		{
			name: "a counter is refused (EMF wants the value, not a running total)",
			setup: func(reg *prometheus.Registry) {
				reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "total", Help: "h"}))
			},
			metrics: []Metric{{Name: "Total", Family: "total"}},
			wantErr: "not a gauge",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			tt.setup(reg)
			r := ServiceReporter(io.Discard, reg, "shop-prod", time.Minute, nil)
			r.Metrics = tt.metrics
			line, err := r.Line(at)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || line != nil {
					t.Fatalf("Line: %q, %v; want no line and an error containing %q", line, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			root := checkEMF(t, line)
			for k, want := range tt.want {
				got, _ := json.Marshal(root[k])
				if string(got) != want {
					t.Errorf("%s = %s, want %s", k, got, want)
				}
			}
			aws := root["_aws"].(map[string]any)
			if ts := aws["Timestamp"].(json.Number).String(); ts != fmt.Sprint(at.UnixMilli()) {
				t.Errorf("Timestamp %s, want %d", ts, at.UnixMilli())
			}
			dir := aws["CloudWatchMetrics"].([]any)[0].(map[string]any)
			if dir["Namespace"] != "orderstream" {
				t.Errorf("Namespace %v", dir["Namespace"])
			}
			if got, _ := json.Marshal(dir["Dimensions"]); string(got) != `[["Service"]]` {
				t.Errorf("Dimensions %s", got)
			}
		})
	}
}

// lines is an io.Writer that records whole lines, safe for one writer.
type lines struct {
	mu  sync.Mutex
	got [][]byte
}

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.got = append(l.got, bytes.Clone(p))
	return len(p), nil
}

func (l *lines) values(t *testing.T) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var v []string
	for _, line := range l.got {
		root := checkEMF(t, line)
		v = append(v, root[StreamsOpen].(json.Number).String())
	}
	return v
}

// TestStartStop: a line at once, one each interval with the gauge's value
// then, and a last one on stop, after which nothing more is written.
func TestStartStop(t *testing.T) {
	reg := prometheus.NewRegistry()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "orderstream_streams_open", Help: "h"})
	reg.MustRegister(g)
	g.Set(5)
	out := &lines{}
	r := ServiceReporter(out, reg, "svc", 20*time.Millisecond, nil)
	stop := r.Start()
	deadline := time.Now().Add(10 * time.Second)
	for len(out.values(t)) < 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	g.Set(0)
	stop()
	stop() // twice is fine
	v := out.values(t)
	if len(v) < 4 || v[0] != "5" || v[len(v)-1] != "0" {
		t.Fatalf("values %v: want 5 at once, then each interval, and 0 last (set before stop)", v)
	}
	time.Sleep(60 * time.Millisecond)
	if after := out.values(t); len(after) != len(v) {
		t.Fatalf("%d lines after stop returned", len(after)-len(v))
	}
}

// TestLinesInterleaveWhole: every line is one Write, so lines written to an
// io.Pipe alongside a logger's come out whole.
func TestLinesInterleaveWhole(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: "orderstream_streams_open", Help: "h"}))
	pr, pw := io.Pipe()
	r := ServiceReporter(pw, reg, "svc", time.Millisecond, nil)
	stop := r.Start()
	var logging sync.WaitGroup
	logging.Go(func() {
		for i := range 200 {
			fmt.Fprintf(pw, "time=now level=INFO msg=request n=%d\n", i)
		}
	})
	go func() { logging.Wait(); stop(); pw.Close() }()
	sc := bufio.NewScanner(pr)
	emfLines := 0
	for sc.Scan() {
		line := sc.Bytes()
		if bytes.HasPrefix(line, []byte("{")) {
			checkEMF(t, append(line, '\n'))
			emfLines++
		} else if !bytes.HasPrefix(line, []byte("time=now")) {
			t.Fatalf("a torn line: %q", line)
		}
	}
	if emfLines < 2 {
		t.Fatalf("%d EMF lines", emfLines)
	}
}
