package broker

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/orderstream/orderstream/shared/order"
)

// shardCount spreads orders over several locks so that publishes to
// different orders don't wait for each other.
const shardCount = 32

// Memory is the in-process broker: one process, history in memory, lost on
// restart. Finished orders are forgotten after Options.Retention, and
// unfinished ones Options.IdleExpiry after their last event unless someone
// is watching them, so that a long-running instance's memory stays bounded.
//
// It is a store (each order's history, the transition check, idempotency
// keys, expiry) and a hub that fans its events out (hub.go). Publish and
// Subscribe call the hub with the order's store shard lock held, so that
// an event is appended and delivered, or history read and a subscriber
// added, as one step.
type Memory struct {
	opts   Options
	now    func() time.Time
	shards [shardCount]memShard
	hub    *hub
	closed atomic.Bool
	stop   chan struct{}
	wg     sync.WaitGroup
}

type memShard struct {
	mu     sync.Mutex
	orders map[uuid.UUID]*memOrder
}

// memOrder is an order's stored part, from its first event until it
// expires; its subscribers are in the hub, also before its first event.
type memOrder struct {
	ids      []EventID // parallel to events, for position lookups without parsing
	events   []Event
	finished time.Time // when the terminal event was accepted; zero before
	// accepted holds the event each idempotency key made; it goes with the
	// order, so a key lives as long as the order it names.
	accepted map[string]Event
}

// replay answers a request whose key the order already accepted: the same
// event, or an *IdempotencyKeyError if the key was for another status. ok is
// false for a key the order has not seen. The caller holds the shard lock.
func (o *memOrder) replay(req PublishRequest) (ev Event, ok bool, err error) {
	if o == nil || req.IdempotencyKey == "" {
		return Event{}, false, nil
	}
	ev, ok = o.accepted[req.IdempotencyKey]
	if ok && ev.Update.Status != req.Status {
		return Event{}, true, &IdempotencyKeyError{Key: req.IdempotencyKey, Accepted: ev.Update.Status, Requested: req.Status}
	}
	return ev, ok, nil
}

// NewMemory returns an in-process broker. Close stops its janitor. It
// panics on Options without their required values, as http.ServeMux does on
// a bad pattern: nothing but a caller's mistake gets there.
func NewMemory(opts Options) *Memory {
	if err := opts.check(); err != nil {
		panic("broker.NewMemory: " + err.Error())
	}
	m := &Memory{opts: opts.withDefaults(), now: time.Now, hub: newHub(), stop: make(chan struct{})}
	for i := range m.shards {
		m.shards[i].orders = make(map[uuid.UUID]*memOrder)
	}
	m.wg.Add(1)
	go m.janitor()
	return m
}

func (m *Memory) shard(id uuid.UUID) *memShard {
	return &m.shards[id[15]%shardCount] // the random bits of a v4 UUID
}

// lookup returns the order's entry, dropping it first if its retention ran out.
// The caller holds sh.mu.
func (m *Memory) lookup(sh *memShard, id uuid.UUID, now time.Time) *memOrder {
	o := sh.orders[id]
	if o != nil && m.expired(id, o, now) {
		delete(sh.orders, id)
		return nil
	}
	return o
}

// expired reports whether the order's entry may go. The caller holds its
// shard's lock.
func (m *Memory) expired(id uuid.UUID, o *memOrder, now time.Time) bool {
	if !o.finished.IsZero() {
		return now.Sub(o.finished) >= m.opts.Retention
	}
	// An order with subscribers stays: forgetting it would cut them off
	// from what is published next.
	return len(o.events) > 0 &&
		now.Sub(o.events[len(o.events)-1].Update.Timestamp) >= m.opts.IdleExpiry &&
		m.hub.watchers(id) == 0
}

func (m *Memory) Publish(_ context.Context, id uuid.UUID, req PublishRequest) (Event, error) {
	if m.closed.Load() {
		return Event{}, ErrClosed
	}
	if err := req.check(); err != nil {
		return Event{}, err
	}
	status := req.Status
	sh := m.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()

	now := m.now().UTC().Truncate(time.Microsecond)
	o := m.lookup(sh, id, now)
	if ev, ok, err := o.replay(req); ok {
		return ev, err
	}
	var current order.Status
	var lastID EventID
	if o != nil && len(o.events) > 0 {
		last := o.events[len(o.events)-1]
		current, lastID = last.Update.Status, o.ids[len(o.ids)-1]
		// Timestamps never go back, even if the clock does.
		if now.Before(last.Update.Timestamp) {
			now = last.Update.Timestamp
		}
	}
	if err := order.CheckTransition(current, status); err != nil {
		return Event{}, err
	}
	evID := next(lastID, uint64(now.UnixMilli()))
	ev, err := NewEvent(evID, order.Update{OrderID: id, Status: status, Timestamp: now})
	if err != nil {
		return Event{}, err
	}
	if o == nil {
		o = &memOrder{}
		sh.orders[id] = o
	}
	o.ids = append(o.ids, evID)
	o.events = append(o.events, ev)
	if req.IdempotencyKey != "" {
		if o.accepted == nil {
			o.accepted = make(map[string]Event)
		}
		o.accepted[req.IdempotencyKey] = ev
	}
	if status.Terminal() {
		o.finished = now
	}
	m.hub.publish(ev)
	return ev, nil
}

func (m *Memory) Latest(_ context.Context, id uuid.UUID) (Event, error) {
	if m.closed.Load() {
		return Event{}, ErrClosed
	}
	sh := m.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	o := m.lookup(sh, id, m.now())
	if o == nil || len(o.events) == 0 {
		return Event{}, ErrNotFound
	}
	return o.events[len(o.events)-1], nil
}

func (m *Memory) Subscribe(_ context.Context, id uuid.UUID, after EventID) (*Subscription, error) {
	sh := m.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	// Checked under the shard lock: Close sets the flag before it sweeps the
	// shards, so a subscription is either swept or never made.
	if m.closed.Load() {
		return nil, ErrClosed
	}

	sub := newSubscription(m.opts.SubscriberBuffer)
	// History and registration happen under the lock that Publish takes, so
	// no event falls between them or arrives twice.
	if o := m.lookup(sh, id, m.now()); o != nil {
		for i, evID := range o.ids {
			if evID.Compare(after) > 0 {
				sub.History = append(sub.History, o.events[i:]...)
				break
			}
		}
		if !o.finished.IsZero() {
			sub.Finished = true
			sub.live.End(nil)
			return sub, nil
		}
	}
	// From the zero position: every event published from now on follows
	// what History holds, whatever position was asked for, as before the
	// hub existed.
	if err := m.hub.add(id, sub.live, EventID{}); err != nil {
		return nil, err
	}
	sub.inHub(m.hub, id) // Close leaves the hub: no cancel of its own

	return sub, nil
}

func (m *Memory) Ping(context.Context) error {
	if m.closed.Load() {
		return ErrClosed
	}
	return nil
}

// Close ends every subscription with ErrClosed and stops the janitor.
func (m *Memory) Close() error {
	if m.closed.Swap(true) {
		return nil
	}
	close(m.stop)
	m.wg.Wait()
	m.hub.close(ErrClosed)
	return nil
}

// janitor frees orders whose retention or idle expiry ran out; lookups
// already hide them, this only returns their memory.
func (m *Memory) janitor() {
	defer m.wg.Done()
	every := min(max(min(m.opts.Retention, m.opts.IdleExpiry)/4, 10*time.Millisecond), time.Minute)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			now := m.now()
			for i := range m.shards {
				sh := &m.shards[i]
				sh.mu.Lock()
				for id, o := range sh.orders {
					if m.expired(id, o, now) {
						delete(sh.orders, id)
					}
				}
				sh.mu.Unlock()
			}
		}
	}
}

// stats counts the orders held (in the store, the hub or both) and their
// subscribers; tests use it to prove nothing leaks.
func (m *Memory) stats() (orders, subscribers int) {
	held := make(map[uuid.UUID]bool)
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		for id := range sh.orders {
			held[id] = true
		}
		sh.mu.Unlock()
	}
	m.hub.each(func(id uuid.UUID, n int) {
		held[id] = true
		subscribers += n
	})
	return len(held), subscribers
}
