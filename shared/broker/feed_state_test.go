package broker

import (
	"slices"
	"testing"

	"github.com/google/uuid"

	"github.com/orderstream/orderstream/shared/order"
)

// The feed's catch-up logic, driven step by step without Redis: event n has
// the id n-0 and, unless told otherwise, a status that does not end the order.

var feedTestOrder = uuid.MustParse("7c9e6679-7425-40de-944b-e07fc1f90ae7")

func feedStatus(n uint64) order.Status {
	if n == 99 {
		return order.Delivered
	}
	return order.Statuses()[n%5] // Created .. OutForDelivery
}

func feedEvent(n uint64) Event {
	ev, err := newRedisEvent(feedTestOrder, EventID{MS: n}, feedStatus(n), int64(n))
	if err != nil {
		panic(err)
	}
	return ev
}

func feedEvents(ns ...uint64) []Event {
	evs := make([]Event, len(ns))
	for i, n := range ns {
		evs[i] = feedEvent(n)
	}
	return evs
}

// msg is the live message of event n, naming prev as the one before it.
func msg(n, prev uint64) liveMessage {
	return liveMessage{id: EventID{MS: n}, prev: EventID{MS: prev}, status: feedStatus(n), ts: int64(n)}
}

func span(from, to uint64) []uint64 {
	var ns []uint64
	for n := from; n <= to; n++ {
		ns = append(ns, n)
	}
	return ns
}

// feedStep is one thing that happens to the feed and what it must answer.
type feedStep struct {
	name string
	do   func(f *orderFeed, t *feedTest) feedAction

	appended  []uint64 // ids of the events it must append, in order
	recovered int
	wentLive  bool
	catchUp   bool
	from      uint64 // with catchUp
}

// feedTest keeps the epoch of the last catch-up asked for, as the broker does.
type feedTest struct{ epochs []uint64 }

func (ft *feedTest) last() uint64 { return ft.epochs[len(ft.epochs)-1] }

func reset() func(*orderFeed, *feedTest) feedAction {
	return func(f *orderFeed, _ *feedTest) feedAction { f.reset(); return feedAction{} }
}

func confirmed() func(*orderFeed, *feedTest) feedAction {
	return func(f *orderFeed, _ *feedTest) feedAction { return f.confirmed() }
}

func message(n, prev uint64) func(*orderFeed, *feedTest) feedAction {
	return func(f *orderFeed, _ *feedTest) feedAction {
		a, err := f.message(msg(n, prev))
		if err != nil {
			panic(err)
		}
		return a
	}
}

func messages(from, to uint64) func(*orderFeed, *feedTest) feedAction {
	return func(f *orderFeed, ft *feedTest) feedAction {
		var a feedAction
		for n := from; n <= to; n++ {
			a.merge(message(n, n-1)(f, ft))
		}
		return a
	}
}

func own(prev, n uint64) func(*orderFeed, *feedTest) feedAction {
	return func(f *orderFeed, _ *feedTest) feedAction { return f.own(EventID{MS: prev}, feedEvent(n)) }
}

// caughtUp answers the latest catch-up with the stream's events ns;
// caughtUpStale answers the one before it.
func caughtUp(ns ...uint64) func(*orderFeed, *feedTest) feedAction {
	return func(f *orderFeed, ft *feedTest) feedAction { return f.caughtUp(ft.last(), feedEvents(ns...)) }
}

func caughtUpStale(ns ...uint64) func(*orderFeed, *feedTest) feedAction {
	return func(f *orderFeed, ft *feedTest) feedAction {
		return f.caughtUp(ft.epochs[len(ft.epochs)-2], feedEvents(ns...))
	}
}

// goLive brings a new order live with the stream's events ns.
var goLive = func(ns ...uint64) []feedStep {
	return []feedStep{
		{name: "subscribe", do: reset()},
		{name: "confirmed", do: confirmed(), catchUp: true},
		{name: "caught up", do: caughtUp(ns...), appended: ns, recovered: len(ns), wentLive: true},
	}
}

func TestOrderFeed(t *testing.T) {
	tests := []struct {
		name  string
		steps []feedStep
		want  []uint64 // the copy at the end
	}{
		{"live messages chain on", append(goLive(1, 2),
			feedStep{name: "next", do: message(3, 2), appended: []uint64{3}},
			feedStep{name: "duplicate", do: message(3, 2)},
			feedStep{name: "older", do: message(2, 1)},
		), []uint64{1, 2, 3}},
		{"messages during the catch-up are replayed once", []feedStep{
			{name: "subscribe", do: reset()},
			{name: "confirmed", do: confirmed(), catchUp: true},
			{name: "in the stream too", do: message(2, 1)},
			{name: "after the read", do: message(3, 2)},
			{name: "caught up", do: caughtUp(1, 2), appended: []uint64{1, 2, 3}, recovered: 2, wentLive: true},
		}, []uint64{1, 2, 3}},
		{"a lost message is read back", append(goLive(1),
			feedStep{name: "gap", do: message(3, 2), catchUp: true, from: 1},
			feedStep{name: "buffered meanwhile", do: message(4, 3)},
			feedStep{name: "caught up", do: caughtUp(2, 3), appended: []uint64{2, 3, 4}, recovered: 2, wentLive: true},
		), []uint64{1, 2, 3, 4}},
		{"own publish first, its message skipped", append(goLive(1),
			feedStep{name: "own", do: own(1, 2), appended: []uint64{2}},
			feedStep{name: "its message", do: message(2, 1)},
			feedStep{name: "own that does not chain", do: own(3, 4)},
			feedStep{name: "the feed brings both", do: message(4, 3), catchUp: true, from: 2},
			feedStep{name: "caught up", do: caughtUp(3, 4), appended: []uint64{3, 4}, recovered: 2, wentLive: true},
		), []uint64{1, 2, 3, 4}},
		{"buffer overflow catches up once more", []feedStep{
			{name: "subscribe", do: reset()},
			{name: "confirmed", do: confirmed(), catchUp: true},
			{name: "more than the buffer holds", do: messages(1, maxBuffered+1)},
			// The read saw the stream when it held 10 events; the only
			// message left does not chain onto them.
			{name: "caught up", do: caughtUp(span(1, 10)...), appended: span(1, 10), recovered: 10, wentLive: true, catchUp: true, from: 10},
			{name: "caught up again", do: caughtUp(span(11, maxBuffered+1)...), appended: span(11, maxBuffered+1), recovered: maxBuffered + 1 - 10, wentLive: true},
		}, span(1, maxBuffered+1)},
		{"reconnection makes the read under way moot", []feedStep{
			{name: "subscribe", do: reset()},
			{name: "confirmed", do: confirmed(), catchUp: true},
			{name: "connection lost", do: reset()},
			{name: "message before the new confirmation", do: message(1, 0)},
			{name: "confirmed again", do: confirmed(), catchUp: true},
			{name: "the old read answers", do: caughtUpStale(1)},
			{name: "the new read answers", do: caughtUp(1, 2), appended: []uint64{1, 2}, recovered: 2, wentLive: true},
		}, []uint64{1, 2}},
		{"slot moved: resubscribed elsewhere, caught up, nothing twice", append(goLive(1),
			feedStep{name: "moved", do: reset()},
			feedStep{name: "message on the new master", do: message(2, 1)},
			feedStep{name: "a duplicate from the old one", do: message(2, 1)},
			feedStep{name: "confirmed", do: confirmed(), catchUp: true, from: 1},
			feedStep{name: "a confirmation twice", do: confirmed()},
			feedStep{name: "caught up", do: caughtUp(2, 3), appended: []uint64{2, 3}, recovered: 2, wentLive: true},
		), []uint64{1, 2, 3}},
		{"the terminal event finishes the copy", append(goLive(1),
			feedStep{name: "delivered", do: message(99, 1), appended: []uint64{99}},
		), []uint64{1, 99}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &orderFeed{id: feedTestOrder}
			ft := &feedTest{}
			for i, st := range tt.steps {
				a := st.do(f, ft)
				if a.catchUp {
					ft.epochs = append(ft.epochs, a.epoch)
				}
				var got []uint64
				for j, ev := range a.appended {
					got = append(got, ev.Pos.MS)
					if want := feedEvent(ev.Pos.MS); ev != want {
						t.Fatalf("step %d (%s): appended[%d] = %+v, want %+v", i, st.name, j, ev, want)
					}
				}
				if !slices.Equal(got, st.appended) || a.recovered != st.recovered || a.wentLive != st.wentLive ||
					a.catchUp != st.catchUp || a.catchUp && a.from != (EventID{MS: st.from}) {
					t.Fatalf("step %d (%s): appended %v, recovered %d, live %v, catch up %v from %v; want %v, %d, %v, %v from %d",
						i, st.name, got, a.recovered, a.wentLive, a.catchUp, a.from, st.appended, st.recovered, st.wentLive, st.catchUp, st.from)
				}
			}
			var copyIDs []uint64
			for _, ev := range f.events {
				copyIDs = append(copyIDs, ev.Pos.MS)
			}
			if !slices.Equal(copyIDs, tt.want) {
				t.Fatalf("copy %v, want %v", copyIDs, tt.want)
			}
			if f.finished != slices.Contains(tt.want, 99) {
				t.Fatalf("finished = %v", f.finished)
			}
		})
	}
}
