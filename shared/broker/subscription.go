package broker

import (
	"errors"
	"math"

	"github.com/google/uuid"
)

// Subscription is one subscriber's view of an order: what had happened
// (History), then what happens (Events). It holds no goroutine: the hub
// hands events over without blocking, and the subscriber's own goroutine
// (the HTTP handler) reads them.
type Subscription struct {
	// History is the order's events after the subscribed position, oldest first.
	History []Event
	// Finished reports that the order had already ended when subscribing:
	// nothing follows History, and Events is closed.
	Finished bool

	live *chanSubscriber
	// cancel unsubscribes, if the broker needs more than leaving the hub
	// (Redis: its feed's bookkeeping); nil: Close takes live out of hub.
	cancel func()
	// Where live is held, for Handover, Events and Close: set by the broker once live is in
	// the hub (nil if it ended before).
	hub   *hub
	order uuid.UUID
}

// ErrNotLive is Handover's answer for a subscription that has ended (or
// never went live): its Events still hold what it got, then its end.
var ErrNotLive = errors.New("subscription is not live")

// inHub records that s's subscriber is in h under order id, for Handover,
// Events and Close.
func (s *Subscription) inHub(h *hub, id uuid.UUID) { s.hub, s.order = h, id }

// Handover moves the live subscription from its channel to another
// Subscriber, atomically against every publish: under the order's hub shard
// lock it takes the events still waiting in the channel (buffered, oldest
// first) and calls next with them, and every event after those goes to the
// Subscriber next returns, then its End. next runs under the hub's lock, so
// it must obey Subscriber's rules (no blocking, no calls into a broker); it
// typically writes buffered out and returns a Subscriber that does the same
// with later events. Close still unsubscribes (the new Subscriber is then
// ended with nil). After Handover the caller must not read Events.
//
// It works by forwarding rather than by replacing the subscriber in the hub:
// the channel subscriber stays the hub's key (so both brokers' unsubscribe
// paths, which name it, stay as they are) and from then on passes Deliver
// and End on, and its channel is dropped. The alternative, a subscriber
// supplied at Subscribe that buffers until attached, would have needed a
// second Subscribe path in each broker and a buffer of its own.
//
// ErrNotLive when the subscription has already ended (the order finished,
// it was dropped as slow, the broker closed): next is not called, and the
// caller reads Events to the end as before.
func (s *Subscription) Handover(next func(buffered []Event) Subscriber) error {
	if s.hub == nil {
		return ErrNotLive // ended before it reached the hub; no one else touches live
	}
	var err error
	s.hub.locked(s.order, func() { err = s.live.handover(next) })
	return err
}

func newSubscription(buffer int) *Subscription {
	return &Subscription{live: &chanSubscriber{buffer: int32(min(buffer, math.MaxInt32))}}
}

// Events delivers live events. It is closed after the order's terminal event,
// when the subscriber is dropped or the broker closes; Err then says why.
// Read it once and keep it: the channel is made at the first call (or the
// first event), under the hub's lock, so that a subscription handed over
// (Handover) before either never makes one.
func (s *Subscription) Events() <-chan Event {
	if s.hub == nil {
		// Never in the hub: it ended inside Subscribe, which made its
		// channel, and nothing else touches it.
		return s.live.channel()
	}
	var ch chan Event
	s.hub.locked(s.order, func() { ch = s.live.channel() })
	return ch
}

// Err is nil while Events is open and after the order finished normally;
// ErrSlowSubscriber when the subscriber fell behind; ErrClosed or a broker
// error otherwise. In each case the subscriber resumes from its last event id
// and loses nothing.
func (s *Subscription) Err() error { return s.live.err }

// Close unsubscribes. It is safe to call more than once.
func (s *Subscription) Close() {
	switch {
	case s.cancel != nil:
		s.cancel()
	case s.hub != nil:
		s.hub.remove(s.order, s.live) // all a broker without a cancel of its own needs
	}
}

// chanSubscriber is the Subscriber behind a Subscription: a bounded channel
// that the subscriber's goroutine reads. Its fields are guarded by the lock
// under which it is delivered to and ended (the hub's, or before it is
// added, the broker's); err is read only once events is closed.
type chanSubscriber struct {
	events chan Event // made by the first Deliver, End or Events: see channel
	err    error
	next   Subscriber // after Handover: where events go instead
	// A stream handed over keeps its chanSubscriber (the hub's key) for
	// life: with these two together it is 48 bytes, not 64.
	buffer int32 // events's capacity
	closed bool
}

// channel returns events, making it if there is none yet. A subscription
// handed over to another Subscriber (a registered socket) before its first
// event never makes one: its buffer would be garbage at once.
func (c *chanSubscriber) channel() chan Event {
	if c.events == nil {
		c.events = make(chan Event, c.buffer)
	}
	return c.events
}

// handover drains events into next's buffered events and forwards to
// what next returns from now on; ErrNotLive once ended.
func (c *chanSubscriber) handover(next func(buffered []Event) Subscriber) error {
	if c.closed || c.next != nil {
		return ErrNotLive
	}
	buffered := make([]Event, 0, len(c.events))
	for len(c.events) > 0 {
		buffered = append(buffered, <-c.events)
	}
	c.next = next(buffered)
	c.events = nil // the buffer's memory goes; Events is not read any more
	return nil
}

// Deliver hands ev over without blocking. A full buffer means the
// subscriber is stuck: it is refused (and the hub ends it with
// ErrSlowSubscriber) rather than being allowed to hold the publisher or
// grow memory.
func (c *chanSubscriber) Deliver(ev Event) bool {
	if c.next != nil {
		return c.next.Deliver(ev)
	}
	if c.closed {
		return false
	}
	select {
	case c.channel() <- ev:
		return true
	default:
		return false
	}
}

// End closes events once, recording why.
func (c *chanSubscriber) End(err error) {
	if c.closed {
		return
	}
	c.closed = true
	c.err = err
	if c.next != nil {
		c.next.End(err)
		return
	}
	if c.events == nil {
		c.events = closedEvents // nothing was delivered: no buffer to make
		return
	}
	close(c.events)
}

// closedEvents is the Events of every subscription that ended before its
// first event was delivered or its channel read.
var closedEvents = func() chan Event {
	c := make(chan Event)
	close(c)
	return c
}()
