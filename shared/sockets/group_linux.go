package sockets

import (
	"slices"
	"sync"
	"sync/atomic"
)

// Group is a set of a Registry's sockets that take the same frames (an
// order's streams), kept per loop: Broadcast hands each loop one job with
// its own members, so no loop looks at another's sockets. The lists are
// copy-on-write: Broadcast reads the current ones without a lock, and the
// loops keep what they were handed while membership changes. Its methods
// are safe for concurrent use.
//
// A socket is in at most one group, and leaves it by itself when its
// stream ends (lazily: the lists drop ended sockets once they are half of
// them, so a stream's end costs no copy of its order's list).
type Group struct {
	r    *Registry
	live atomic.Int64 // members whose stream has not ended

	mu    sync.Mutex
	lists atomic.Pointer[[][]*Socket] // by loop index; changed under mu
	size  int                         // sockets in lists, ended ones included
	ended int                         // of those, ended ones seen leaving (a hint for compacting)
}

// NewGroup returns an empty group of r's sockets.
func (r *Registry) NewGroup() *Group {
	g := &Group{r: r}
	lists := make([][]*Socket, len(r.loops))
	g.lists.Store(&lists)
	return g
}

// Add makes s, one of the group's Registry's sockets, a member: it gets
// every frame broadcast to the group after Add returns, in order with what
// it is sent otherwise. A socket in another group leaves that one.
func (g *Group) Add(s *Socket) {
	if s.l.r != g.r {
		panic("sockets: Group.Add of another Registry's socket")
	}
	old := s.group.Swap(g)
	if old == g {
		return
	}
	if old != nil {
		old.drop(s)
		old.live.Add(-1)
	}
	g.mu.Lock()
	lists := slices.Clone(*g.lists.Load())
	// In place when the array has room: the lists handed out before are
	// shorter and never see the new element.
	lists[s.l.idx] = append(lists[s.l.idx], s)
	g.size++
	g.lists.Store(&lists)
	g.mu.Unlock()
	g.live.Add(1)
	if s.dead.Load() { // it ended meanwhile, and its hook may have missed the group
		g.leave(s)
	}
}

// Remove takes s out of the group now, if it is a member: broadcasts after
// Remove returns do not reach it. A stream that ends leaves by itself;
// Remove is for one that leaves its group and stays open.
func (g *Group) Remove(s *Socket) {
	if s.group.CompareAndSwap(g, nil) {
		g.drop(s)
		g.live.Add(-1)
	}
}

// Len is how many members the group has whose streams have not ended.
func (g *Group) Len() int { return int(g.live.Load()) }

// Broadcast writes frame to every member, each after what it was handed
// before, without waiting: one job for each loop that holds members,
// carrying that loop's own list. frame is kept until written and must not
// be changed. A loop whose queue is full cuts its members as TooSlow.
func (g *Group) Broadcast(frame []byte) {
	for i, socks := range *g.lists.Load() {
		if len(socks) > 0 {
			g.r.loops[i].push(job{frame: frame, socks: socks})
		}
	}
}

// End writes last (if not empty) to every member after what it was handed
// before, then ends each as Socket.End does: one job per loop, where an
// End per member would queue one per stream (after an order's terminal
// event, thousands at once). Members added later are not ended.
func (g *Group) End(last []byte) {
	for i, socks := range *g.lists.Load() {
		if len(socks) > 0 {
			g.r.loops[i].push(job{frame: last, socks: socks, kind: jobEnd})
		}
	}
}

// drop rebuilds s's loop's list without s.
func (g *Group) drop(s *Socket) {
	g.mu.Lock()
	defer g.mu.Unlock()
	cur := *g.lists.Load()
	list := cur[s.l.idx]
	k := slices.Index(list, s)
	if k < 0 {
		return
	}
	lists := slices.Clone(cur)
	// A new array: the old one stays as the lists handed out see it.
	lists[s.l.idx] = slices.Concat(list[:k], list[k+1:])
	g.size--
	g.lists.Store(&lists)
}

// leave is a member's stream ending (from its close hook's worker): it
// stays in the lists, where the loops skip it, until ended sockets are half
// of them; then the lists are rebuilt without every ended one.
func (g *Group) leave(s *Socket) {
	if !s.group.CompareAndSwap(g, nil) {
		return
	}
	g.live.Add(-1)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.ended++
	if g.ended < 16 || 2*g.ended < g.size {
		return
	}
	cur := *g.lists.Load()
	lists := make([][]*Socket, len(cur))
	g.size = 0
	for i, list := range cur {
		for _, m := range list {
			if !m.dead.Load() {
				lists[i] = append(lists[i], m)
			}
		}
		g.size += len(lists[i])
	}
	g.ended = 0
	g.lists.Store(&lists)
}
