package socketstreams

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

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
