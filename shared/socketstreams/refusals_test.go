package socketstreams

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderstream/orderstream/shared/broker"
	"github.com/orderstream/orderstream/shared/broker/brokertest"
	"github.com/orderstream/orderstream/shared/httpapi"
	"github.com/orderstream/orderstream/shared/httpapi/httpapitest"
	"github.com/orderstream/orderstream/shared/order"
	"github.com/orderstream/orderstream/shared/sse"
)

// rawExchange writes req on a new connection to addr and reads one
// response, its body, and whether the server then closed the connection
// (EOF within the wait, nothing more sent), if asked.
func rawExchange(t *testing.T, addr, req string, waitClose bool) (res *http.Response, body string, closed bool) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	br := bufio.NewReader(conn)
	res, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	if !waitClose {
		return res, string(b), false
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	rest, err := io.ReadAll(br)
	return res, string(b), err == nil && len(rest) == 0
}

// problemOf decodes a problem+json body.
func problemOf(t *testing.T, res *http.Response, body string) (status int, detail string) {
	t.Helper()
	if ct := res.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type %q, want application/problem+json: %q", ct, body)
	}
	var p struct {
		Status int    `json:"status"`
		Detail string `json:"detail"`
	}
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		t.Fatalf("problem %q: %v", body, err)
	}
	return p.Status, p.Detail
}

// TestStreamRequestWithBodyIsRefused: a stream's request ends at its
// headers; one with a body is a 400 problem, both ways, before any
// subscription or hand-over (nothing is left of it).
func TestStreamRequestWithBodyIsRefused(t *testing.T) {
	bothWays(t, func(t *testing.T, detach bool) {
		b := broker.NewMemory(brokertest.Options())
		defer b.Close()
		srv, logs, s := detachServer(t, b, httpapi.Config{}, detach, nil)
		addr := srv.Listener.Addr().String()
		path := "/orders/" + uuid.NewString() + "/stream"
		for _, req := range []string{
			"GET " + path + " HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
			"GET " + path + " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		} {
			res, body, _ := rawExchange(t, addr, req, false)
			if status, detail := problemOf(t, res, body); res.StatusCode != http.StatusBadRequest || status != http.StatusBadRequest || !strings.Contains(detail, "no body") {
				t.Errorf("%d %q, want 400 naming the body", res.StatusCode, body)
			}
		}
		if s.reg != nil {
			if st := s.reg.Stats(); st.Registered != 0 {
				t.Errorf("registry holds %d streams, want none", st.Registered)
			}
		}
		httpapitest.WaitFor(t, "two log lines with status=400", func() bool { return strings.Count(logs.String(), "status=400") == 2 })
		if s.held.Load() != 0 {
			t.Errorf("%d places held, want none", s.held.Load())
		}
	})
}

// TestPipelinedRequestBehindStream: a request sent behind a stream's on the
// same connection, before its answer, can never be answered (a registered
// stream's response ends only with its connection). It is not dropped
// unseen: the stream is refused with a 400 that says why, and the
// connection closed, its bytes read first so that the answer is not reset.
func TestPipelinedRequestBehindStream(t *testing.T) {
	b := broker.NewMemory(brokertest.Options())
	defer b.Close()
	srv, logs, s := detachServer(t, b, httpapi.Config{}, true, nil)
	id := uuid.New()
	b.Publish(context.Background(), id, broker.PublishRequest{Status: order.Created})
	path := "/orders/" + id.String() + "/stream"
	res, body, closed := rawExchange(t, srv.Listener.Addr().String(),
		"GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", true)
	status, detail := problemOf(t, res, body)
	if res.StatusCode != http.StatusBadRequest || status != http.StatusBadRequest || !strings.Contains(detail, "last request on its connection") {
		t.Fatalf("%d %q, want 400 saying the stream must be the connection's last request", res.StatusCode, body)
	}
	if !res.Close || !closed {
		t.Errorf("Connection: close %v, closed %v; want the connection closed after the answer", res.Close, closed)
	}
	httpapitest.WaitFor(t, "the refusal's log line", func() bool { return strings.Contains(logs.String(), "path="+path+" status=400") })
	if st := s.reg.Stats(); st.Registered != 0 {
		t.Errorf("registry holds %d streams, want none", st.Registered)
	}
	if s.held.Load() != 0 {
		t.Errorf("%d places held, want none", s.held.Load())
	}
	// The order's subscription was given back: a stream on its own
	// connection is served.
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n")
	if res, err := http.ReadResponse(bufio.NewReader(conn), nil); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("a stream alone on its connection: %v %v", res, err)
	}
}

// TestRefusedStreamClosesItsConnection: a stream refused for want of room,
// by MAX_STREAMS or by the descriptors Streams has left (the open-file
// limit's share, which counts streams that ended and still linger), is a
// 503 with Retry-After and its connection closed: it holds no descriptor,
// where a keep-alive connection would hold one for nothing.
func TestRefusedStreamClosesItsConnection(t *testing.T) {
	for _, by := range []string{"MAX_STREAMS", "descriptors"} {
		t.Run(by, func(t *testing.T) {
			bothWays(t, func(t *testing.T, detach bool) {
				b := broker.NewMemory(brokertest.Options())
				defer b.Close()
				cfg := httpapi.Config{Metrics: prometheus.NewRegistry()}
				if by == "MAX_STREAMS" {
					cfg.MaxStreams = 1
				}
				srv, _, s := detachServer(t, b, cfg, detach, nil)
				if by == "descriptors" {
					s.limit = Limit{Max: 1, From: "open-file limit"}
				}
				path := "/orders/" + uuid.NewString() + "/stream"
				first, err := http.Get(srv.URL + path)
				if err != nil {
					t.Fatal(err)
				}
				defer first.Body.Close()
				if first.StatusCode != http.StatusOK {
					t.Fatalf("first stream: %d", first.StatusCode)
				}
				res, body, closed := rawExchange(t, srv.Listener.Addr().String(), "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n", true)
				status, _ := problemOf(t, res, body)
				if res.StatusCode != http.StatusServiceUnavailable || status != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" {
					t.Fatalf("second stream: %d %q (Retry-After %q), want 503 with Retry-After", res.StatusCode, body, res.Header.Get("Retry-After"))
				}
				if !res.Close || !closed {
					t.Errorf("Connection: close %v, closed %v; want the refused stream's connection closed", res.Close, closed)
				}
				if got := httpapitest.MetricValue(t, cfg.Metrics, "orderstream_streams_rejected_total", "limit", "instance"); got != 1 {
					t.Errorf("streams_rejected_total{limit=instance} = %v, want 1", got)
				}
				if by == "descriptors" && s.held.Load() != 1 {
					t.Errorf("%d places held, want the first stream's", s.held.Load())
				}
			})
		})
	}
}

// TestRegisterFailureIsAnswered: a stream whose connection was taken over
// but that the registry cannot hold (here, closed underneath it; in life,
// no descriptor left for its duplicate) still gets an answer, a 503 with
// Retry-After on the connection, and gives everything back.
func TestRegisterFailureIsAnswered(t *testing.T) {
	b := broker.NewMemory(brokertest.Options())
	defer b.Close()
	srv, logs, s := detachServer(t, b, httpapi.Config{}, true, nil)
	s.reg.Close()
	path := "/orders/" + uuid.NewString() + "/stream"
	res, body, closed := rawExchange(t, srv.Listener.Addr().String(), "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n", true)
	status, _ := problemOf(t, res, body)
	if res.StatusCode != http.StatusServiceUnavailable || status != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" {
		t.Fatalf("%d %q, want 503 with Retry-After", res.StatusCode, body)
	}
	if !res.Close || !closed {
		t.Errorf("Connection: close %v, closed %v; want the connection closed", res.Close, closed)
	}
	httpapitest.WaitFor(t, "the log line with status=503", func() bool { return strings.Contains(logs.String(), "path="+path+" status=503") })
	if s.held.Load() != 0 || len(s.groups) != 0 {
		t.Errorf("%d places held, %d order groups; want none", s.held.Load(), len(s.groups))
	}
}

// TestOrderGroup: an order's registered streams share one sockets.Group,
// joined as the hub first hands them an event: streams that joined at
// every point of the order's life each get every event once, in order,
// and the terminal event ends them all with a clean end; the group goes
// with the last of them.
func TestOrderGroup(t *testing.T) {
	b := broker.NewMemory(brokertest.Options())
	defer b.Close()
	srv, _, s := detachServer(t, b, httpapi.Config{}, true, nil)
	id := uuid.New()
	path := srv.URL + "/orders/" + id.String() + "/stream"
	statuses := []order.Status{order.Created, order.PaymentConfirmed, order.Packed, order.Shipped, order.OutForDelivery, order.Delivered}
	const perStep = 40
	var wg sync.WaitGroup
	var mu sync.Mutex
	var got [][]string
	open := func() {
		res, err := http.Get(path)
		if err != nil {
			t.Fatal(err)
		}
		if res.StatusCode != http.StatusOK {
			t.Fatalf("stream: %d", res.StatusCode)
		}
		// The retry: field is written after the hand-over: this one is live.
		br := bufio.NewReader(res.Body)
		if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "retry:") {
			t.Fatalf("stream starts with %q, %v", line, err)
		}
		wg.Go(func() {
			defer res.Body.Close()
			var ids []string
			dec := sse.NewDecoder(br)
			for {
				m, err := dec.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Errorf("a stream ended with %v, want a clean end", err)
					return
				}
				ids = append(ids, m.ID)
			}
			mu.Lock()
			got = append(got, ids)
			mu.Unlock()
		})
	}
	var all []string
	for _, st := range statuses {
		for range perStep {
			open()
		}
		ev, err := b.Publish(context.Background(), id, broker.PublishRequest{Status: st})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, ev.ID)
	}
	wg.Wait()
	if len(got) != perStep*len(statuses) {
		t.Fatalf("%d streams ended, want %d", len(got), perStep*len(statuses))
	}
	for i, ids := range got {
		if strings.Join(ids, ",") != strings.Join(all, ",") {
			t.Fatalf("stream %d got %v, want every event once, in order: %v", i, ids, all)
		}
	}
	httpapitest.WaitFor(t, "the order's group to go with its streams", func() bool {
		s.groupsMu.Lock()
		defer s.groupsMu.Unlock()
		return len(s.groups) == 0 && s.held.Load() == 0
	})
}

// TestFloodingClientIsDropped: a client that sends more than a stream reads
// after its request is ended and counted as dropped (too_much_input),
// while the order's other streams go on.
func TestFloodingClientIsDropped(t *testing.T) {
	b := broker.NewMemory(brokertest.Options())
	defer b.Close()
	reg := prometheus.NewRegistry()
	srv, _, s := detachServer(t, b, httpapi.Config{Metrics: reg}, true, nil)
	id := uuid.New()
	path := "/orders/" + id.String() + "/stream"
	calm, err := http.Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer calm.Body.Close()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n")
	if res, err := http.ReadResponse(bufio.NewReader(conn), nil); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("flooding client's stream: %v %v", res, err)
	}
	junk := make([]byte, 32<<10)
	for range 8 { // 256 KiB, past the registry's MaxReceive
		if _, err := conn.Write(junk); err != nil {
			break // cut already
		}
	}
	httpapitest.WaitFor(t, "the flooding client to be dropped", func() bool {
		return httpapitest.MetricValue(t, reg, "orderstream_slow_subscribers_dropped_total", "reason", httpapi.DroppedTooMuchInput) == 1
	})
	if st := s.reg.Stats(); st.Registered != 1 {
		t.Errorf("registry holds %d streams, want the calm one", st.Registered)
	}
	b.Publish(context.Background(), id, broker.PublishRequest{Status: order.Created})
	if m, err := sse.NewDecoder(calm.Body).Next(); err != nil || !strings.Contains(m.Data, `"Created"`) {
		t.Fatalf("the calm stream got %q, %v", m.Data, err)
	}
}
