package socketstreams

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderstream/orderstream/shared/broker"
	"github.com/orderstream/orderstream/shared/broker/brokertest"
	"github.com/orderstream/orderstream/shared/httpapi"
	"github.com/orderstream/orderstream/shared/httpapi/httpapitest"
	"github.com/orderstream/orderstream/shared/order"
	"github.com/orderstream/orderstream/shared/sse"
)

// Streams held as registered sockets must behave exactly as streams that
// stay in their handlers: these tests run what differs, both ways, through
// the core's handler wrapped as the local server wraps it.

// testConfig is the core's configuration with the contract's defaults and
// the fields set in c.
// eventType names every event of an order stream (the core's).
const eventType = "order-update"

func testConfig(c httpapi.Config) httpapi.Config {
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

// newStreams returns Streams for a server with cfg, registering streams
// when detach is set; the cleanup closes it after the streams have ended.
func newStreams(t testing.TB, logger *slog.Logger, cfg httpapi.Config, detach bool) *Streams {
	t.Helper()
	s := New(logger, cfg, Options{Register: detach})
	if detach && s.reg == nil {
		t.Fatal("no sockets registry: registered streams are not supported here")
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// detachServer serves b with cfg wrapped in Streams, registering streams
// when detach is set; its cleanup ends the streams and waits for every
// registered one to end.
func detachServer(t *testing.T, b broker.Broker, cfg httpapi.Config, detach bool, wrap func(net.Listener) net.Listener) (*httptest.Server, *httpapitest.SyncBuffer, *Streams) {
	t.Helper()
	logs := &httpapitest.SyncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, nil))
	cfg = testConfig(cfg)
	s := newStreams(t, logger, cfg, detach)
	cfg.ShuttingDown = s.Draining
	srv := httptest.NewUnstartedServer(s.Wrap(httpapi.NewServer(logger, b, cfg)))
	if wrap != nil {
		srv.Listener = wrap(srv.Listener)
	}
	srv.Start()
	t.Cleanup(func() {
		s.Close() // a detached stream that never ended would hang here
		srv.Close()
	})
	return srv, logs, s
}

func bothWays(t *testing.T, test func(t *testing.T, detach bool)) {
	for _, detach := range []bool{false, true} {
		name := "in-handler"
		if detach {
			name = "registered"
		}
		t.Run(name, func(t *testing.T) { test(t, detach) })
	}
}

func TestDetachedStreamDeliversAndEnds(t *testing.T) {
	bothWays(t, func(t *testing.T, detach bool) {
		b := broker.NewMemory(brokertest.Options())
		defer b.Close()
		srv, logs, _ := detachServer(t, b, httpapi.Config{HeartbeatInterval: 20 * time.Millisecond}, detach, nil)
		id := uuid.New()
		b.Publish(context.Background(), id, broker.PublishRequest{Status: order.Created})

		res, err := http.Get(srv.URL + "/orders/" + id.String() + "/stream")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		if res.Close != detach {
			t.Errorf("Connection: close is %v, want %v", res.Close, detach)
		}
		if detach && len(res.TransferEncoding) != 0 {
			// The body ends with the connection: plain SSE, no chunks.
			t.Errorf("a registered stream answered with Transfer-Encoding %v", res.TransferEncoding)
		}
		body := &countingReader{r: res.Body}
		dec := sse.NewDecoder(body)
		beats := 0
		dec.OnComment = func(string) { beats++ }
		var got []string
		for _, s := range []order.Status{order.PaymentConfirmed, order.Packed, order.Shipped, order.OutForDelivery, order.Delivered} {
			m, err := dec.Next()
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, m.Data)
			time.Sleep(30 * time.Millisecond) // heartbeats in between
			b.Publish(context.Background(), id, broker.PublishRequest{Status: s})
		}
		for {
			m, err := dec.Next()
			if err == io.EOF {
				break // a clean end, not a cut connection
			}
			if err != nil {
				t.Fatalf("the stream ended with %v, want a clean end", err)
			}
			got = append(got, m.Data)
		}
		if len(got) != 6 || !strings.Contains(got[5], `"Delivered"`) {
			t.Fatalf("got %d events, last %q; want the 6 of the order", len(got), got[len(got)-1])
		}
		if beats == 0 {
			t.Error("no heartbeat")
		}
		// One log line for the request, once it ended, with what it sent.
		path := "path=/orders/" + id.String() + "/stream"
		httpapitest.WaitFor(t, "the request's log line", func() bool { return strings.Contains(logs.String(), path) })
		if n := strings.Count(logs.String(), path); n != 1 {
			t.Fatalf("%d log lines for the stream, want 1:\n%s", n, logs.String())
		}
		line := logs.String()[strings.Index(logs.String(), path):]
		line = line[:strings.IndexByte(line, '\n')]
		// Every body byte counts, heartbeats too, in both modes.
		if want := fmt.Sprintf("bytes=%d ", body.n); !strings.Contains(line, "status=200") || !strings.Contains(line+" ", want) {
			t.Errorf("log line %q: want status=200 and %s(the body the client read)", line, want)
		}
	})
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// TestDetachedClientLeaves: a client that goes away frees its subscription
// and its place under the limits at once, without waiting for a write to
// fail.
func TestDetachedClientLeaves(t *testing.T) {
	bothWays(t, func(t *testing.T, detach bool) {
		b := broker.NewMemory(brokertest.Options())
		defer b.Close()
		srv, _, _ := detachServer(t, b, httpapi.Config{MaxStreamsPerClient: 1, HeartbeatInterval: time.Hour}, detach, nil)
		path := "/orders/" + uuid.NewString() + "/stream"
		open := func() (net.Conn, string) {
			conn, err := net.Dial("tcp", srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			io.WriteString(conn, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n")
			status, err := bufio.NewReader(conn).ReadString('\n')
			if err != nil {
				t.Fatalf("status line: %v", err)
			}
			return conn, status
		}
		for range 20 {
			// The place is free again once the server has seen the last
			// stream's close: heartbeats are an hour apart, so no failed
			// write can be what frees it.
			var conn net.Conn
			httpapitest.WaitFor(t, "the client's place under the limit to be free", func() bool {
				c, status := open()
				if strings.Contains(status, " 200 ") {
					conn = c
					return true
				}
				c.Close()
				return false
			})
			conn.Close()
		}
	})
}

// TestStalledReaderIsCutOff: a client that stops reading fills the socket
// buffers; the write deadline then ends its stream, while the other
// subscribers of its order get every event as it is published, and
// publishers are never held up.
func TestStalledReaderIsCutOff(t *testing.T) {
	bothWays(t, func(t *testing.T, detach bool) {
		opts := brokertest.Options()
		opts.SubscriberBuffer = 1
		b := broker.NewMemory(opts)
		defer b.Close()
		srv, logs, _ := detachServer(t, b, httpapi.Config{
			HeartbeatInterval: time.Millisecond, // fills the buffers fast
			WriteTimeout:      200 * time.Millisecond,
		}, detach, func(l net.Listener) net.Listener { return httpapitest.SmallBufferListener{Listener: l} })
		id := uuid.New()
		path := "/orders/" + id.String() + "/stream"
		var readers []<-chan sse.Message
		for range 3 {
			res, err := http.Get(srv.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			msgs := make(chan sse.Message, 16)
			go func() { // ends when the stream does (the cleanup ends it)
				defer close(msgs)
				dec := sse.NewDecoder(res.Body)
				for {
					m, err := dec.Next()
					if err != nil {
						return
					}
					msgs <- m
				}
			}()
			readers = append(readers, msgs)
		}
		d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
			return c.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 1024) })
		}}
		conn, err := d.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		io.WriteString(conn, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n")
		cut := func() bool { return strings.Count(logs.String(), "path="+path) == 1 }
		// Events go out while the stalled stream fills up and is cut, and
		// after: each reaches every reader that reads, at once (the bound is
		// generous only for a loaded machine).
		for _, s := range []order.Status{order.Created, order.PaymentConfirmed, order.Packed, order.Shipped} {
			ev, err := b.Publish(context.Background(), id, broker.PublishRequest{Status: s})
			if err != nil {
				t.Fatal(err)
			}
			for i, msgs := range readers {
				select {
				case m := <-msgs:
					if m.ID != ev.ID {
						t.Fatalf("reader %d got event %s, want %s", i, m.ID, ev.ID)
					}
				case <-time.After(5 * time.Second):
					t.Fatalf("reader %d did not get %v while a stalled reader was open (cut: %v)", i, s, cut())
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		// The request's log line is written when the stalled stream has ended.
		httpapitest.WaitFor(t, "the stalled stream to be cut off", cut)
	})
}

// TestRegisteredCyclesLeakNothing opens and drops ten thousand registered
// streams: no descriptor, goroutine or registry entry is left behind.
func TestRegisteredCyclesLeakNothing(t *testing.T) {
	b := broker.NewMemory(brokertest.Options())
	defer b.Close()
	srv, _, s := detachServer(t, b, httpapi.Config{HeartbeatInterval: time.Hour}, true, nil)
	reg := s.reg
	id := uuid.New()
	b.Publish(context.Background(), id, broker.PublishRequest{Status: order.Created})
	request := []byte("GET /orders/" + id.String() + "/stream HTTP/1.1\r\nHost: x\r\n\r\n")
	buf := make([]byte, 4096)
	cycle := func() {
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.Write(request)
		conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		got := 0
		for !bytes.Contains(buf[:got], []byte(`"Created"`)) { // head, retry: and the history
			n, err := conn.Read(buf[got:])
			if err != nil {
				t.Fatalf("stream: %v after %q", err, buf[:got])
			}
			got += n
		}
	}
	fds := func() int {
		entries, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(entries)
	}
	for range 50 {
		cycle()
	}
	httpapitest.WaitFor(t, "the warm-up streams to close", func() bool { return reg.Stats().Registered == 0 })
	goroutines, descriptors := settled(), fds()
	const cycles = 10_000
	for range cycles {
		cycle()
	}
	httpapitest.WaitFor(t, "every stream to leave the registry, its goroutines and descriptors", func() bool {
		return reg.Stats().Registered == 0 && settled() <= goroutines+3 && fds() <= descriptors+3
	})
	if st := reg.Stats(); st.Gone < cycles {
		t.Fatalf("registry saw %d clients go, want at least %d", st.Gone, cycles)
	}
}

func settled() int {
	time.Sleep(20 * time.Millisecond)
	return runtime.NumGoroutine()
}

// TestDetachedStreamsEndAtShutdown: End ends detached streams with a clean
// end, and they are all closed soon after (Close's wait returns).
func TestDetachedStreamsEndAtShutdown(t *testing.T) {
	b := broker.NewMemory(brokertest.Options())
	defer b.Close()
	srv, _, s := detachServer(t, b, httpapi.Config{}, true, nil)
	var bodies []io.ReadCloser
	for range 20 {
		res, err := http.Get(srv.URL + "/orders/" + uuid.NewString() + "/stream")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		bodies = append(bodies, res.Body)
	}
	s.End()
	waited := make(chan struct{})
	go func() { s.open.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(15 * time.Second):
		t.Fatal("the registered streams did not close after End")
	}
	for _, body := range bodies {
		if _, err := io.ReadAll(body); err != nil {
			t.Fatalf("a stream ended with %v at shutdown, want a clean end", err)
		}
	}
	// After End, streams stay in their handlers and end at once, leaving
	// nothing behind to wait for.
	res, err := http.Get(srv.URL + "/orders/" + uuid.NewString() + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(res.Body); err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
}

// TestDetachHTTP10: net/http sends an HTTP/1.0 body unchunked, so such a
// stream stays in its handler and its body is plain SSE to the end.
func TestDetachHTTP10(t *testing.T) {
	b := broker.NewMemory(brokertest.Options())
	defer b.Close()
	srv, _, _ := detachServer(t, b, httpapi.Config{}, true, nil)
	id := uuid.New()
	b.Publish(context.Background(), id, broker.PublishRequest{Status: order.Created})
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET /orders/"+id.String()+"/stream HTTP/1.0\r\n\r\n")
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.TransferEncoding) != 0 {
		t.Fatalf("HTTP/1.0 answer with Transfer-Encoding %v", res.TransferEncoding)
	}
	for _, s := range []order.Status{order.PaymentConfirmed, order.Packed, order.Shipped, order.OutForDelivery, order.Delivered} {
		b.Publish(context.Background(), id, broker.PublishRequest{Status: s})
	}
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	// Every line is SSE: no chunk framing leaked into the body.
	for _, line := range strings.Split(string(body), "\n") {
		if line != "" && !strings.HasPrefix(line, ":") && !strings.Contains(line, ": ") {
			t.Fatalf("line %q in the HTTP/1.0 body is not SSE", line)
		}
	}
	msgs := httpapitest.DecodeAll(t, string(body))
	if len(msgs) != 6 || !strings.Contains(msgs[5].Data, `"Delivered"`) {
		t.Fatalf("HTTP/1.0 stream: %d events in %q", len(msgs), body)
	}
}

// TestStreamLifetimeEndsAtFrameBoundary: MaxStreamDuration ends a stream
// cleanly after whole frames (the client resumes from its last id), and
// frees its place, both ways.
func TestStreamLifetimeEndsAtFrameBoundary(t *testing.T) {
	bothWays(t, func(t *testing.T, detach bool) {
		b := broker.NewMemory(brokertest.Options())
		defer b.Close()
		srv, _, _ := detachServer(t, b, httpapi.Config{
			HeartbeatInterval:   5 * time.Millisecond,
			MaxStreamDuration:   300 * time.Millisecond,
			MaxStreamsPerClient: 1,
		}, detach, nil)
		id := uuid.New()
		b.Publish(context.Background(), id, broker.PublishRequest{Status: order.Created})
		for range 2 { // the second is let in once the first has ended
			res, err := http.Get(srv.URL + "/orders/" + id.String() + "/stream")
			if err != nil {
				t.Fatal(err)
			}
			if res.StatusCode != http.StatusOK {
				t.Fatalf("status %d, want 200 once the last stream has ended", res.StatusCode)
			}
			body, err := io.ReadAll(res.Body) // ends at MaxStreamDuration
			res.Body.Close()
			if err != nil {
				t.Fatalf("the stream ended with %v, want a clean end", err)
			}
			if !strings.HasSuffix(string(body), "\n\n") {
				t.Fatalf("the stream did not end at a frame boundary: ...%q", body[max(0, len(body)-40):])
			}
			if msgs := httpapitest.DecodeAll(t, string(body)); len(msgs) != 1 {
				t.Fatalf("%d events, want the one published", len(msgs))
			}
			httpapitest.WaitFor(t, "the client's place to be free", func() bool {
				res, err := http.Head(srv.URL + "/orders/" + id.String() + "/stream")
				if err != nil {
					t.Fatal(err)
				}
				res.Body.Close()
				return res.StatusCode == http.StatusOK
			})
		}
	})
}

// panickyHandler is a slog.Handler that panics on the request log line of
// one path and writes every other record to next.
type panickyHandler struct {
	slog.Handler
	path string
}

func (h panickyHandler) Handle(ctx context.Context, rec slog.Record) error {
	if rec.Message == "request" {
		rec.Attrs(func(a slog.Attr) bool {
			if a.Key == "path" && a.Value.String() == h.path {
				panic("boom in the close hook")
			}
			return true
		})
	}
	return h.Handler.Handle(ctx, rec)
}

// A panic in a registered stream's close hook (run by a registry goroutine,
// outside net/http's recovery) ends that stream only: it is logged, its
// place is given back, the process and the other streams go on.
func TestRegisteredCloseHookPanicIsContained(t *testing.T) {
	b := broker.NewMemory(brokertest.Options())
	defer b.Close()
	doomed, other := uuid.New(), uuid.New()
	logs := &httpapitest.SyncBuffer{}
	logger := slog.New(panickyHandler{Handler: slog.NewTextHandler(logs, nil), path: "/orders/" + doomed.String() + "/stream"})
	cfg := testConfig(httpapi.Config{MaxSubscribersPerOrder: 1})
	st := newStreams(t, logger, cfg, true)
	srv := httptest.NewServer(st.Wrap(httpapi.NewServer(logger, b, cfg)))
	defer srv.Close()
	defer st.Close() // the panicking stream was still counted as closed

	open := func(id uuid.UUID) (*http.Response, *sse.Decoder) {
		t.Helper()
		res, err := http.Get(srv.URL + "/orders/" + id.String() + "/stream")
		if err != nil {
			t.Fatal(err)
		}
		if res.StatusCode != http.StatusOK {
			t.Fatalf("stream answered %d", res.StatusCode)
		}
		return res, sse.NewDecoder(res.Body)
	}
	resDoomed, _ := open(doomed)
	resOther, decOther := open(other)
	defer resOther.Body.Close()
	httpapitest.WaitFor(t, "two registered streams", func() bool { return st.reg.Stats().Registered == 2 })
	resDoomed.Body.Close() // its close hook runs, and panics writing the log line
	httpapitest.WaitFor(t, "the panic to be logged", func() bool { return strings.Contains(logs.String(), "panic in a stream") })
	httpapitest.WaitFor(t, "the doomed stream's socket to go", func() bool { return st.reg.Stats().Registered == 1 })

	// Its place under MaxSubscribersPerOrder was given back before the panic.
	res2, _ := open(doomed)
	res2.Body.Close()
	// The other stream still gets its events.
	if _, err := b.Publish(context.Background(), other, broker.PublishRequest{Status: order.Created}); err != nil {
		t.Fatal(err)
	}
	m, err := decOther.Next()
	if err != nil || !strings.Contains(m.Data, `"Created"`) {
		t.Fatalf("the other stream got %q, %v; want its event", m.Data, err)
	}
}

// blockingHandler is a slog.Handler that holds the request log line of
// one path until release is closed (a log pipe that stopped taking bytes,
// for that line) and writes every record to next.
type blockingHandler struct {
	slog.Handler
	path    string
	blocked chan struct{} // closed once the line is being held
	release chan struct{}
}

func (h blockingHandler) Handle(ctx context.Context, rec slog.Record) error {
	if rec.Message == "request" {
		rec.Attrs(func(a slog.Attr) bool {
			if a.Key == "path" && a.Value.String() == h.path {
				close(h.blocked)
				<-h.release
			}
			return true
		})
	}
	return h.Handler.Handle(ctx, rec)
}

// TestBlockingCloseHookDelaysNoOtherStream: a registered stream's close
// hook (unsubscribe, metrics, the request's log line) runs on a worker of
// its own: one that blocks, writing its log line, holds up no other
// stream's events, and no other stream's close.
func TestBlockingCloseHookDelaysNoOtherStream(t *testing.T) {
	b := broker.NewMemory(brokertest.Options())
	defer b.Close()
	doomed, other := uuid.New(), uuid.New()
	logs := &httpapitest.SyncBuffer{}
	h := blockingHandler{Handler: slog.NewTextHandler(logs, nil), path: "/orders/" + doomed.String() + "/stream",
		blocked: make(chan struct{}), release: make(chan struct{})}
	logger := slog.New(h)
	cfg := testConfig(httpapi.Config{})
	st := newStreams(t, logger, cfg, true)
	srv := httptest.NewServer(st.Wrap(httpapi.NewServer(logger, b, cfg)))
	defer srv.Close()
	defer st.Close()
	released := false
	defer func() {
		if !released {
			close(h.release)
		}
	}()
	open := func(id uuid.UUID) *http.Response {
		t.Helper()
		res, err := http.Get(srv.URL + "/orders/" + id.String() + "/stream")
		if err != nil || res.StatusCode != http.StatusOK {
			t.Fatalf("stream: %v %v", res, err)
		}
		return res
	}
	open(doomed).Body.Close()
	select {
	case <-h.blocked:
	case <-time.After(15 * time.Second):
		t.Fatal("the doomed stream's close hook never ran")
	}
	// Its hook is stuck. Other streams get their events as they come...
	res := open(other)
	defer res.Body.Close()
	dec := sse.NewDecoder(res.Body)
	for _, s := range lifecycle[:3] {
		if _, err := b.Publish(context.Background(), other, broker.PublishRequest{Status: s}); err != nil {
			t.Fatal(err)
		}
		got := make(chan error, 1)
		go func() { _, err := dec.Next(); got <- err }()
		select {
		case err := <-got:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%v did not reach another stream while a close hook blocked", s)
		}
	}
	// ...and close: their hooks run, their places are given back.
	for range 20 {
		open(uuid.New()).Body.Close()
	}
	httpapitest.WaitFor(t, "the other streams' close hooks", func() bool {
		return strings.Count(logs.String(), "status=200") >= 20 && st.reg.Stats().Registered == 1
	})
	close(h.release)
	released = true
	httpapitest.WaitFor(t, "the held line", func() bool { return strings.Contains(logs.String(), h.path) })
}
