package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderstream/orderstream/shared/broker"
	"github.com/orderstream/orderstream/shared/broker/brokertest"
	"github.com/orderstream/orderstream/shared/httpapi/httpapitest"
	"github.com/orderstream/orderstream/shared/order"
)

// takingWriter is a ResponseWriter with a Detacher that takes every stream
// offered (take set) or none, and keeps what it took.
type takingWriter struct {
	*httptest.ResponseRecorder
	take    bool
	offered int
	taken   *Handover
	first   []byte // what Begin returned
}

func (w *takingWriter) Detach(h *Handover) bool {
	w.offered++
	if w.take {
		w.taken, w.first = h, h.Begin(nil)
	}
	return w.take
}

// collector is a broker.Subscriber that keeps what it is handed.
type collector struct {
	mu     sync.Mutex
	events []broker.Event
	ended  bool
}

func (c *collector) Deliver(ev broker.Event) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.events = append(c.events, ev)
	return true
}

func (c *collector) End(error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ended = true
}

// TestDetacherIsOfferedLiveStreams: a Detacher under the handler's writer
// is offered exactly the streams with live events to come; one it takes
// gets the stream's first bytes and its subscription, and its Closed frees
// the stream's place and writes the request's log line; one it declines
// stays in its handler.
func TestDetacherIsOfferedLiveStreams(t *testing.T) {
	b := broker.NewMemory(brokertest.Options())
	defer b.Close()
	logs := &httpapitest.SyncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, nil))
	live := NewServer(logger, b, testConfig(Config{MaxSubscribersPerOrder: 1}))
	replay := NewServer(logger, b, testConfig(Config{HistoryOnly: true}))
	finished, open, replayed := uuid.New(), uuid.New(), uuid.New()
	for _, s := range []order.Status{order.Created, order.Delivered} {
		b.Publish(context.Background(), finished, broker.PublishRequest{Status: s})
	}
	b.Publish(context.Background(), open, broker.PublishRequest{Status: order.Created})
	b.Publish(context.Background(), replayed, broker.PublishRequest{Status: order.Created})
	last, _ := b.Latest(context.Background(), finished)

	serve := func(h http.Handler, method, path string, header http.Header, take bool) *takingWriter {
		t.Helper()
		w := &takingWriter{ResponseRecorder: httptest.NewRecorder(), take: take}
		req := httptest.NewRequest(method, path, nil)
		for k, v := range header {
			req.Header[k] = v
		}
		// Under the core's own wrappers, as an edge's writer is.
		h.ServeHTTP(w, req)
		return w
	}
	for _, tc := range []struct {
		name   string
		h      http.Handler
		method string
		id     uuid.UUID
		header http.Header
	}{
		{"HEAD", live, http.MethodHead, open, nil},
		{"finished order seen to its end", live, http.MethodGet, finished, http.Header{"Last-Event-Id": {last.ID}}},
		{"finished order's history", live, http.MethodGet, finished, nil},
		{"history only", replay, http.MethodGet, replayed, nil},
	} {
		if w := serve(tc.h, tc.method, "/orders/"+tc.id.String()+"/stream", tc.header, true); w.offered != 0 {
			t.Errorf("%s: offered to the Detacher, want kept in the handler", tc.name)
		}
	}

	path := "/orders/" + open.String() + "/stream"
	w := serve(live, http.MethodGet, path, nil, true)
	if w.offered != 1 || w.taken == nil {
		t.Fatalf("a live stream was offered %d times, taken %v", w.offered, w.taken != nil)
	}
	if w.Body.Len() != 0 || w.Header().Get("Content-Type") != "text/event-stream" {
		t.Fatalf("a taken stream's handler wrote %q; headers %v (want the stream's, set for the Detacher)", w.Body.String(), w.Header())
	}
	h := w.taken
	if h.Order() != open {
		t.Errorf("Order() = %v, want %v", h.Order(), open)
	}
	first := string(w.first)
	if msgs := httpapitest.DecodeAll(t, first); !strings.HasPrefix(first, "retry: 3000\n\n") || len(msgs) != 1 || !strings.Contains(msgs[0].Data, `"Created"`) {
		t.Fatalf("first bytes %q: want retry: and the history", first)
	}
	if got := serve(live, http.MethodGet, path, nil, false); got.Code != http.StatusServiceUnavailable {
		t.Fatalf("a second stream on the order while the first is taken: %d, want 503 (one subscriber per order)", got.Code)
	}
	c := &collector{}
	if err := h.Subscription().Handover(func([]broker.Event) broker.Subscriber { return c }); err != nil {
		t.Fatal(err)
	}
	ev, _ := b.Publish(context.Background(), open, broker.PublishRequest{Status: order.Packed})
	frame, err := h.Frame(ev)
	if err != nil || !strings.Contains(string(frame), "id: "+ev.ID+"\n") || !strings.HasSuffix(string(frame), "\n\n") {
		t.Fatalf("Frame = %q, %v", frame, err)
	}
	c.mu.Lock()
	if len(c.events) != 1 || c.events[0].ID != ev.ID {
		t.Errorf("the handed-over subscriber got %v, want the event published", c.events)
	}
	c.mu.Unlock()
	if strings.Contains(logs.String(), "method=GET path="+path+" status=200") {
		t.Fatalf("the request was logged before its stream closed:\n%s", logs)
	}
	h.Closed(int64(len(first)+len(frame)), "")
	if n := strings.Count(logs.String(), "method=GET path="+path+" status=200 bytes="+strconv.Itoa(len(first)+len(frame))); n != 1 {
		t.Errorf("%d log lines for the taken stream with its bytes, want 1:\n%s", n, logs)
	}
	// Its place is free again; declined, the next stream stays in its
	// handler (the recorder's request has no client to lose, so end it).
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	w = &takingWriter{ResponseRecorder: httptest.NewRecorder()}
	live.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil).WithContext(ctx))
	if w.offered != 1 || w.Code != http.StatusOK || !strings.HasPrefix(w.Body.String(), "retry: 3000\n\n") {
		t.Fatalf("declined: offered %d, %d %q; want the stream served in its handler", w.offered, w.Code, w.Body.String())
	}
}

// refusingWriter is a ResponseWriter with a Detacher that refuses every
// stream offered, before Begin or after it, on the handler's writer or on
// one of its own (as an edge that took the connection over does).
type refusingWriter struct {
	*httptest.ResponseRecorder
	begin, own bool
	status     int
	answer     *httptest.ResponseRecorder // the edge's own writer
}

func (w *refusingWriter) Detach(h *Handover) bool {
	if w.begin {
		h.Begin(nil)
	}
	var out http.ResponseWriter = w.ResponseRecorder
	if w.own {
		w.answer = httptest.NewRecorder()
		out = w.answer
	}
	h.Refuse(out, w.status, "no room")
	h.Refuse(out, w.status, "twice") // once only
	h.Closed(0, "")                  // nothing after a refusal
	return true
}

// TestDetacherRefuses: a Detacher that cannot hold a stream refuses it,
// before Begin or after: the client gets the problem (with Retry-After for
// a 503) and Connection: close, the stream's places and subscription are
// given back, a 503 counts as refused at the instance's limit, and the
// request's log line says the status, once.
func TestDetacherRefuses(t *testing.T) {
	for _, tc := range []struct {
		name       string
		begin, own bool
		status     int
	}{
		{"before Begin", false, false, http.StatusServiceUnavailable},
		{"after Begin, on the edge's writer", true, true, http.StatusServiceUnavailable},
		{"pipelined", false, true, http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := broker.NewMemory(brokertest.Options())
			defer b.Close()
			logs := &httpapitest.SyncBuffer{}
			reg := prometheus.NewRegistry()
			live := NewServer(slog.New(slog.NewTextHandler(logs, nil)), b, testConfig(Config{MaxSubscribersPerOrder: 1, Metrics: reg}))
			path := "/orders/" + uuid.NewString() + "/stream"
			w := &refusingWriter{ResponseRecorder: httptest.NewRecorder(), begin: tc.begin, own: tc.own, status: tc.status}
			live.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
			got := w.ResponseRecorder
			if tc.own {
				got = w.answer
			}
			if got.Code != tc.status || got.Header().Get("Connection") != "close" || got.Header().Get("Content-Type") != "application/problem+json" ||
				!strings.Contains(got.Body.String(), `"no room"`) || (tc.status == http.StatusServiceUnavailable) != (got.Header().Get("Retry-After") != "") {
				t.Fatalf("refused: %d %v %q", got.Code, got.Header(), got.Body.String())
			}
			if lines := strings.Count(logs.String(), "path="+path+" status="+strconv.Itoa(tc.status)); lines != 1 || strings.Count(logs.String(), "path="+path) != 1 {
				t.Errorf("want one log line with status %d:\n%s", tc.status, logs)
			}
			wantRejected := 0.0
			if tc.status == http.StatusServiceUnavailable {
				wantRejected = 1
			}
			if got := httpapitest.MetricValue(t, reg, "orderstream_streams_rejected_total", "limit", "instance"); got != wantRejected {
				t.Errorf("rejected{instance} = %v, want %v", got, wantRejected)
			}
			if got := httpapitest.MetricValue(t, reg, "orderstream_streams_open"); got != 0 {
				t.Errorf("streams_open = %v after the refusal, want 0", got)
			}
			// Its place on the order is free again.
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			again := &takingWriter{ResponseRecorder: httptest.NewRecorder()}
			live.ServeHTTP(again, httptest.NewRequest(http.MethodGet, path, nil).WithContext(ctx))
			if again.Code != http.StatusOK {
				t.Errorf("the order's next stream: %d, want 200 (its place given back)", again.Code)
			}
		})
	}
}
