package broker

import (
	"github.com/google/uuid"
)

// orderFeed is one order's live feed on this instance, as a plain state
// machine: no Redis, no lock, no goroutine. The Redis broker drives it from
// its connections (confirmations, messages, lost connections, moved slots)
// and from its catch-up reads, under its lock, and carries out what each
// step returns: fan the appended events out, start a read of the stream,
// serve the subscribers that waited for the order to go live.
//
// It holds a copy of the order's history that is always a gap-free prefix
// of the stream: events are appended only from the stream itself, or from a
// live message or this instance's own publish whose previous id is the
// copy's last id. A message that does not chain shows that some were
// missed: the order catches up from the stream.
//
// An order is live once its channel's subscription is confirmed on the
// current connection and it has caught up from the stream after that: from
// then on nothing appended to the stream can escape it. Until then its
// messages wait in a bounded buffer; past the bound they are dropped and
// the order catches up once more after the catch-up under way.
type orderFeed struct {
	id uuid.UUID

	// The copy of the history: a gap-free prefix of the stream.
	events   []Event
	finished bool // the copy ends with a terminal event

	state    orderState
	epoch    uint64 // names the catch-up under way; bumped when it becomes moot
	buffered []liveMessage
	again    bool // buffered messages were dropped: catch up once more
}

type orderState uint8

const (
	orderSubscribing orderState = iota // waiting for Redis to confirm the subscription
	orderCatchingUp                    // reading the stream after the copy's last id
	orderLive
)

// maxBuffered bounds the messages an order keeps while it catches up; past
// it they are dropped and the order catches up once more.
const maxBuffered = 64

// feedAction is what the caller of a step must do, in this order.
type feedAction struct {
	// appended are the events added to the copy, oldest first: deliver
	// each to the order's subscribers.
	appended []Event
	// recovered counts the events of appended that came from the stream
	// rather than live.
	recovered int
	// wentLive: serve the subscribers waiting for the order from the copy.
	wentLive bool
	// catchUp: read the stream after from and hand the result to caughtUp
	// with epoch (a read whose epoch is no longer current is moot).
	catchUp bool
	from    EventID
	epoch   uint64
}

func (a *feedAction) merge(b feedAction) {
	a.appended = append(a.appended, b.appended...)
	a.recovered += b.recovered
	a.wentLive = a.wentLive || b.wentLive
	if b.catchUp {
		a.catchUp, a.from, a.epoch = true, b.from, b.epoch
	}
}

// tail is the id of the copy's last event, zero if it has none.
func (f *orderFeed) tail() EventID {
	if len(f.events) == 0 {
		return EventID{}
	}
	return f.events[len(f.events)-1].Pos
}

// live reports whether every event appended to the stream reaches the copy.
func (f *orderFeed) live() bool { return f.state == orderLive }

// reset starts over on a new subscription: the connection was lost, the
// order moved to another connection (its slot moved), or it is new. A
// catch-up under way becomes moot; messages buffered so far are dropped,
// since the catch-up after the new subscription reads what they carried.
func (f *orderFeed) reset() {
	f.state = orderSubscribing
	f.epoch++
	f.buffered, f.again = nil, false
}

// forget makes a catch-up under way moot: nobody local watches the order.
func (f *orderFeed) forget() { f.epoch++ }

// confirmed records the confirmation of the subscription: the order
// catches up from the stream.
func (f *orderFeed) confirmed() feedAction {
	if f.state != orderSubscribing {
		return feedAction{}
	}
	return f.startCatchUp()
}

func (f *orderFeed) startCatchUp() feedAction {
	f.state = orderCatchingUp
	f.epoch++
	return feedAction{catchUp: true, from: f.tail(), epoch: f.epoch}
}

// message takes a live message: appended if it chains onto the copy,
// skipped if the copy has it, buffered while the order is not live, and a
// gap starts a catch-up.
func (f *orderFeed) message(m liveMessage) (feedAction, error) {
	if !f.live() {
		if len(f.buffered) >= maxBuffered {
			f.buffered, f.again = nil, true
		}
		f.buffered = append(f.buffered, m)
		return feedAction{}, nil
	}
	tail := f.tail()
	switch {
	case m.id.Compare(tail) <= 0: // already in the copy
		return feedAction{}, nil
	case m.prev == tail:
		ev, err := newRedisEvent(f.id, m.id, m.status, m.ts)
		if err != nil {
			return feedAction{}, err
		}
		return f.append(ev), nil
	default: // some were missed
		f.buffered = append(f.buffered, m)
		return f.startCatchUp(), nil
	}
}

// own takes an event this instance just published, whose previous event
// is prev: appended at once if it chains onto a live copy, so that local
// subscribers have it by the time Publish returns (its live message,
// arriving later, is then skipped). Otherwise the feed brings it.
func (f *orderFeed) own(prev EventID, ev Event) feedAction {
	if !f.live() || f.tail() != prev {
		return feedAction{}
	}
	return f.append(ev)
}

// caughtUp takes the events the stream had after the catch-up's from (a
// stale epoch is ignored): they are appended, the order goes live, and the
// messages that came meanwhile are replayed.
func (f *orderFeed) caughtUp(epoch uint64, evs []Event) feedAction {
	if epoch != f.epoch || f.state != orderCatchingUp {
		return feedAction{}
	}
	var a feedAction
	for _, ev := range evs {
		if ev.Pos.Compare(f.tail()) > 0 {
			a.merge(f.append(ev))
			a.recovered++
		}
	}
	f.state = orderLive
	a.wentLive = true
	buffered, again := f.buffered, f.again
	f.buffered, f.again = nil, false
	for _, m := range buffered {
		b, err := f.message(m)
		if err == nil {
			a.merge(b)
		}
	}
	if again && f.live() {
		a.merge(f.startCatchUp())
	}
	return a
}

func (f *orderFeed) append(ev Event) feedAction {
	f.events = append(f.events, ev)
	if ev.Update.Status.Terminal() {
		f.finished = true
	}
	return feedAction{appended: []Event{ev}}
}

// after returns the copy's events after pos.
func (f *orderFeed) after(pos EventID) []Event {
	for i, ev := range f.events {
		if ev.Pos.Compare(pos) > 0 {
			return append([]Event(nil), f.events[i:]...)
		}
	}
	return nil
}
