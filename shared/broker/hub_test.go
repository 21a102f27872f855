package broker

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderstream/orderstream/shared/order"
)

// recorder is a Subscriber that keeps what it is handed, taking at most
// capacity events. Its fields are written under the hub's lock and read by
// the test once every goroutine that could call the hub is done.
type recorder struct {
	capacity int
	got      []EventID
	ends     int
	err      error
}

func (r *recorder) Deliver(ev Event) bool {
	if r.ends > 0 {
		panic("Deliver after End")
	}
	if len(r.got) == r.capacity {
		return false
	}
	r.got = append(r.got, ev.Pos)
	return true
}

func (r *recorder) End(err error) {
	r.ends++
	r.err = err
}

// hubEvent is the n-th event (n from 1) of order id, with status s.
func hubEvent(t testing.TB, id uuid.UUID, n uint64, s order.Status) Event {
	t.Helper()
	ev, err := NewEvent(EventID{MS: n}, order.Update{OrderID: id, Status: s, Timestamp: time.UnixMilli(int64(n)).UTC()})
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func TestHubDelivery(t *testing.T) {
	type sub struct {
		capacity int
		pos      uint64 // added at the n-th event's id (0: from the start)
		got      int    // events it must have, the last ones published after pos
		ended    bool
		err      error
	}
	many := make([]sub, 1000)
	for i := range many {
		many[i] = sub{capacity: 8, got: 3}
	}
	for _, tc := range []struct {
		name     string
		statuses []order.Status
		subs     []sub
		left     int // subscribers still registered afterwards
	}{
		{
			name:     "many subscribers get every event in order",
			statuses: []order.Status{order.Created, order.PaymentConfirmed, order.Packed},
			subs:     many,
			left:     len(many),
		},
		{
			name:     "a slow subscriber is cut, the others go on",
			statuses: []order.Status{order.Created, order.PaymentConfirmed, order.Packed},
			subs: []sub{
				{capacity: 8, got: 3},
				{capacity: 1, got: 1, ended: true, err: ErrSlowSubscriber},
				{capacity: 8, got: 3},
			},
			left: 2,
		},
		{
			name:     "a terminal event ends every subscriber",
			statuses: []order.Status{order.Created, order.Packed, order.Delivered},
			subs:     []sub{{capacity: 8, got: 3, ended: true}, {capacity: 8, got: 3, ended: true}},
			left:     0,
		},
		{
			name:     "a slow subscriber cut by the terminal event",
			statuses: []order.Status{order.Created, order.Cancelled},
			subs:     []sub{{capacity: 1, got: 1, ended: true, err: ErrSlowSubscriber}, {capacity: 8, got: 2, ended: true}},
			left:     0,
		},
		{
			name:     "events at or before a subscriber's position are skipped",
			statuses: []order.Status{order.Created, order.PaymentConfirmed, order.Packed},
			subs:     []sub{{capacity: 8, pos: 2, got: 1}, {capacity: 8, pos: 3, got: 0}, {capacity: 8, got: 3}},
			left:     3,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHub()
			id := uuid.New()
			recs := make([]*recorder, len(tc.subs))
			for i, s := range tc.subs {
				recs[i] = &recorder{capacity: s.capacity}
				if err := h.add(id, recs[i], EventID{MS: s.pos}); err != nil {
					t.Fatal(err)
				}
			}
			for i, s := range tc.statuses {
				h.publish(hubEvent(t, id, uint64(i+1), s))
			}
			for i, s := range tc.subs {
				r := recs[i]
				var want []EventID
				for n := s.pos + 1; n <= uint64(len(tc.statuses)) && len(want) < s.got; n++ {
					want = append(want, EventID{MS: n})
				}
				if fmt.Sprint(r.got) != fmt.Sprint(want) {
					t.Errorf("subscriber %d got %v, want %v", i, r.got, want)
				}
				if wantEnds := map[bool]int{true: 1}[s.ended]; r.ends != wantEnds || !errors.Is(r.err, s.err) {
					t.Errorf("subscriber %d ended %d times with %v, want %d with %v", i, r.ends, r.err, wantEnds, s.err)
				}
			}
			if n := h.watchers(id); n != tc.left {
				t.Errorf("%d subscribers left, want %d", n, tc.left)
			}
			if tc.left == 0 {
				h.each(func(id uuid.UUID, _ int) { t.Errorf("order %s still held with no subscriber", id) })
			}
		})
	}
}

func TestHubRemove(t *testing.T) {
	h := newHub()
	id := uuid.New()
	gone, stays := &recorder{capacity: 8}, &recorder{capacity: 8}
	for _, r := range []*recorder{gone, stays} {
		if err := h.add(id, r, EventID{}); err != nil {
			t.Fatal(err)
		}
	}
	if !h.remove(id, gone) {
		t.Fatal("remove of a registered subscriber answered false")
	}
	if h.remove(id, gone) {
		t.Error("a second remove answered true")
	}
	h.publish(hubEvent(t, id, 1, order.Created))
	if gone.ends != 1 || gone.err != nil || len(gone.got) != 0 {
		t.Errorf("removed subscriber: %d ends (%v), got %v; want 1 end with nil, nothing", gone.ends, gone.err, gone.got)
	}
	if stays.ends != 0 || len(stays.got) != 1 {
		t.Errorf("other subscriber: %d ends, got %v; want 0, one event", stays.ends, stays.got)
	}
	h.remove(id, stays)
	h.each(func(id uuid.UUID, _ int) { t.Errorf("order %s still held after its last subscriber left", id) })
}

func TestHubCloseEndsSubscribers(t *testing.T) {
	h := newHub()
	var recs []*recorder
	for range 100 {
		id := uuid.New()
		for range 3 {
			r := &recorder{capacity: 8}
			if err := h.add(id, r, EventID{}); err != nil {
				t.Fatal(err)
			}
			recs = append(recs, r)
		}
	}
	h.close(ErrClosed)
	for i, r := range recs {
		if r.ends != 1 || !errors.Is(r.err, ErrClosed) {
			t.Fatalf("subscriber %d: ended %d times with %v; want once with ErrClosed", i, r.ends, r.err)
		}
	}
	late := &recorder{capacity: 8}
	if err := h.add(uuid.New(), late, EventID{}); !errors.Is(err, ErrClosed) {
		t.Errorf("add after close: %v, want ErrClosed", err)
	}
	if late.ends != 0 {
		t.Error("a refused subscriber was ended: its caller still owns it")
	}
	h.each(func(id uuid.UUID, _ int) { t.Errorf("order %s still held after close", id) })
}

// TestHubRaces adds, removes, publishes and closes from many goroutines at
// once (run it with -race): every subscriber the hub took is ended exactly
// once, receives ids in increasing order, and nothing is left.
func TestHubRaces(t *testing.T) {
	h := newHub()
	ids := make([]uuid.UUID, 4)
	for i := range ids {
		ids[i] = uuid.New()
	}
	var (
		mu    sync.Mutex
		taken []*recorder
		wg    sync.WaitGroup
		// close comes once some subscribers are in, while the rest are
		// still being added, removed and delivered to.
		added   atomic.Int32
		started = make(chan struct{})
	)
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				id := ids[(g+i)%len(ids)]
				r := &recorder{capacity: 1 + i%4}
				if err := h.add(id, r, EventID{}); err != nil {
					continue // closed meanwhile
				}
				mu.Lock()
				taken = append(taken, r)
				mu.Unlock()
				if added.Add(1) == 50 {
					close(started)
				}
				if i%3 == 0 {
					h.remove(id, r)
				}
			}
		})
	}
	for p, id := range ids {
		wg.Go(func() {
			statuses := []order.Status{order.Created, order.PaymentConfirmed, order.Packed, order.Shipped, order.OutForDelivery}
			for n := range 100 {
				h.publish(hubEvent(t, id, uint64(n+1), statuses[(n+p)%len(statuses)]))
			}
		})
	}
	wg.Go(func() {
		<-started
		h.close(ErrClosed)
	})
	wg.Wait()
	for i, r := range taken {
		if r.ends != 1 {
			t.Fatalf("subscriber %d ended %d times, want once", i, r.ends)
		}
		for j := 1; j < len(r.got); j++ {
			if r.got[j].Compare(r.got[j-1]) <= 0 {
				t.Fatalf("subscriber %d got %v: not increasing", i, r.got)
			}
		}
	}
	h.each(func(id uuid.UUID, n int) { t.Errorf("order %s still holds %d subscribers after close", id, n) })
}

// TestHubShardsSpread: orders spread over every shard, and a fan-out held
// up in one shard does not hold up another's.
func TestHubShardsSpread(t *testing.T) {
	h := newHub()
	seen := make(map[*hubShard]bool)
	for i := range hubShardCount {
		id := uuid.New()
		id[15] = byte(i)
		seen[h.shard(id)] = true
	}
	if len(seen) != hubShardCount {
		t.Fatalf("%d orders landed on %d shards, want %d", hubShardCount, len(seen), hubShardCount)
	}

	held, free := uuid.New(), uuid.New()
	held[15], free[15] = 0, 1
	heldRec, freeRec := &recorder{capacity: 8}, &recorder{capacity: 8}
	_ = h.add(held, heldRec, EventID{})
	_ = h.add(free, freeRec, EventID{})
	sh := h.shard(held)
	sh.mu.Lock() // a fan-out in progress on held's shard
	heldDone, freeDone := make(chan struct{}), make(chan struct{})
	go func() { h.publish(hubEvent(t, held, 1, order.Created)); close(heldDone) }()
	go func() { h.publish(hubEvent(t, free, 1, order.Created)); close(freeDone) }()
	select {
	case <-freeDone:
	case <-time.After(10 * time.Second):
		sh.mu.Unlock()
		t.Fatal("a publish to another shard waited for the held one")
	}
	select {
	case <-heldDone:
		t.Error("a publish went through a held shard lock")
	default:
	}
	sh.mu.Unlock()
	<-heldDone
	if len(heldRec.got) != 1 || len(freeRec.got) != 1 {
		t.Errorf("got %v and %v, want one event each", heldRec.got, freeRec.got)
	}
}

// recordingGroup is a Group that hands each event to its members'
// recorders, and counts its calls and the members named in each.
type recordingGroup struct {
	calls   int
	members []int
}

func (g *recordingGroup) DeliverGroup(ev Event, members []Subscriber) {
	g.calls++
	g.members = append(g.members, len(members))
	for _, m := range members {
		gm := m.(*groupMember)
		if gm.ends > 0 {
			panic("DeliverGroup after End")
		}
		gm.got = append(gm.got, ev.Pos)
	}
}

// groupMember is a recorder delivered through its group; Deliver is only
// for events handed over from a Subscription.
type groupMember struct {
	recorder
	g *recordingGroup
}

func (m *groupMember) Group() Group { return m.g }

func TestHubDeliversGroupMembersInOneCallPerEvent(t *testing.T) {
	h := newHub()
	id := uuid.New()
	g1, g2 := &recordingGroup{}, &recordingGroup{}
	var members []*groupMember
	for i := range 10 {
		g := g1
		if i%5 == 4 {
			g = g2
		}
		m := &groupMember{recorder: recorder{capacity: 8}, g: g}
		members = append(members, m)
		pos := EventID{}
		if i == 0 {
			pos = EventID{MS: 1} // resumed after the first event: skips it
		}
		if err := h.add(id, m, pos); err != nil {
			t.Fatal(err)
		}
	}
	plain := &recorder{capacity: 8}
	if err := h.add(id, plain, EventID{}); err != nil {
		t.Fatal(err)
	}
	// A Subscription handed over to a member is delivered through the
	// member's group too.
	sub := newSubscription(4)
	if err := h.add(id, sub.live, EventID{}); err != nil {
		t.Fatal(err)
	}
	sub.inHub(h, id)
	handed := &groupMember{recorder: recorder{capacity: 8}, g: g1}
	if err := sub.Handover(func(buffered []Event) Subscriber { return handed }); err != nil {
		t.Fatal(err)
	}
	statuses := []order.Status{order.Created, order.PaymentConfirmed, order.Packed, order.Cancelled}
	for i, s := range statuses {
		h.publish(hubEvent(t, id, uint64(i+1), s))
	}
	if g1.calls != len(statuses) || g2.calls != len(statuses) {
		t.Errorf("groups called %d and %d times, want %d each (one call per event)", g1.calls, g2.calls, len(statuses))
	}
	// g1: members 0-3 and 5-8 and the handed-over one, less member 0 for the first event.
	if want := []int{8, 9, 9, 9}; fmt.Sprint(g1.members) != fmt.Sprint(want) {
		t.Errorf("g1 named %v members per call, want %v", g1.members, want)
	}
	for i, m := range append(members, handed) {
		want := len(statuses)
		if i == 0 {
			want--
		}
		if len(m.got) != want || m.ends != 1 || m.err != nil {
			t.Errorf("member %d: %d events, %d ends (%v); want %d events, one nil end", i, len(m.got), m.ends, m.err, want)
		}
	}
	if len(plain.got) != len(statuses) || plain.ends != 1 {
		t.Errorf("plain subscriber: %d events, %d ends", len(plain.got), plain.ends)
	}
	if n := h.watchers(id); n != 0 {
		t.Errorf("%d watchers left after the terminal event", n)
	}
}
