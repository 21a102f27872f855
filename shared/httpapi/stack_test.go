// Race builds give every frame more stack, so this shape holds only in a
// plain build: make test runs this file's test without -race too.
//go:build !race

package httpapi

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
)

// A stream that stays in its handler (Lambda, HTTP/2, HTTP/1.0, off Linux)
// parks its goroutine in stream.live; the frames left on the stack there
// are kept small (handleStream's calls, cfg by pointer) so that the
// runtime shrinks the goroutine's stack to 8 KiB while the stream is idle,
// not 16. This fails if that shape regresses: an idle in-handler stream's
// goroutines (the handler's, and net/http's background read) must hold
// less than 12 KiB of stack.
func TestIdleInHandlerStreamStackStaysSmall(t *testing.T) {
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
	srv := httptest.NewServer(NewServer(slog.New(slog.NewTextHandler(io.Discard, nil)), b, testConfig(Config{})))
	defer srv.Close()
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
		// Raw clients, no goroutine of their own: only the server's stacks grow.
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
	t.Logf("%.0f bytes of stack per idle in-handler stream", per)
	if per >= 12<<10 {
		t.Errorf("an idle in-handler stream holds %.0f bytes of stack, want < 12 KiB (8 KiB for its handler, "+
			"2 KiB for net/http's background read): the frames left under stream.live grew, see handleStream", per)
	}
}
