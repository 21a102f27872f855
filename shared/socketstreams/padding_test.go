package socketstreams

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderstream/orderstream/shared/broker"
	"github.com/orderstream/orderstream/shared/broker/brokertest"
	"github.com/orderstream/orderstream/shared/httpapi"
	"github.com/orderstream/orderstream/shared/httpapi/httpapitest"
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
	httpapitest.CheckFlushPadding(t, srv.URL, b, n, pad)
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
		func(l net.Listener) net.Listener { return httpapitest.SmallBufferListener{Listener: l} })
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
	httpapitest.WaitFor(t, "the socket to park", func() bool { return s.reg.Stats().Parked == 1 })
	time.Sleep(300 * time.Millisecond) // parked, well within the write timeout
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("read %d bytes, then %v; want every event and a clean end", len(body), err)
	}
	if msgs := httpapitest.DecodeAll(t, string(body)); len(msgs) != len(lifecycle) {
		t.Fatalf("%d events, want %d", len(msgs), len(lifecycle))
	}
	if st := s.reg.Stats(); st.Cut != 0 || st.Ended != 1 {
		t.Errorf("registry stats %+v, want one stream ended and none cut", st)
	}
	if got := httpapitest.MetricValue(t, reg, "orderstream_slow_subscribers_dropped_total", "reason", httpapi.DroppedWriteTimeout); got != 0 {
		t.Errorf("dropped{write_timeout} = %v, want 0", got)
	}
}
