// Race builds give every frame more stack, so this shape holds only in a
// plain build: make test runs this file's test without -race too.
//go:build !race

package httpapi

import (
	"io"
	"log/slog"
	"net/http/httptest"
	"testing"

	"github.com/orderstream/orderstream/shared/broker"
	"github.com/orderstream/orderstream/shared/broker/brokertest"
	"github.com/orderstream/orderstream/shared/httpapi/httpapitest"
)

// A stream that stays in its handler (Lambda, HTTP/2, HTTP/1.0, off Linux)
// parks its goroutine in stream.live; the frames left on the stack there
// are kept small (handleStream's calls, cfg by pointer) so that the
// runtime shrinks the goroutine's stack to 8 KiB while the stream is idle,
// not 16. This fails if that shape regresses: an idle in-handler stream's
// goroutines (the handler's, and net/http's background read) must hold
// less than 12 KiB of stack.
func TestIdleInHandlerStreamStackStaysSmall(t *testing.T) {
	b := broker.NewMemory(brokertest.Options())
	defer b.Close()
	srv := httptest.NewServer(NewServer(slog.New(slog.NewTextHandler(io.Discard, nil)), b, testConfig(Config{})))
	defer srv.Close()
	per := httpapitest.StackPerIdleStream(t, srv.Listener.Addr().String(), 200)
	t.Logf("%.0f bytes of stack per idle in-handler stream", per)
	if per >= 12<<10 {
		t.Errorf("an idle in-handler stream holds %.0f bytes of stack, want < 12 KiB (8 KiB for its handler, "+
			"2 KiB for net/http's background read): the frames left under stream.live grew, see handleStream", per)
	}
}
