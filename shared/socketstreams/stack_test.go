// Race builds give every frame more stack, so this shape holds only in a
// plain build: make test runs this file's test without -race too.
//go:build !race

package socketstreams

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/orderstream/orderstream/shared/broker"
	"github.com/orderstream/orderstream/shared/broker/brokertest"
	"github.com/orderstream/orderstream/shared/httpapi"
)

// A stream the local server keeps in its handler (HTTP/2, HTTP/1.0, TLS,
// off Linux) parks its goroutine under Wrap's frames as well as the core's:
// as shared/httpapi's TestIdleInHandlerStreamStackStaysSmall holds the
// core's frames small enough for the runtime to shrink the goroutine's
// stack to 8 KiB, this holds Wrap's: an idle in-handler stream through
// Wrap (its goroutines, the handler's and net/http's background read) must
// hold less than 12 KiB of stack.
func TestIdleWrappedStreamStackStaysSmall(t *testing.T) {
	const n = 200
	stacks := func() int64 {
		runtime.GC()
		runtime.GC() // the second cycle shrinks what the first could not
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return int64(m.StackInuse)
	}
	b := broker.NewMemory(brokertest.Options())
	defer b.Close()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := testConfig(httpapi.Config{})
	streams := newStreams(t, logger, cfg, false) // every stream in its handler
	srv := httptest.NewServer(streams.Wrap(httpapi.NewServer(logger, b, cfg)))
	defer srv.Close()
	defer streams.End()
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
		c, err := net.Dial("tcp", srv.Listener.Addr().String())
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
	per := float64(stacks()-before) / n
	t.Logf("%.0f bytes of stack per idle in-handler stream through Wrap", per)
	if per >= 12<<10 {
		t.Errorf("an idle in-handler stream through Wrap holds %.0f bytes of stack, want < 12 KiB: "+
			"the frames Wrap leaves under the core's grew (see Streams.serve)", per)
	}
}
