package socketstreams

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderstream/orderstream/shared/broker"
	"github.com/orderstream/orderstream/shared/broker/brokertest"
	"github.com/orderstream/orderstream/shared/httpapi"
	"github.com/orderstream/orderstream/shared/order"
)

// TestFlushPadding: with FlushPadding set, every write of a registered
// stream (the retry:, each event, each heartbeat) is followed by the
// padding block, as in a handler (shared/httpapi's TestFlushPadding), and
// the stream still decodes to exactly the events published.
func TestFlushPadding(t *testing.T) {
	const n = 2048
	b := broker.NewMemory(brokertest.Options())
	defer b.Close()
	cfg := testConfig(httpapi.Config{FlushPadding: n, HeartbeatInterval: 30 * time.Millisecond})
	pad := cfg.KeepAlive()[len(": keep-alive\n\n"):] // the padding block alone
	srv, _, _ := detachServer(t, b, cfg, true, nil)
	id := uuid.New()
	res, err := http.Get(srv.URL + "/orders/" + id.String() + "/stream")
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
	if got := decodeAll(t, body); len(got) != 3 {
		t.Errorf("decoded %d events, want 3", len(got))
	}
}

// TestPaddedStreamParksWithoutBeingCut: with FLUSH_PADDING large, a client
// that reads in bursts (its socket parked meanwhile, its frames waiting)
// is no slow reader: the padding every frame carries does not count
// against what a parked socket may hold (sockets.Options.FrameOverhead),
// so it reads every event and a clean end. Counted whole, six padded
// events would pass that allowance and cut it.
func TestPaddedStreamParksWithoutBeingCut(t *testing.T) {
	const padding = 128 << 10 // six of them: 768 KiB, past the 256 KiB a parked socket may hold
	b := broker.NewMemory(brokertest.Options())
	defer b.Close()
	reg := prometheus.NewRegistry()
	srv, _, s := detachServer(t, b, httpapi.Config{FlushPadding: padding, Metrics: reg}, true,
		func(l net.Listener) net.Listener { return smallBufferListener{l} })
	id := uuid.New()
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	conn, err := d.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET /orders/"+id.String()+"/stream HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReaderSize(conn, 1024)
	res, err := http.ReadResponse(br, nil)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("stream: %v %v", res, err)
	}
	// The client stops reading; every status goes out meanwhile.
	for _, st := range lifecycle {
		if _, err := b.Publish(context.Background(), id, broker.PublishRequest{Status: st}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the socket to park", func() bool { return s.reg.Stats().Parked == 1 })
	time.Sleep(300 * time.Millisecond) // parked, well within the write timeout
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("read %d bytes, then %v; want every event and a clean end", len(body), err)
	}
	if msgs := decodeAll(t, string(body)); len(msgs) != len(lifecycle) {
		t.Fatalf("%d events, want %d", len(msgs), len(lifecycle))
	}
	if st := s.reg.Stats(); st.Cut != 0 || st.Ended != 1 {
		t.Errorf("registry stats %+v, want one stream ended and none cut", st)
	}
	if got := metricValue(t, reg, "orderstream_slow_subscribers_dropped_total", "reason", httpapi.DroppedWriteTimeout); got != 0 {
		t.Errorf("dropped{write_timeout} = %v, want 0", got)
	}
}
