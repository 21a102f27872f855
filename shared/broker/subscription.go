package broker

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

	live   *chanSubscriber
	cancel func()
}

func newSubscription(buffer int) *Subscription {
	return &Subscription{live: &chanSubscriber{events: make(chan Event, buffer)}}
}

// Events delivers live events. It is closed after the order's terminal event,
// when the subscriber is dropped or the broker closes; Err then says why.
func (s *Subscription) Events() <-chan Event { return s.live.events }

// Err is nil while Events is open and after the order finished normally;
// ErrSlowSubscriber when the subscriber fell behind; ErrClosed or a broker
// error otherwise. In each case the subscriber resumes from its last event id
// and loses nothing.
func (s *Subscription) Err() error { return s.live.err }

// Close unsubscribes. It is safe to call more than once.
func (s *Subscription) Close() {
	if s.cancel != nil {
		s.cancel()
	}
}

// chanSubscriber is the Subscriber behind a Subscription: a bounded channel
// that the subscriber's goroutine reads. Its fields are guarded by the lock
// under which it is delivered to and ended (the hub's, or before it is
// added, the broker's); err is read only once events is closed.
type chanSubscriber struct {
	events chan Event
	err    error
	closed bool
}

// Deliver hands ev over without blocking. A full buffer means the
// subscriber is stuck: it is refused (and the hub ends it with
// ErrSlowSubscriber) rather than being allowed to hold the publisher or
// grow memory.
func (c *chanSubscriber) Deliver(ev Event) bool {
	if c.closed {
		return false
	}
	select {
	case c.events <- ev:
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
	close(c.events)
}
