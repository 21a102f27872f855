package broker

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/orderstream/orderstream/shared/order"
)

// shardCount spreads orders over several locks so that a fan-out to a busy
// order's subscribers doesn't stall publishes to every other order.
const shardCount = 32

// Memory is the in-process broker: one process, history in memory, lost on
// restart. Finished orders are forgotten after Options.Retention, and
// unfinished ones Options.IdleExpiry after their last event unless someone
// is watching them, so that a long-running instance's memory stays bounded.
type Memory struct {
	opts   Options
	now    func() time.Time
	shards [shardCount]memShard
	closed atomic.Bool
	stop   chan struct{}
	wg     sync.WaitGroup
}

type memShard struct {
	mu     sync.Mutex
	orders map[uuid.UUID]*memOrder
}

// memOrder exists while an order has events or subscribers waiting for its
// first event; an entry with neither is deleted at once.
type memOrder struct {
	ids      []EventID // parallel to events, for position lookups without parsing
	events   []Event
	subs     map[*Subscription]struct{}
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

// NewMemory returns an in-process broker. Close stops its janitor.
func NewMemory(opts Options) *Memory {
	m := &Memory{opts: opts.withDefaults(), now: time.Now, stop: make(chan struct{})}
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
	if o != nil && m.expired(o, now) {
		delete(sh.orders, id)
		return nil
	}
	return o
}

func (m *Memory) expired(o *memOrder, now time.Time) bool {
	if !o.finished.IsZero() {
		return now.Sub(o.finished) >= m.opts.Retention
	}
	// An order with subscribers stays: forgetting it would cut them off
	// from what is published next.
	return len(o.subs) == 0 && len(o.events) > 0 &&
		now.Sub(o.events[len(o.events)-1].Update.Timestamp) >= m.opts.IdleExpiry
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
	for s := range o.subs {
		if !s.deliver(ev) {
			delete(o.subs, s)
		}
	}
	if status.Terminal() {
		o.finished = now
		for s := range o.subs {
			s.end(nil)
		}
		o.subs = nil
	}
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
	o := m.lookup(sh, id, m.now())
	if o == nil {
		o = &memOrder{}
		sh.orders[id] = o
	}
	// History and registration happen under the lock that Publish takes, so
	// no event falls between them or arrives twice.
	for i, evID := range o.ids {
		if evID.Compare(after) > 0 {
			sub.History = append(sub.History, o.events[i:]...)
			break
		}
	}
	if !o.finished.IsZero() {
		sub.Finished = true
		sub.end(nil)
		return sub, nil
	}
	if o.subs == nil {
		o.subs = make(map[*Subscription]struct{})
	}
	o.subs[sub] = struct{}{}
	sub.cancel = func() { m.unsubscribe(sh, id, sub) }
	return sub, nil
}

func (m *Memory) unsubscribe(sh *memShard, id uuid.UUID, sub *Subscription) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sub.end(nil)
	o := sh.orders[id]
	if o == nil {
		return
	}
	delete(o.subs, sub)
	if len(o.subs) == 0 && len(o.events) == 0 {
		delete(sh.orders, id)
	}
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
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		for _, o := range sh.orders {
			for s := range o.subs {
				s.end(ErrClosed)
			}
			o.subs = nil
		}
		sh.mu.Unlock()
	}
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
					if m.expired(o, now) {
						delete(sh.orders, id)
					}
				}
				sh.mu.Unlock()
			}
		}
	}
}

// stats counts entries and subscribers; tests use it to prove nothing leaks.
func (m *Memory) stats() (orders, subscribers int) {
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		orders += len(sh.orders)
		for _, o := range sh.orders {
			subscribers += len(o.subs)
		}
		sh.mu.Unlock()
	}
	return orders, subscribers
}
