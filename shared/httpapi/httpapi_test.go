package httpapi

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderstream/orderstream/shared/broker"
	"github.com/orderstream/orderstream/shared/broker/brokertest"
	"github.com/orderstream/orderstream/shared/httpapi/httpapitest"
	"github.com/orderstream/orderstream/shared/order"
)

// testConfig is c with the contract's stream settings where c leaves them
// zero: NewServer requires them, and their defaults are shared/config's.
func testConfig(c Config) Config {
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = 15 * time.Second
	}
	if c.RetryInterval == 0 {
		c.RetryInterval = 3 * time.Second
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 10 * time.Second
	}
	return c
}

// testCookie is the cookie the tests' subscriber tokens come in.
const testCookie = "orderstream_token"

// verifier builds a's verifier, failing the test on a key it can't use.
func verifier(t testing.TB, a AuthConfig) *Verifier {
	t.Helper()
	v, err := NewVerifier(a)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func newTestServer(t *testing.T, b broker.Broker, cfg Config) (*httptest.Server, *httpapitest.SyncBuffer) {
	t.Helper()
	logs := &httpapitest.SyncBuffer{}
	srv := httptest.NewServer(NewServer(slog.New(slog.NewTextHandler(logs, nil)), b, testConfig(cfg)))
	t.Cleanup(srv.Close)
	return srv, logs
}

func TestPanicBecomesProblem(t *testing.T) {
	logs := &httpapitest.SyncBuffer{}
	h := recoverPanics(slog.New(slog.NewTextHandler(logs, nil)), http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		panic("boom")
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/x", nil))
	if rec.Code != 500 || rec.Header().Get("Content-Type") != "application/problem+json" {
		t.Fatalf("panic answered %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	if !strings.Contains(logs.String(), "boom") {
		t.Fatal("the panic was not logged")
	}

	// Once a stream has begun, a panic ends it without a second header.
	h = recoverPanics(slog.New(slog.NewTextHandler(io.Discard, nil)), http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(200)
		io.WriteString(w, "retry: 3000\n\n")
		panic("mid-stream")
	}))
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/x", nil))
	if rec.Code != 200 || rec.Body.String() != "retry: 3000\n\n" {
		t.Fatalf("mid-stream panic: %d %q", rec.Code, rec.Body.String())
	}
}

// noFlushWriter is a ResponseWriter like Lambda's: no Flush, no deadlines.
type noFlushWriter struct {
	mu     sync.Mutex
	header http.Header
	code   int
	chunks []string
}

func (w *noFlushWriter) Header() http.Header { return w.header }
func (w *noFlushWriter) WriteHeader(code int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.code == 0 {
		w.code = code
	}
}
func (w *noFlushWriter) Write(p []byte) (int, error) {
	w.WriteHeader(200)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.chunks = append(w.chunks, string(p))
	return len(p), nil
}
func (w *noFlushWriter) body() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.chunks, "")
}

// TestStreamWithoutFlusher: a writer that can't flush or take deadlines
// (Lambda's) still gets every event, one frame per write, and the stream
// ends at MaxStreamDuration so its client resumes.
func TestStreamWithoutFlusher(t *testing.T) {
	b := broker.NewMemory(brokertest.Options())
	defer b.Close()
	h := NewServer(slog.New(slog.NewTextHandler(io.Discard, nil)), b, testConfig(Config{
		HeartbeatInterval: 20 * time.Millisecond,
		MaxStreamDuration: 300 * time.Millisecond,
	}))
	id := uuid.New()
	b.Publish(context.Background(), id, broker.PublishRequest{Status: order.Created})
	w := &noFlushWriter{header: http.Header{}}
	done := make(chan struct{})
	go func() {
		h.ServeHTTP(w, httptest.NewRequest("GET", "/orders/"+id.String()+"/stream", nil))
		close(done)
	}()
	httpapitest.WaitFor(t, "the history event", func() bool { return strings.Contains(w.body(), "Created") })
	b.Publish(context.Background(), id, broker.PublishRequest{Status: order.Packed})
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("MaxStreamDuration did not end the stream")
	}
	msgs := httpapitest.DecodeAll(t, w.body())
	if len(msgs) != 2 || !strings.Contains(msgs[1].Data, "Packed") {
		t.Fatalf("got %+v", msgs)
	}
	if !strings.Contains(w.body(), ": keep-alive") {
		t.Fatal("no heartbeat while idle")
	}
	for _, c := range w.chunks {
		if strings.HasPrefix(c, "id:") && !strings.HasSuffix(c, "\n\n") {
			t.Fatalf("an event spans writes: %q", c)
		}
	}
}

func TestHistoryOnlyReplaysAndEnds(t *testing.T) {
	b := broker.NewMemory(brokertest.Options())
	defer b.Close()
	srv, _ := newTestServer(t, b, Config{HistoryOnly: true})
	id := uuid.New()
	first, _ := b.Publish(context.Background(), id, broker.PublishRequest{Status: order.Created})
	b.Publish(context.Background(), id, broker.PublishRequest{Status: order.Packed})
	for _, tt := range []struct {
		lastID string
		want   int
	}{{"", 2}, {first.ID, 1}} {
		req, _ := http.NewRequest("GET", srv.URL+"/orders/"+id.String()+"/stream", nil)
		if tt.lastID != "" {
			req.Header.Set("Last-Event-ID", tt.lastID)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body) // returns: the replay ends
		res.Body.Close()
		if got := len(httpapitest.DecodeAll(t, string(body))); got != tt.want {
			t.Fatalf("after %q: %d events, want %d", tt.lastID, got, tt.want)
		}
	}
}

func TestHeadStream(t *testing.T) {
	b := broker.NewMemory(brokertest.Options())
	defer b.Close()
	srv, _ := newTestServer(t, b, Config{})
	res, err := http.Head(srv.URL + "/orders/" + uuid.NewString() + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("HEAD: %d %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
}

func TestLastEventID(t *testing.T) {
	tests := []struct {
		header, query string
		hasHeader     bool
		want          broker.EventID
		wantErr       bool
	}{
		{want: broker.EventID{}},
		{header: "5-1", hasHeader: true, want: broker.EventID{MS: 5, Seq: 1}},
		{query: "7-0", want: broker.EventID{MS: 7}},
		{header: "5-1", hasHeader: true, query: "7-0", want: broker.EventID{MS: 5, Seq: 1}},
		{header: "", hasHeader: true, query: "7-0", want: broker.EventID{}}, // an empty header is EventSource's "start over"
		{header: "x", hasHeader: true, wantErr: true},
		{query: "1-2-3", wantErr: true},
	}
	for _, tt := range tests {
		url := "/orders/x/stream"
		if tt.query != "" {
			url += "?lastEventId=" + tt.query
		}
		r := httptest.NewRequest("GET", url, nil)
		if tt.hasHeader {
			r.Header.Set("Last-Event-ID", tt.header)
		}
		got, err := lastEventID(r)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("header %q query %q: %v, %v", tt.header, tt.query, got, err)
		}
	}
}

// TestBrokerDownAnswers503 uses a closed broker, which reports itself
// unavailable: every endpoint that needs it says 503 with Retry-After.
func TestBrokerDownAnswers503(t *testing.T) {
	b := broker.NewMemory(brokertest.Options())
	srv, _ := newTestServer(t, b, Config{})
	b.Close()
	id := uuid.NewString()
	for _, r := range []struct{ method, path, body string }{
		{"GET", "/healthz", ""},
		{"GET", "/orders/" + id, ""},
		{"GET", "/orders/" + id + "/stream", ""},
		{"POST", "/orders/" + id + "/events", `{"status":"Created"}`},
		{"POST", "/orders/" + id + "/simulate?interval=0s", ""},
	} {
		req, _ := http.NewRequest(r.method, srv.URL+r.path, strings.NewReader(r.body))
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 503 || res.Header.Get("Retry-After") == "" || res.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s %s: %d Retry-After %q", r.method, r.path, res.StatusCode, res.Header.Get("Retry-After"))
		}
	}
}

// TestSlowBodyTimesOut: a client that trickles its body is answered 408
// rather than holding the handler.
func TestSlowBodyIsRefused(t *testing.T) {
	b := broker.NewMemory(brokertest.Options())
	defer b.Close()
	srv, _ := newTestServer(t, b, Config{})
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "POST /orders/"+uuid.NewString()+"/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 20\r\n\r\n{\"sta")
	// Never send the rest: the server gives up after bodyReadTimeout.
	conn.SetReadDeadline(time.Now().Add(bodyReadTimeout + 10*time.Second))
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("trickled body: %d, want 408", res.StatusCode)
	}
}

// TestNewServerRequiresStreamSettings: the stream settings have no
// defaults here (they are shared/config's); a Config without them is a
// caller's mistake, said at once rather than served with a heartbeat of 0.
func TestNewServerRequiresStreamSettings(t *testing.T) {
	b := broker.NewMemory(brokertest.Options())
	defer b.Close()
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"nothing set", Config{}, "HeartbeatInterval"},
		{"no heartbeat", Config{RetryInterval: time.Second, WriteTimeout: time.Second}, "HeartbeatInterval must be positive"},
		{"sub-millisecond retry", Config{HeartbeatInterval: time.Second, RetryInterval: time.Microsecond, WriteTimeout: time.Second}, "RetryInterval must be at least 1ms"},
		{"no write timeout", Config{HeartbeatInterval: time.Second, RetryInterval: time.Second}, "WriteTimeout must be positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if v := recover(); v == nil || !strings.Contains(fmt.Sprint(v), tc.want) {
					t.Fatalf("NewServer panicked with %v, want a panic naming %q", v, tc.want)
				}
			}()
			NewServer(slog.New(slog.DiscardHandler), b, tc.cfg)
		})
	}
}
