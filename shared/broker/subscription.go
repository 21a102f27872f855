package broker

// Subscription is one subscriber's view of an order: what had happened
// (History), then what happens (Events). It holds no goroutine: the broker
// hands events over without blocking, and the subscriber's own goroutine
// (the HTTP handler) reads them.
type Subscription struct {
	// History is the order's events after the subscribed position, oldest first.
	History []Event
	// Finished reports that the order had already ended when subscribing:
	// nothing follows History, and Events is closed.
	Finished bool

	events chan Event
	err    error
	closed bool // guarded by the lock of the broker that owns the subscription
	cancel func()
}

func newSubscription(buffer int) *Subscription {
	return &Subscription{events: make(chan Event, buffer)}
}

// Events delivers live events. It is closed after the order's terminal event,
// when the subscriber is dropped or the broker closes; Err then says why.
func (s *Subscription) Events() <-chan Event { return s.events }

// Err is nil while Events is open and after the order finished normally;
// ErrSlowSubscriber when the subscriber fell behind; ErrClosed or a broker
// error otherwise. In each case the subscriber resumes from its last event id
// and loses nothing.
func (s *Subscription) Err() error { return s.err }

// Close unsubscribes. It is safe to call more than once.
func (s *Subscription) Close() {
	if s.cancel != nil {
		s.cancel()
	}
}

// deliver hands ev over without blocking. A full buffer means the subscriber
// is stuck: it is ended with ErrSlowSubscriber rather than being allowed to
// hold the publisher or grow memory. The caller holds the owner's lock.
func (s *Subscription) deliver(ev Event) bool {
	if s.closed {
		return false
	}
	select {
	case s.events <- ev:
		return true
	default:
		s.end(ErrSlowSubscriber)
		return false
	}
}

// end closes Events once, recording why. The caller holds the owner's lock.
func (s *Subscription) end(err error) {
	if s.closed {
		return
	}
	s.closed = true
	s.err = err
	close(s.events)
}
