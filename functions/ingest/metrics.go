package main

import (
	"encoding/json"
	"io"
	"sync"
	"time"
)

// tally counts a batch's outcomes.
type tally struct {
	accepted, stale, malformed, conflict, unavailable, skipped int
}

func (t *tally) add(o outcome) {
	switch o {
	case accepted:
		t.accepted++
	case stale:
		t.stale++
	case malformed:
		t.malformed++
	case conflict:
		t.conflict++
	case unavailable:
		t.unavailable++
	case skipped:
		t.skipped++
	}
}

func (t tally) failed() int { return t.malformed + t.conflict + t.unavailable + t.skipped }

// metricsNamespace is the CloudWatch namespace of the function's metrics.
const metricsNamespace = "orderstream"

// metrics writes each batch's tally as one line of CloudWatch's embedded
// metric format: Lambda sends stdout to CloudWatch Logs, which turns the line
// into metrics without an API call (and without the permission or the time
// one would take). IngestAccepted, IngestStale and IngestFailed are metrics
// (by FunctionName); why messages failed is in the same line as properties,
// for Logs Insights. A nil *metrics records nothing.
type metrics struct {
	mu       sync.Mutex
	w        io.Writer
	function string
	now      func() time.Time
}

func newMetrics(w io.Writer, function string) *metrics {
	return &metrics{w: w, function: function, now: time.Now}
}

// emfLine is one embedded-metric-format record.
type emfLine struct {
	AWS struct {
		Timestamp         int64          `json:"Timestamp"`
		CloudWatchMetrics []emfDirective `json:"CloudWatchMetrics"`
	} `json:"_aws"`
	FunctionName      string `json:"FunctionName"`
	IngestAccepted    int    `json:"IngestAccepted"`
	IngestStale       int    `json:"IngestStale"`
	IngestFailed      int    `json:"IngestFailed"`
	IngestMalformed   int    `json:"IngestMalformed"`
	IngestConflict    int    `json:"IngestKeyConflict"`
	IngestUnavailable int    `json:"IngestBrokerUnavailable"`
	IngestSkipped     int    `json:"IngestNotTried"`
}

type emfDirective struct {
	Namespace  string      `json:"Namespace"`
	Dimensions [][]string  `json:"Dimensions"`
	Metrics    []emfMetric `json:"Metrics"`
}

type emfMetric struct {
	Name string `json:"Name"`
	Unit string `json:"Unit"`
}

var emfMetrics = []emfMetric{
	{"IngestAccepted", "Count"},
	{"IngestStale", "Count"},
	{"IngestFailed", "Count"},
}

func (m *metrics) record(t tally) {
	if m == nil {
		return
	}
	var l emfLine
	l.AWS.Timestamp = m.now().UnixMilli()
	l.AWS.CloudWatchMetrics = []emfDirective{{metricsNamespace, [][]string{{"FunctionName"}}, emfMetrics}}
	l.FunctionName = m.function
	l.IngestAccepted, l.IngestStale, l.IngestFailed = t.accepted, t.stale, t.failed()
	l.IngestMalformed, l.IngestConflict, l.IngestUnavailable, l.IngestSkipped = t.malformed, t.conflict, t.unavailable, t.skipped
	b, err := json.Marshal(l)
	if err != nil {
		panic("ingest: encode metrics: " + err.Error()) // our own type: always marshals
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	_, _ = m.w.Write(append(b, '\n'))
}
