package httpapi

import (
	"io"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/orderstream/orderstream/shared/broker"
	"github.com/orderstream/orderstream/shared/broker/brokertest"
	"github.com/orderstream/orderstream/shared/httpapi/httpapitest"
)

func TestPaddingBlock(t *testing.T) {
	for _, n := range []int{-1, 0, 1, 2, 3, 4, 100, 2048} {
		b := paddingBlock(n)
		if want := max(n, 0); len(b) != want {
			t.Errorf("paddingBlock(%d) has %d bytes", n, len(b))
		}
		// Alone, or after any whole frame, it decodes to nothing.
		for _, before := range []string{"", "retry: 3000\n\n", ": keep-alive\n\n", "id: 1\nevent: x\ndata: {}\n\n"} {
			got := httpapitest.DecodeAll(t, before+string(b)+"data: after\n\n")
			want := len(httpapitest.DecodeAll(t, before)) + 1
			if len(got) != want || got[len(got)-1].Data != "after" || got[len(got)-1].Event != "" {
				t.Errorf("paddingBlock(%d) after %q: messages %+v; want the padding to add none", n, before, got)
			}
		}
	}
}

// TestFlushPadding: with FlushPadding set, every write of a stream (the
// retry:, each event, each heartbeat) is followed by the padding block, and
// the stream still decodes to exactly the events published. Registered
// streams are held to the same in shared/socketstreams.
func TestFlushPadding(t *testing.T) {
	const n = 2048
	b := broker.NewMemory(brokertest.Options())
	defer b.Close()
	cfg := Config{FlushPadding: n, HeartbeatInterval: 30 * time.Millisecond}
	srv := httptest.NewServer(NewServer(slog.New(slog.NewTextHandler(io.Discard, nil)), b, testConfig(cfg)))
	defer srv.Close()
	httpapitest.CheckFlushPadding(t, srv.URL, b, n, paddingBlock(n))
}
