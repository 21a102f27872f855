package broker

import (
	"sync"

	"github.com/google/uuid"
)

// The hub is the local half of fan-out, shared by both brokers, as
// centrifuge splits its Hub from its Broker: a broker decides what happened
// to an order (Memory from its store, Redis from its feed) and hands each
// event to the hub, which delivers it to this instance's subscribers of the
// order. The broker keeps what it alone knows: Memory its store (history,
// transitions, idempotency keys, expiry), Redis its feed's copy of the
// history and catch-up state (orderFeed).
//
// Lock order: a broker calls the hub with its own lock for the order held
// (Memory's store shard, Redis's feed lock), which is what makes "history,
// then registration" one step against a concurrent publish; the hub's shard
// locks are innermost, and under them the hub calls nothing but Subscriber
// methods.

// Subscriber is what the hub delivers one order's live events to. A
// Subscription is backed by one (chanSubscriber); a writer of pre-encoded
// frames straight to a socket can be another, without changing the hub.
//
// The hub calls both methods with the order's hub shard lock held (and, on
// a publish, the broker's own lock for the order, on Redis the feed's one
// lock for every order), so an implementation must:
//
//   - never block: Deliver hands the event over (into a bounded buffer, or a
//     non-blocking write that parks what does not fit) or refuses it, since
//     a publisher and every other subscriber of every order in the shard
//     wait meanwhile;
//   - never call back into the hub or a broker: it would deadlock;
//   - return false from Deliver when it cannot take ev: the hub then
//     removes it at once, calls End(ErrSlowSubscriber), and calls nothing
//     more. The subscriber resumes from the last event it did take.
//
// The hub delivers an order's events in order, none twice, only those after
// the position the subscriber was added at, and calls End at most once,
// after the last Deliver: nil after the order's terminal event or when the
// subscriber was removed, ErrSlowSubscriber as above, ErrClosed (or what the
// broker's Close passed) when the broker closes.
type Subscriber interface {
	Deliver(ev Event) bool
	End(err error)
}

// Group delivers one event to several subscribers at once. Subscribers
// that write to shared writers (sockets registered with one registry) take
// an event better as one batch, encoded once and handed to each writer
// once, than one by one. A subscriber joins a group by implementing
// GroupMember; the hub then hands it each event through its group's
// DeliverGroup, together with the order's other members of that group,
// instead of through Deliver.
type Group interface {
	// DeliverGroup hands ev to every one of members (each a GroupMember
	// whose Group is this one), under Subscriber's rules: never block,
	// never call back. A member cannot refuse an event: one that cannot
	// take it ends itself its own way (a registered socket is cut and
	// unsubscribes from its close hook). members is only valid during the
	// call.
	DeliverGroup(ev Event, members []Subscriber)
}

// GroupMember is a Subscriber that the hub delivers to through its Group.
// Deliver is still used for what a Subscription hands over (Handover's
// buffered events), End as for any Subscriber.
type GroupMember interface {
	Subscriber
	Group() Group
}

// groupOf is the group s is delivered through, and the member to name to
// it; nil for a subscriber delivered one by one. A Subscription's channel
// subscriber that has been handed over counts as the subscriber it
// forwards to.
func groupOf(s Subscriber) (Group, Subscriber) {
	if c, ok := s.(*chanSubscriber); ok {
		if c.next == nil {
			return nil, s
		}
		s = c.next
	}
	if m, ok := s.(GroupMember); ok {
		return m.Group(), s
	}
	return nil, s
}

// hubShardCount spreads orders over several locks so that a fan-out to a
// busy order's subscribers doesn't stall the fan-out to every other order.
const hubShardCount = 32

// hub holds each order's local subscribers. The zero value is not usable:
// see newHub.
type hub struct {
	shards [hubShardCount]hubShard
}

type hubShard struct {
	mu     sync.Mutex
	closed bool // once set, add refuses: a subscriber is either ended by close or never added
	orders map[uuid.UUID]map[Subscriber]*hubSub
	groups []hubGroup // publish's scratch: one event's members by group, reused
}

type hubGroup struct {
	g       Group
	members []Subscriber
}

// hubSub is a subscriber's place in its order: the last id it has, as
// history or live, so that an event at or before it is skipped (Redis
// serves history from a copy that can trail a subscriber's position).
type hubSub struct {
	pos EventID
}

func newHub() *hub {
	h := &hub{}
	for i := range h.shards {
		h.shards[i].orders = make(map[uuid.UUID]map[Subscriber]*hubSub)
	}
	return h
}

func (h *hub) shard(id uuid.UUID) *hubShard {
	return &h.shards[id[15]%hubShardCount] // the random bits of a v4 UUID
}

// add registers s for the order's events after pos; ErrClosed once the hub
// is closed (s is then not ended: the caller still owns it).
func (h *hub) add(id uuid.UUID, s Subscriber, pos EventID) error {
	sh := h.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.closed {
		return ErrClosed
	}
	subs := sh.orders[id]
	if subs == nil {
		subs = make(map[Subscriber]*hubSub)
		sh.orders[id] = subs
	}
	subs[s] = &hubSub{pos: pos}
	return nil
}

// remove unregisters s and ends it with nil; false if s was not registered
// (already ended by the hub, or never added).
func (h *hub) remove(id uuid.UUID, s Subscriber) bool {
	sh := h.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	subs := sh.orders[id]
	if _, ok := subs[s]; !ok {
		return false
	}
	delete(subs, s)
	if len(subs) == 0 {
		delete(sh.orders, id)
	}
	s.End(nil)
	return true
}

// publish delivers ev to its order's subscribers whose position is before
// it, cutting off those that cannot take it, and to group members in one
// call per group; after a terminal event it ends them all and forgets the
// order.
func (h *hub) publish(ev Event) {
	id := ev.Update.OrderID
	sh := h.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	subs := sh.orders[id]
	for s, hs := range subs {
		if ev.Pos.Compare(hs.pos) <= 0 {
			continue // it resumed after this one
		}
		if g, m := groupOf(s); g != nil {
			sh.addToGroup(g, m)
			hs.pos = ev.Pos
			continue
		}
		if !s.Deliver(ev) {
			delete(subs, s)
			s.End(ErrSlowSubscriber)
			continue
		}
		hs.pos = ev.Pos
	}
	// Before any End below, so a member's end follows its last event.
	for i := range sh.groups {
		gr := &sh.groups[i]
		gr.g.DeliverGroup(ev, gr.members)
		clear(gr.members)
		gr.members = gr.members[:0]
	}
	sh.groups = sh.groups[:0]
	if ev.Update.Status.Terminal() {
		for s := range subs {
			s.End(nil)
		}
		clear(subs)
	}
	if subs != nil && len(subs) == 0 {
		delete(sh.orders, id)
	}
}

// addToGroup lists m for g's call in this publish.
func (sh *hubShard) addToGroup(g Group, m Subscriber) {
	for i := range sh.groups {
		if sh.groups[i].g == g {
			sh.groups[i].members = append(sh.groups[i].members, m)
			return
		}
	}
	if len(sh.groups) < cap(sh.groups) { // reuse a slot's members slice
		sh.groups = sh.groups[:len(sh.groups)+1]
		gr := &sh.groups[len(sh.groups)-1]
		gr.g, gr.members = g, append(gr.members[:0], m)
		return
	}
	sh.groups = append(sh.groups, hubGroup{g: g, members: []Subscriber{m}})
}

// watchers counts the order's subscribers.
func (h *hub) watchers(id uuid.UUID) int {
	sh := h.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return len(sh.orders[id])
}

// close ends every subscriber with err and refuses later adds.
func (h *hub) close(err error) {
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		sh.closed = true
		for _, subs := range sh.orders {
			for s := range subs {
				s.End(err)
			}
		}
		clear(sh.orders)
		sh.mu.Unlock()
	}
}

// each calls fn with every order that has subscribers and their number;
// tests use it to prove nothing leaks. fn runs under a shard lock.
func (h *hub) each(fn func(id uuid.UUID, subscribers int)) {
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		for id, subs := range sh.orders {
			fn(id, len(subs))
		}
		sh.mu.Unlock()
	}
}

// locked calls fn with the order's shard lock held, so that fn happens
// between two of the order's deliveries (Subscription.Handover).
func (h *hub) locked(id uuid.UUID, fn func()) {
	sh := h.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	fn()
}
