// Race builds give every frame more stack, so this shape holds only in a
// plain build: make test runs this file's test without -race too.
//go:build !race

package socketstreams

import (
	"io"
	"log/slog"
	"net/http/httptest"
	"testing"

	"github.com/orderstream/orderstream/shared/broker"
	"github.com/orderstream/orderstream/shared/broker/brokertest"
	"github.com/orderstream/orderstream/shared/httpapi"
	"github.com/orderstream/orderstream/shared/httpapi/httpapitest"
)

// A stream the local server keeps in its handler (HTTP/2, HTTP/1.0, TLS,
// off Linux) parks its goroutine under Wrap's frames as well as the core's:
// as shared/httpapi's TestIdleInHandlerStreamStackStaysSmall holds the
// core's frames small enough for the runtime to shrink the goroutine's
// stack to 8 KiB, this holds Wrap's: an idle in-handler stream through
// Wrap (its goroutines, the handler's and net/http's background read) must
// hold less than 12 KiB of stack.
func TestIdleWrappedStreamStackStaysSmall(t *testing.T) {
	b := broker.NewMemory(brokertest.Options())
	defer b.Close()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := testConfig(httpapi.Config{})
	streams := newStreams(t, logger, cfg, false) // every stream in its handler
	srv := httptest.NewServer(streams.Wrap(httpapi.NewServer(logger, b, cfg)))
	defer srv.Close()
	defer streams.End()
	per := httpapitest.StackPerIdleStream(t, srv.Listener.Addr().String(), 200)
	t.Logf("%.0f bytes of stack per idle in-handler stream through Wrap", per)
	if per >= 12<<10 {
		t.Errorf("an idle in-handler stream through Wrap holds %.0f bytes of stack, want < 12 KiB: "+
			"the frames Wrap leaves under the core's grew (see Streams.serve)", per)
	}
}
