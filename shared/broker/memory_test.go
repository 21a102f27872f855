package broker

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderstream/orderstream/shared/order"
)

// The conformance suite runs in memory_conformance_test.go (package
// broker_test); these tests look inside the in-process broker.

func TestMemoryLeavesNoEntriesBehind(t *testing.T) {
	m := NewMemory(testOptions())
	defer m.Close()
	ctx := context.Background()
	live := uuid.New()
	if _, err := m.Publish(ctx, live, PublishRequest{Status: order.Created}); err != nil {
		t.Fatal(err)
	}
	for i := range 10_000 {
		id := live
		if i%2 == 0 {
			id = uuid.New()
		}
		sub, err := m.Subscribe(ctx, id, EventID{})
		if err != nil {
			t.Fatal(err)
		}
		sub.Close()
	}
	if orders, subs := m.stats(); orders != 1 || subs != 0 {
		t.Fatalf("after 10,000 subscribe/close cycles: %d orders, %d subscribers; want 1, 0", orders, subs)
	}
}

func TestMemoryDroppedSubscriberIsRemoved(t *testing.T) {
	m := NewMemory(withTestOptions(Options{SubscriberBuffer: 1}))
	defer m.Close()
	ctx := context.Background()
	id := uuid.New()
	sub, _ := m.Subscribe(ctx, id, EventID{})
	defer sub.Close()
	for _, s := range []order.Status{order.Created, order.PaymentConfirmed, order.Packed} {
		if _, err := m.Publish(ctx, id, PublishRequest{Status: s}); err != nil {
			t.Fatal(err)
		}
	}
	if _, subs := m.stats(); subs != 0 {
		t.Fatalf("a dropped subscriber is still registered (%d)", subs)
	}
}

func TestMemoryClockSteppingBack(t *testing.T) {
	m := NewMemory(testOptions())
	defer m.Close()
	clock := time.Date(2026, 11, 24, 14, 0, 0, 0, time.UTC)
	m.now = func() time.Time { return clock }
	id := uuid.New()
	first, _ := m.Publish(context.Background(), id, PublishRequest{Status: order.Created})
	clock = clock.Add(-time.Hour)
	second, err := m.Publish(context.Background(), id, PublishRequest{Status: order.Packed})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := ParseEventID(first.ID)
	b, _ := ParseEventID(second.ID)
	if b.Compare(a) <= 0 {
		t.Errorf("id %v does not follow %v after the clock stepped back", b, a)
	}
	if second.Update.Timestamp.Before(first.Update.Timestamp) {
		t.Errorf("timestamp went back: %v then %v", first.Update.Timestamp, second.Update.Timestamp)
	}
}

func TestParseEventID(t *testing.T) {
	tests := []struct {
		in   string
		want EventID
		ok   bool
	}{
		{"0-0", EventID{}, true},
		{"1732456800123-0", EventID{1732456800123, 0}, true},
		{"1732456800123-42", EventID{1732456800123, 42}, true},
		{"18446744073709551615-18446744073709551615", EventID{1<<64 - 1, 1<<64 - 1}, true},
		{"18446744073709551616-0", EventID{}, false},
		{"", EventID{}, false},
		{"123", EventID{}, false},
		{"-1", EventID{}, false},
		{"1--1", EventID{}, false},
		{"1-", EventID{}, false},
		{"+1-2", EventID{}, false},
		{"1-2-3", EventID{}, false},
		{" 1-2", EventID{}, false},
		{"1-2\n", EventID{}, false},
		{"abc-def", EventID{}, false},
	}
	for _, tt := range tests {
		got, err := ParseEventID(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseEventID(%q) = %v, %v; want %v, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
		if tt.ok && got.String() != tt.in && tt.in != "0-0" {
			t.Errorf("%q does not round-trip: %q", tt.in, got.String())
		}
	}
}

func TestMemoryForgetsIdleOrders(t *testing.T) {
	const retention, idle = time.Hour, 48 * time.Hour
	for _, tc := range []struct {
		name     string
		statuses []order.Status
		watched  bool // a subscriber is open throughout
		after    time.Duration
		kept     bool
	}{
		{"unfinished, idle under the expiry", []order.Status{order.Created}, false, idle - time.Minute, true},
		{"unfinished, idle past the expiry", []order.Status{order.Created, order.Packed}, false, idle, false},
		{"unfinished, idle but watched", []order.Status{order.Created}, true, 2 * idle, true},
		{"finished, within retention", []order.Status{order.Created, order.Delivered}, false, retention - time.Minute, true},
		{"finished, past retention", []order.Status{order.Created, order.Delivered}, false, retention, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMemory(Options{Retention: retention, IdleExpiry: idle})
			defer m.Close()
			clock := time.Date(2026, 11, 24, 14, 0, 0, 0, time.UTC)
			m.now = func() time.Time { return clock }
			ctx := context.Background()
			id := uuid.New()
			if tc.watched {
				sub, err := m.Subscribe(ctx, id, EventID{})
				if err != nil {
					t.Fatal(err)
				}
				defer sub.Close()
			}
			for _, s := range tc.statuses {
				if _, err := m.Publish(ctx, id, PublishRequest{Status: s}); err != nil {
					t.Fatal(err)
				}
			}
			clock = clock.Add(tc.after)
			_, err := m.Latest(ctx, id)
			if kept := err == nil; kept != tc.kept {
				t.Fatalf("Latest after %v: %v; want kept=%v", tc.after, err, tc.kept)
			}
			if orders, _ := m.stats(); orders != map[bool]int{true: 1, false: 0}[tc.kept] {
				t.Fatalf("%d entries left, want kept=%v", orders, tc.kept)
			}
			if !tc.kept {
				// Forgotten: the order starts over, as on Redis once its keys expire.
				if _, err := m.Publish(ctx, id, PublishRequest{Status: order.Created}); err != nil {
					t.Fatalf("publishing to a forgotten order: %v", err)
				}
			}
		})
	}
}

// TestMemoryJanitorFreesIdleOrders: idle orders are freed without anyone
// looking them up.
func TestMemoryJanitorFreesIdleOrders(t *testing.T) {
	m := NewMemory(withTestOptions(Options{IdleExpiry: 20 * time.Millisecond}))
	defer m.Close()
	for range 100 {
		if _, err := m.Publish(context.Background(), uuid.New(), PublishRequest{Status: order.Created}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		orders, _ := m.stats()
		if orders == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d idle orders still held after 10s", orders)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestMemorySubscribeCloseRaces subscribes, unsubscribes and publishes from
// many goroutines while the broker closes (run it with -race): every
// subscription made ends, with nil (finished or unsubscribed),
// ErrSlowSubscriber or ErrClosed, and none is left in the hub.
func TestMemorySubscribeCloseRaces(t *testing.T) {
	m := NewMemory(withTestOptions(Options{SubscriberBuffer: 2}))
	ids := make([]uuid.UUID, 4)
	for i := range ids {
		ids[i] = uuid.New()
	}
	var (
		mu      sync.Mutex
		made    []*Subscription
		wg      sync.WaitGroup
		count   atomic.Int32
		started = make(chan struct{})
	)
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				sub, err := m.Subscribe(context.Background(), ids[(g+i)%len(ids)], EventID{})
				if err != nil {
					if !errors.Is(err, ErrClosed) {
						t.Errorf("subscribe: %v", err)
					}
					return
				}
				mu.Lock()
				made = append(made, sub)
				mu.Unlock()
				if count.Add(1) == 50 {
					close(started)
				}
				if i%3 == 0 {
					sub.Close()
				}
			}
		})
	}
	for _, id := range ids {
		wg.Go(func() {
			for _, s := range []order.Status{order.Created, order.PaymentConfirmed, order.Packed, order.Shipped, order.OutForDelivery, order.Delivered} {
				if _, err := m.Publish(context.Background(), id, PublishRequest{Status: s}); err != nil && !errors.Is(err, ErrClosed) {
					t.Errorf("publish: %v", err)
				}
			}
		})
	}
	wg.Go(func() {
		<-started
		m.Close()
	})
	wg.Wait()
	for i, sub := range made {
		select {
		case <-drained(sub):
		case <-time.After(10 * time.Second):
			t.Fatalf("subscription %d still open after Close", i)
		}
		if err := sub.Err(); err != nil && !errors.Is(err, ErrSlowSubscriber) && !errors.Is(err, ErrClosed) {
			t.Errorf("subscription %d ended with %v", i, err)
		}
		sub.Close()
	}
	if _, subs := m.stats(); subs != 0 {
		t.Errorf("%d subscribers left after Close", subs)
	}
}

// drained reads sub's events until the channel closes.
func drained(sub *Subscription) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range sub.Events() {
		}
	}()
	return done
}
