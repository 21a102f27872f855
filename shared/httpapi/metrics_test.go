package httpapi

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderstream/orderstream/shared/broker"
	"github.com/orderstream/orderstream/shared/broker/brokertest"
	"github.com/orderstream/orderstream/shared/httpapi/httpapitest"
	"github.com/orderstream/orderstream/shared/order"
	"github.com/orderstream/orderstream/shared/sse"
)

func TestMetrics(t *testing.T) {
	b := broker.NewMemory(brokertest.Options())
	defer b.Close()
	reg := prometheus.NewRegistry()
	srv, logs := newTestServer(t, b, Config{Metrics: reg})
	id := uuid.NewString()

	// Two publishes, one refused (409: not counted as published).
	for _, s := range []string{"Created", "Packed", "Created"} {
		res, err := http.Post(srv.URL+"/orders/"+id+"/events", "application/json", strings.NewReader(`{"status":"`+s+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
	}
	if got := httpapitest.MetricValue(t, reg, "orderstream_events_published_total"); got != 2 {
		t.Fatalf("published %v, want 2", got)
	}

	// A stream: two history events, then one live event and the end.
	res, err := http.Get(srv.URL + "/orders/" + id + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	dec := sse.NewDecoder(res.Body)
	for range 2 {
		if _, err := dec.Next(); err != nil {
			t.Fatal(err)
		}
	}
	if got := httpapitest.MetricValue(t, reg, "orderstream_streams_open"); got != 1 {
		t.Fatalf("streams open %v, want 1", got)
	}
	if _, err := b.Publish(context.Background(), uuid.MustParse(id), broker.PublishRequest{Status: order.Delivered}); err != nil {
		t.Fatal(err)
	}
	if _, err := dec.Next(); err != nil {
		t.Fatal(err)
	}
	if _, err := dec.Next(); err != io.EOF {
		t.Fatalf("stream did not end after Delivered: %v", err)
	}
	httpapitest.WaitFor(t, "the stream to close", func() bool { return httpapitest.MetricValue(t, reg, "orderstream_streams_open") == 0 })
	// Three events, one log line: logs are per request, never per event.
	httpapitest.WaitFor(t, "the stream's request line", func() bool { return strings.Contains(logs.String(), "path=/orders/"+id+"/stream") })
	if n := strings.Count(logs.String(), "/orders/"+id+"/stream"); n != 1 {
		t.Fatalf("%d log lines name the stream, want 1:\n%s", n, logs)
	}
	if got := httpapitest.MetricValue(t, reg, "orderstream_events_delivered_total"); got != 3 {
		t.Fatalf("delivered %v, want 3", got)
	}
	if got := httpapitest.MetricValue(t, reg, "orderstream_publish_to_deliver_seconds"); got != 1 {
		t.Fatalf("latency samples %v, want 1 (history replays are not latency)", got)
	}
	if got := httpapitest.MetricValue(t, reg, "orderstream_http_requests_total", "route", "POST /orders/{id}/events", "code", "201"); got != 2 {
		t.Fatalf("requests{publish,201} %v, want 2", got)
	}

	// GET /metrics is the text format, and one request is one log line.
	before := strings.Count(logs.String(), "msg=request")
	mres, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(mres.Body)
	mres.Body.Close()
	if mres.StatusCode != 200 || !strings.Contains(string(body), "orderstream_streams_open 0") ||
		!strings.HasPrefix(mres.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics: %d %q\n%s", mres.StatusCode, mres.Header.Get("Content-Type"), body)
	}
	httpapitest.WaitFor(t, "the request line", func() bool { return strings.Count(logs.String(), "msg=request") == before+1 })

	// A broker that fails is counted by operation.
	b.Close()
	res2, err := http.Get(srv.URL + "/orders/" + id)
	if err != nil {
		t.Fatal(err)
	}
	res2.Body.Close()
	if res2.StatusCode != 503 || httpapitest.MetricValue(t, reg, "orderstream_broker_errors_total", "op", "latest") != 1 {
		t.Fatalf("broker down: %d, errors{latest} %v", res2.StatusCode, httpapitest.MetricValue(t, reg, "orderstream_broker_errors_total", "op", "latest"))
	}
}

// TestMetricsSlowSubscriberDropped: a subscriber whose buffer fills is
// counted when its stream ends.
func TestMetricsSlowSubscriberDropped(t *testing.T) {
	opts := brokertest.Options()
	opts.SubscriberBuffer = 1
	b := broker.NewMemory(opts)
	defer b.Close()
	reg := prometheus.NewRegistry()
	h := NewServer(discardLogger(), b, testConfig(Config{Metrics: reg, HeartbeatInterval: time.Hour}))
	id := uuid.New()
	w := &blockingWriter{noFlushWriter: noFlushWriter{header: http.Header{}}, release: make(chan struct{})}
	done := make(chan struct{})
	go func() {
		h.ServeHTTP(w, newRequest("GET", "/orders/"+id.String()+"/stream"))
		close(done)
	}()
	httpapitest.WaitFor(t, "the stream to open", func() bool { return httpapitest.MetricValue(t, reg, "orderstream_streams_open") == 1 })
	// The handler blocks writing the first event; the next two overflow its
	// buffer of one.
	w.block.Store(true)
	for _, s := range []order.Status{order.Created, order.PaymentConfirmed, order.Packed} {
		if _, err := b.Publish(context.Background(), id, broker.PublishRequest{Status: s}); err != nil {
			t.Fatal(err)
		}
	}
	close(w.release)
	<-done
	if got := httpapitest.MetricValue(t, reg, "orderstream_slow_subscribers_dropped_total", "reason", "buffer"); got != 1 {
		t.Fatalf("dropped{buffer} %v, want 1", got)
	}
	if got := httpapitest.MetricValue(t, reg, "orderstream_streams_open"); got != 0 {
		t.Fatalf("streams open %v after the drop", got)
	}
}

func TestNoMetricsRouteByDefault(t *testing.T) {
	b := broker.NewMemory(brokertest.Options())
	defer b.Close()
	srv, _ := newTestServer(t, b, Config{})
	res, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 404 || res.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("GET /metrics without metrics: %d %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
}

// TestTwoServersShareOneRegistry: a second NewServer on the same registry
// (a restart in tests, two handlers in one process) reuses the series.
func TestTwoServersShareOneRegistry(t *testing.T) {
	b := broker.NewMemory(brokertest.Options())
	defer b.Close()
	reg := prometheus.NewRegistry()
	NewServer(discardLogger(), b, testConfig(Config{Metrics: reg}))
	NewServer(discardLogger(), b, testConfig(Config{Metrics: reg}))
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func newRequest(method, target string) *http.Request {
	return httptest.NewRequest(method, target, nil)
}

// blockingWriter is a writer whose writes, once block is set, wait until
// release is closed: a client that stopped reading.
type blockingWriter struct {
	noFlushWriter
	block   atomic.Bool
	release chan struct{}
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	if w.block.Load() {
		<-w.release
	}
	return w.noFlushWriter.Write(p)
}
