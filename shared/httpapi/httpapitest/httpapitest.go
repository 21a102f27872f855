// Package httpapitest holds what the tests of the core (shared/httpapi) and
// of the servers built on it (shared/socketstreams, the functions) share:
// a log buffer, waiting, a stalling listener, decoding a stream, reading a
// metric, and the checks both stream shapes (in a handler, registered) are
// held to. It imports no httpapi, so httpapi's own tests can use it.
package httpapitest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/orderstream/orderstream/shared/broker"
	"github.com/orderstream/orderstream/shared/order"
	"github.com/orderstream/orderstream/shared/sse"
)

// SyncBuffer collects log output from the goroutines of a server under test.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// WaitFor polls cond until it holds, failing t after 15 s (generous: the
// machines are shared).
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// SmallBufferListener gives accepted connections a small send buffer, so a
// stalled reader blocks the server's writes within a few kilobytes.
type SmallBufferListener struct{ net.Listener }

func (l SmallBufferListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetWriteBuffer(1024)
	}
	return c, err
}

// DecodeAll decodes a whole stream body.
func DecodeAll(t testing.TB, body string) []sse.Message {
	t.Helper()
	dec := sse.NewDecoder(strings.NewReader(body))
	var out []sse.Message
	for {
		m, err := dec.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
}

// MetricValue reads one series from reg: a counter's or gauge's value, or a
// histogram's sample count. Labels are name=value pairs; missing: 0.
func MetricValue(t testing.TB, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				if !HasLabel(m, labels[i], labels[i+1]) {
					continue series
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return 0
}

// HasLabel tells whether m carries the label name=value.
func HasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

// CheckFlushPadding holds the server at baseURL, publishing through b with
// FLUSH_PADDING n (pad, its block) and a short heartbeat, to what padding
// promises: every write of a stream (the retry:, each event, each
// heartbeat) is followed by the padding block, and the stream still decodes
// to exactly the events published.
func CheckFlushPadding(t *testing.T, baseURL string, b broker.Broker, n int, pad []byte) {
	t.Helper()
	id := uuid.New()
	res, err := http.Get(baseURL + "/orders/" + id.String() + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	// The retry: and its padding arrive before anything is published.
	first := make([]byte, len("retry: 3000\n\n")+n)
	if _, err := io.ReadFull(res.Body, first); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(first, pad) {
		t.Fatalf("the opening write is not padded: %q", first[:40])
	}
	time.Sleep(100 * time.Millisecond) // a few heartbeats
	for _, s := range []order.Status{order.Created, order.Packed, order.Delivered} {
		if _, err := b.Publish(context.Background(), id, broker.PublishRequest{Status: s}); err != nil {
			t.Fatal(err)
		}
	}
	rest, err := io.ReadAll(res.Body) // ends after Delivered
	if err != nil {
		t.Fatal(err)
	}
	body := string(first) + string(rest)
	frames := strings.Split(body, string(pad))
	if last := frames[len(frames)-1]; last != "" {
		t.Errorf("the stream does not end with a padding block: ...%q", last)
	}
	var events, keepAlives int
	for _, f := range frames[:len(frames)-1] {
		switch {
		case strings.HasPrefix(f, "id: "):
			events++
		case f == ": keep-alive\n\n":
			keepAlives++
		case f == "retry: 3000\n\n":
		default:
			t.Errorf("a write that is no whole frame before its padding: %q", f)
		}
	}
	if events != 3 || keepAlives == 0 {
		t.Errorf("%d padded events (want 3), %d padded heartbeats (want some)", events, keepAlives)
	}
	if got := DecodeAll(t, body); len(got) != 3 {
		t.Errorf("decoded %d events, want 3", len(got))
	}
}

// StackPerIdleStream opens n streams of one order on the server at addr
// from raw clients (no goroutine of their own: only the server's stacks
// grow), waits until each is subscribed and parked (its retry: arrived),
// and returns the stack in use per stream, after collections that let the
// runtime shrink what it can. The caller's server must keep streams in
// their handlers for this to measure anything.
func StackPerIdleStream(t *testing.T, addr string, n int) float64 {
	t.Helper()
	stacks := func() int64 {
		runtime.GC()
		runtime.GC() // the second cycle shrinks what the first could not
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return int64(m.StackInuse)
	}
	id := uuid.NewString()
	before := stacks()
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	buf := make([]byte, 512)
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		fmt.Fprintf(c, "GET /orders/%s/stream HTTP/1.1\r\nHost: x\r\n\r\n", id)
		for got := ""; !strings.Contains(got, "retry:"); { // subscribed and parked
			k, err := c.Read(buf)
			if err != nil {
				t.Fatal(err)
			}
			got += string(buf[:k])
		}
	}
	return float64(stacks()-before) / float64(n)
}
