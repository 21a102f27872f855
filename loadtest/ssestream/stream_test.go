package ssestream

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// counts is a Recorder that counts.
type counts struct {
	mu                                                                       sync.Mutex
	open, opened, events, replayed, heartbeats, reconnects, gaps, dups, done int
	errors                                                                   []string
	resumed                                                                  []time.Duration
}

func (c *counts) lock() func() { c.mu.Lock(); return c.mu.Unlock }

func (c *counts) Connecting(time.Duration) {}
func (c *counts) Open(d int) {
	defer c.lock()()
	c.open += d
	if d > 0 {
		c.opened++
	}
}
func (c *counts) FirstEvent(time.Duration) {}
func (c *counts) Event(_, _ time.Time, replayed bool) {
	defer c.lock()()
	c.events++
	if replayed {
		c.replayed++
	}
}
func (c *counts) Heartbeat() { defer c.lock()(); c.heartbeats++ }
func (c *counts) Reconnect() { defer c.lock()(); c.reconnects++ }
func (c *counts) Resumed(d time.Duration) {
	defer c.lock()()
	c.resumed = append(c.resumed, d)
}
func (c *counts) Error(r string) { defer c.lock()(); c.errors = append(c.errors, r) }
func (c *counts) Gaps(n int)     { defer c.lock()(); c.gaps += n }
func (c *counts) Duplicate()     { defer c.lock()(); c.dups++ }
func (c *counts) Completed()     { defer c.lock()(); c.done++ }

var statuses = []string{"Created", "PaymentConfirmed", "Packed", "Shipped", "OutForDelivery", "Delivered"}

// fakeOrder serves one order's six events, misbehaving as mode says.
type fakeOrder struct {
	mode     string
	mu       sync.Mutex
	requests int
	lastIDs  []string
	stamps   [6]time.Time
}

func (f *fakeOrder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.requests++
	n := f.requests
	f.lastIDs = append(f.lastIDs, r.Header.Get("Last-Event-ID"))
	f.mu.Unlock()
	after := 0
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		after, _ = strconv.Atoi(strings.TrimSuffix(id, "-0"))
	}
	if f.mode == "503once" && n == 1 {
		w.Header().Set("Retry-After", "0")
		http.Error(w, "busy", http.StatusServiceUnavailable)
		return
	}
	if after >= len(statuses) || f.mode == "204" {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	fmt.Fprint(w, "retry: 10\n\n: keep-alive\n\n")
	w.(http.Flusher).Flush()
	from, until := after, len(statuses)
	switch f.mode {
	case "eof2":
		until = min(after+2, until)
	case "replay":
		if n == 1 {
			until = 3
		} else {
			from = 0
		}
	case "skip":
		if n == 1 {
			until = 2
		} else {
			from = after + 1
		}
	}
	for i := from; i < until; i++ {
		if f.mode == "slow" {
			time.Sleep(20 * time.Millisecond)
		}
		f.mu.Lock()
		if f.stamps[i].IsZero() {
			f.stamps[i] = time.Now().UTC()
		}
		ts := f.stamps[i]
		f.mu.Unlock()
		_, err := fmt.Fprintf(w, "id: %d-0\nevent: order-update\ndata: {\"orderId\":\"x\",\"status\":%q,\"timestamp\":%q}\n\n",
			i+1, statuses[i], ts.Format(time.RFC3339Nano))
		if err != nil {
			return
		}
		w.(http.Flusher).Flush()
	}
}

func TestRun(t *testing.T) {
	tests := []struct {
		mode                           string
		drop                           bool
		events, reconnects, gaps, dups int
		errors                         []string
		completed                      int
		checkResumeIDs                 bool
	}{
		{mode: "plain", events: 6, completed: 1},
		{mode: "eof2", events: 6, reconnects: 2, completed: 1, checkResumeIDs: true},
		{mode: "replay", events: 6, reconnects: 1, dups: 3, completed: 1},
		{mode: "skip", events: 5, reconnects: 1, gaps: 1, completed: 1},
		{mode: "503once", events: 6, reconnects: 1, errors: []string{"status_503"}, completed: 1},
		{mode: "204", events: 0, completed: 1},
		{mode: "slow", drop: true, events: 6, completed: 1, reconnects: -1},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			f := &fakeOrder{mode: tt.mode}
			srv := httptest.NewServer(f)
			defer srv.Close()
			cfg := &StreamConfig{Reconnect: true, ReconnectDelay: -1, ExpectAll: true}
			if tt.drop {
				cfg.DropMin, cfg.DropMax, cfg.ReconnectDelay = 15*time.Millisecond, 30*time.Millisecond, 0
			}
			c := &counts{}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			Run(ctx, NewClient(time.Second, nil, nil), srv.URL+"/orders/x/stream", cfg, c)
			if ctx.Err() != nil {
				t.Fatal("stream did not finish")
			}
			if c.events != tt.events || c.gaps != tt.gaps || c.dups != tt.dups || c.done != tt.completed ||
				fmt.Sprint(c.errors) != fmt.Sprint(tt.errors) || c.open != 0 {
				t.Errorf("events %d gaps %d dups %d completed %d errors %v open %d; want %d %d %d %d %v 0",
					c.events, c.gaps, c.dups, c.done, c.errors, c.open, tt.events, tt.gaps, tt.dups, tt.completed, tt.errors)
			}
			switch {
			case tt.reconnects >= 0 && c.reconnects != tt.reconnects:
				t.Errorf("reconnects %d, want %d", c.reconnects, tt.reconnects)
			case tt.reconnects < 0 && c.reconnects == 0:
				t.Error("no reconnects: the drops did not happen")
			}
			// Here every reconnection ends in a 200: each is timed once, from
			// the end before it.
			if len(c.resumed) != c.reconnects {
				t.Errorf("%d reconnection times for %d reconnects", len(c.resumed), c.reconnects)
			}
			for _, d := range c.resumed {
				if d <= 0 {
					t.Errorf("reconnection time %v", d)
				}
			}
			if c.heartbeats == 0 && tt.mode != "204" {
				t.Error("no heartbeats counted")
			}
			if tt.checkResumeIDs && fmt.Sprint(f.lastIDs) != "[ 2-0 4-0]" {
				t.Errorf("Last-Event-ID sent %q, want none, 2-0, 4-0", f.lastIDs)
			}
		})
	}
}

func TestRunStopsWithContext(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	defer srv.Close()
	c := &counts{}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	Run(ctx, NewClient(time.Second, nil, nil), srv.URL, &StreamConfig{Reconnect: true, ReconnectDelay: -1}, c)
	if len(c.errors) != 0 || c.reconnects != 0 || c.opened != 1 || c.open != 0 {
		t.Errorf("errors %v reconnects %d opened %d open %d; want none, 0, 1, 0", c.errors, c.reconnects, c.opened, c.open)
	}
}
