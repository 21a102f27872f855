// Package emf reports gauges of a Prometheus registry to Amazon CloudWatch
// as embedded metric format (EMF) log lines: one JSON object per line on the
// process's standard output. On ECS the awslogs driver sends each line to
// CloudWatch Logs, which turns the ones in this format into metrics, with no
// agent, sidecar or AWS credentials in the task: what the service's
// autoscaling policy scales on (deploy/ecs).
//
// The specification: https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html
package emf

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The service's own metric, as deploy/ecs/template.yaml's scaling policy
// names it: StreamsOpen in namespace orderstream, dimension Service.
const (
	Namespace        = "orderstream"
	ServiceDimension = "Service"
	StreamsOpen      = "StreamsOpen"
)

// Streams is what a stream server reports: its open streams (the gauge
// httpapi keeps), the figure that limits a task.
var Streams = []Metric{{Name: StreamsOpen, Family: "orderstream_streams_open", Unit: "Count"}}

// Metric is one CloudWatch metric read from a Prometheus gauge family (the
// sum of its series, so a labelled gauge reports its total).
type Metric struct {
	Name   string // CloudWatch metric name
	Family string // Prometheus family name; must be a gauge
	Unit   string // a CloudWatch unit such as Count
}

// Dimension is one CloudWatch dimension: its name and this process's value.
type Dimension struct{ Name, Value string }

// Reporter writes one line with every metric's current value each Interval.
type Reporter struct {
	Namespace  string
	Dimensions []Dimension
	Metrics    []Metric
	Gatherer   prometheus.Gatherer
	// Out gets each line in one Write, so that it interleaves whole with
	// other writers of whole lines (slog's handlers, os.Stdout, io.Pipe).
	Out      io.Writer
	Interval time.Duration
	Logger   *slog.Logger // reports a failed gather or write; nil: slog.Default()
}

// ServiceReporter reports Streams under Namespace with Service=service.
func ServiceReporter(out io.Writer, g prometheus.Gatherer, service string, interval time.Duration, logger *slog.Logger) *Reporter {
	return &Reporter{
		Namespace:  Namespace,
		Dimensions: []Dimension{{ServiceDimension, service}},
		Metrics:    Streams,
		Gatherer:   g,
		Out:        out,
		Interval:   interval,
		Logger:     logger,
	}
}

// Start writes a line at once, then every Interval, and a last one when the
// returned stop is called; stop returns once that line is written, so the
// goroutine Start makes ends with it.
func (r *Reporter) Start() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.report(time.Now())
		tick := time.NewTicker(r.Interval)
		defer tick.Stop()
		for {
			select {
			case now := <-tick.C:
				r.report(now)
			case <-ctx.Done():
				r.report(time.Now())
				return
			}
		}
	}()
	return sync.OnceFunc(func() { cancel(); <-done })
}

func (r *Reporter) report(now time.Time) {
	line, err := r.Line(now)
	if err == nil && line != nil {
		_, err = r.Out.Write(line)
	}
	if err != nil {
		logger := r.Logger
		if logger == nil {
			logger = slog.Default()
		}
		logger.Warn("embedded metric format line not written", "err", err)
	}
}

// errNoValues: none of the metrics' families is registered yet.
var errNoValues = errors.New("emf: no metric has a value")

// Line is the EMF line (newline-terminated) with every metric's value at
// now. A metric whose family has no series yet is left out; with none at
// all there is no line (nil) and an error.
func (r *Reporter) Line(now time.Time) ([]byte, error) {
	families, err := r.Gatherer.Gather()
	if err != nil {
		return nil, fmt.Errorf("emf: gather: %w", err)
	}
	values := map[string]float64{}
	for _, mf := range families {
		for _, m := range r.Metrics {
			if mf.GetName() != m.Family {
				continue
			}
			sum := 0.0
			for _, s := range mf.GetMetric() {
				if s.GetGauge() == nil {
					return nil, fmt.Errorf("emf: %s is not a gauge", m.Family)
				}
				sum += s.GetGauge().GetValue()
			}
			values[m.Name] = sum
		}
	}
	type metricDef struct {
		Name string
		Unit string `json:",omitempty"`
	}
	var defs []metricDef
	// The root object: _aws, then each dimension's and metric's member.
	root := map[string]any{}
	for _, m := range r.Metrics {
		v, ok := values[m.Name]
		if !ok {
			continue
		}
		defs = append(defs, metricDef{m.Name, m.Unit})
		root[m.Name] = v
	}
	if len(defs) == 0 {
		return nil, errNoValues
	}
	names := make([]string, 0, len(r.Dimensions))
	for _, d := range r.Dimensions {
		names = append(names, d.Name)
		root[d.Name] = d.Value
	}
	directive := map[string]any{"Namespace": r.Namespace, "Dimensions": [][]string{names}, "Metrics": defs}
	root["_aws"] = map[string]any{
		"Timestamp":         now.UnixMilli(),
		"CloudWatchMetrics": []any{directive},
	}
	b, err := json.Marshal(root)
	if err != nil {
		return nil, fmt.Errorf("emf: %w", err)
	}
	return append(b, '\n'), nil
}
