package socketstreams

import (
	"context"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderstream/orderstream/shared/broker"
	"github.com/orderstream/orderstream/shared/broker/brokertest"
	"github.com/orderstream/orderstream/shared/httpapi"
	"github.com/orderstream/orderstream/shared/order"
	"github.com/orderstream/orderstream/shared/sse"
)

func TestDrainStreamLeft(t *testing.T) {
	for _, tc := range []struct {
		name            string
		window, elapsed time.Duration
		max             time.Duration // streamLeft is in [0, max), or 0 when max is 0
	}{
		{"start of the window", 10 * time.Second, 0, 10 * time.Second},
		{"half way", 10 * time.Second, 5 * time.Second, 5 * time.Second},
		{"window over", 10 * time.Second, 11 * time.Second, 0},
		{"no window", 0, 0, 0},
		{"negative window is none", -time.Second, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var d drain
			end := d.begin(tc.window)
			if again := d.begin(time.Hour); !again.Equal(end) {
				t.Fatalf("a second Begin moved the end from %v to %v", end, again)
			}
			now := end.Add(-max(tc.window, 0) + tc.elapsed)
			for range 100 {
				got := d.streamLeft(now)
				if got < 0 || (tc.max == 0 && got != 0) || (tc.max > 0 && got >= tc.max) {
					t.Fatalf("streamLeft = %v, want in [0, %v)", got, tc.max)
				}
			}
		})
	}
}

func TestZeroDrainNeverBegins(t *testing.T) {
	var d drain
	if d.draining() {
		t.Fatal("a drain nobody began began")
	}
}

// drainClient is one stream read until it ends.
type drainClient struct {
	late  bool // opened during the drain
	msgs  []sse.Message
	ended time.Time
	err   error
}

// openDrainClient opens a stream and reads its first event (so it is
// subscribed), then reads the rest in a goroutine and sends the result on out.
func openDrainClient(t *testing.T, url string, late bool, out chan<- drainClient) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK {
		t.Fatalf("stream: %d", res.StatusCode)
	}
	dec := sse.NewDecoder(res.Body)
	first, err := dec.Next()
	if err != nil {
		t.Fatalf("stream's first event: %v", err)
	}
	go readUntilEnd(res, dec, drainClient{late: late, msgs: []sse.Message{first}}, out)
}

func readUntilEnd(res *http.Response, dec *sse.Decoder, c drainClient, out chan<- drainClient) {
	defer res.Body.Close()
	for {
		m, err := dec.Next()
		if err != nil {
			c.ended, c.err = time.Now(), err
			out <- c
			return
		}
		c.msgs = append(c.msgs, m)
	}
}

// TestDrainSpreadsStreamEnds: once the drain begins, /healthz is 503 at
// once, open streams end cleanly spread over the window (not all in one
// instant), and a stream opened meanwhile is served and ended the same way.
func TestDrainSpreadsStreamEnds(t *testing.T) {
	bothWays(t, func(t *testing.T, detach bool) {
		const window = 2 * time.Second
		b := broker.NewMemory(brokertest.Options())
		defer b.Close()
		srv, _, streams := detachServer(t, b, httpapi.Config{HeartbeatInterval: time.Hour}, detach, nil)
		id := uuid.New()
		if _, err := b.Publish(context.Background(), id, broker.PublishRequest{Status: order.Created}); err != nil {
			t.Fatal(err)
		}
		url := srv.URL + "/orders/" + id.String() + "/stream"
		const n = 20
		ended := make(chan drainClient, n+1)
		for range n {
			openDrainClient(t, url, false, ended)
		}

		end := streams.Drain(window)
		begun := time.Now()
		res, err := http.Get(srv.URL + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("healthz during the drain: %d, want 503", res.StatusCode)
		}

		// Opened during the drain: served (history and live events), then ended.
		openDrainClient(t, url, true, ended)
		if _, err := b.Publish(context.Background(), id, broker.PublishRequest{Status: order.PaymentConfirmed}); err != nil {
			t.Fatal(err)
		}

		var offsets []time.Duration
		lateSeen := false
		for range n + 1 {
			var c drainClient
			select {
			case c = <-ended:
			case <-time.After(window + 10*time.Second):
				t.Fatal("a stream did not end within the drain window (and a generous margin)")
			}
			if c.err != io.EOF {
				t.Fatalf("a stream ended with %v, want a clean end", c.err)
			}
			// Each ended at a frame boundary after whole events, the late one
			// included (it had the history before its turn came).
			for _, m := range c.msgs {
				if m.ID == "" || m.Event != eventType {
					t.Fatalf("a stream (late: %v) got a broken event %+v", c.late, m)
				}
			}
			lateSeen = lateSeen || c.late
			if c.ended.After(end.Add(5 * time.Second)) {
				t.Errorf("a stream ended %v after the window closed", c.ended.Sub(end))
			}
			offsets = append(offsets, c.ended.Sub(begun))
		}
		slices.Sort(offsets)
		// 21 ends drawn evenly over 2s: all within a tenth of the window is
		// (0.1)^20-unlikely, unless the drain ended them together.
		if spread := offsets[len(offsets)-1] - offsets[0]; spread < window/10 {
			t.Fatalf("stream ends spread over %v of a %v window: %v", spread, window, offsets)
		}
		if !lateSeen {
			t.Fatal("the stream opened during the drain never ended")
		}
	})
}
