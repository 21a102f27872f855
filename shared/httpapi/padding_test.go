package httpapi

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderstream/orderstream/shared/broker"
	"github.com/orderstream/orderstream/shared/broker/brokertest"
	"github.com/orderstream/orderstream/shared/order"
)

func TestPaddingBlock(t *testing.T) {
	for _, n := range []int{-1, 0, 1, 2, 3, 4, 100, 2048} {
		b := paddingBlock(n)
		if want := max(n, 0); len(b) != want {
			t.Errorf("paddingBlock(%d) has %d bytes", n, len(b))
		}
		// Alone, or after any whole frame, it decodes to nothing.
		for _, before := range []string{"", "retry: 3000\n\n", ": keep-alive\n\n", "id: 1\nevent: x\ndata: {}\n\n"} {
			got := decodeAll(t, before+string(b)+"data: after\n\n")
			want := len(decodeAll(t, before)) + 1
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
	pad := paddingBlock(n)
	cfg := Config{FlushPadding: n, HeartbeatInterval: 30 * time.Millisecond}
	srv := httptest.NewServer(NewServer(slog.New(slog.NewTextHandler(io.Discard, nil)), b, testConfig(cfg)))
	defer srv.Close()
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
