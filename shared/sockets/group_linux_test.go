package sockets

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"
)

type member struct {
	c      *net.TCPConn
	s      *Socket
	closed chan Reason
}

func members(t *testing.T, r *Registry, ln *net.TCPListener, n int) []member {
	t.Helper()
	var ms []member
	for range n {
		c, srv := connect(t, ln, 0)
		t.Cleanup(func() { c.Close() })
		s, closed := register(t, r, srv)
		ms = append(ms, member{c, s, closed})
	}
	return ms
}

// A group keeps its members per loop, and Broadcast reaches each member
// in order, and no one else; the lists handed out never change.
func TestGroupBroadcastHandsEachLoopItsOwnMembers(t *testing.T) {
	r := newRegistry(t, Options{Writers: 3, Heartbeat: time.Hour})
	ln := listen(t)
	ms := members(t, r, ln, 30)
	g := r.NewGroup()
	for _, m := range ms[:20] {
		g.Add(m.s)
	}
	g.Add(ms[0].s) // twice is once
	if n := g.Len(); n != 20 {
		t.Fatalf("Len %d, want 20", n)
	}
	lists := *g.lists.Load()
	held := 0
	for i, list := range lists {
		for _, s := range list {
			if s.l.idx != i {
				t.Fatalf("loop %d's list holds a socket of loop %d", i, s.l.idx)
			}
		}
		held += len(list)
	}
	if held != 20 {
		t.Fatalf("the lists hold %d sockets, want 20", held)
	}
	before := make([][]*Socket, len(lists))
	for i, list := range lists {
		before[i] = slices.Clone(list)
	}

	var want []byte
	for i := range 50 {
		want = append(want, frame(i)...)
		g.Broadcast(frame(i))
	}
	late := ms[20] // joins now: gets what comes after
	g.Add(late.s)
	g.Remove(ms[1].s) // leaves now: gets nothing more
	if n := g.Len(); n != 20 {
		t.Fatalf("Len %d after one in, one out, want 20", n)
	}
	for i, list := range lists { // copy-on-write: what was handed out stays
		if !slices.Equal(list, before[i]) {
			t.Fatalf("loop %d's list changed under a Broadcast that held it", i)
		}
	}
	var after []byte
	for i := 50; i < 60; i++ {
		after = append(after, frame(i)...)
		g.Broadcast(frame(i))
	}
	marker := []byte("marker\n")
	for i, m := range ms {
		m.s.Send(marker)
		var exp []byte
		switch {
		case i == 1:
			exp = want
		case i < 20:
			exp = append(bytes.Clone(want), after...)
		case i == 20:
			exp = after
		}
		exp = append(exp, marker...)
		if got := readExactly(t, m.c, len(exp)); !bytes.Equal(got, exp) {
			t.Errorf("socket %d got %d bytes, not the %d it should", i, len(got), len(exp))
		}
	}
}

// Group.End writes the last frame to every member and ends it, one job per
// loop; ended members leave the group, whose lists drop them once they
// are half; a socket moved to another group gets that one's frames.
func TestGroupEndAndMembersThatLeave(t *testing.T) {
	r := newRegistry(t, Options{Writers: 2, Heartbeat: time.Hour})
	ln := listen(t)
	ms := members(t, r, ln, 40)
	g, other := r.NewGroup(), r.NewGroup()
	for _, m := range ms {
		g.Add(m.s)
	}
	moved := ms[39]
	other.Add(moved.s)
	if g.Len() != 39 || other.Len() != 1 {
		t.Fatalf("Len %d and %d, want 39 and 1", g.Len(), other.Len())
	}
	// 30 clients leave: their streams end and leave the group.
	for _, m := range ms[:30] {
		m.c.Close()
		if why := reason(t, m.closed, patience); why != ClientGone {
			t.Fatalf("closed with %v", why)
		}
	}
	waitFor(t, "the group to drop the streams that ended", func() bool {
		size := 0
		for _, list := range *g.lists.Load() {
			size += len(list)
		}
		return g.Len() == 9 && size < 39
	})
	g.Broadcast(frame(1))
	g.End([]byte("end\n"))
	g.Broadcast(frame(2)) // after the end: dropped
	other.Broadcast(frame(3))
	want := append(frame(1), "end\n"...)
	for i, m := range ms[30:39] {
		_ = m.c.SetReadDeadline(time.Now().Add(patience))
		got, err := io.ReadAll(m.c)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("member %d read %q, %v; want %q and EOF", i, got, err, want)
		}
		if why := reason(t, m.closed, patience); why != Ended {
			t.Errorf("member %d closed with %v, want %v", i, why, Ended)
		}
	}
	if got := readExactly(t, moved.c, len(frame(3))); !bytes.Equal(got, frame(3)) {
		t.Errorf("the moved socket got %q", got)
	}
	waitFor(t, "the ended members to leave", func() bool { return g.Len() == 0 })
	if st := r.Stats(); st.Registered != 1 || st.Ended != 9 || st.Gone != 30 {
		t.Errorf("stats %+v, want 1 registered, 9 ended, 30 gone", st)
	}
}

// A socket that ends before it is added leaves the group at once.
func TestGroupAddOfAnEndedSocket(t *testing.T) {
	r := newRegistry(t, Options{Heartbeat: time.Hour})
	ln := listen(t)
	m := members(t, r, ln, 1)[0]
	m.c.Close()
	reason(t, m.closed, patience)
	g := r.NewGroup()
	g.Add(m.s)
	waitFor(t, "the ended socket to leave", func() bool { return g.Len() == 0 })
	g.Broadcast(frame(1)) // reaches nothing, harms nothing
	g.End(nil)
	if st := r.Stats(); st.Registered != 0 || st.Gone != 1 {
		t.Errorf("stats %+v", st)
	}
}

// An order's end reaches all its subscribers before any of them is ended:
// a loop writes the last frame to every member of a Group.End (alone, or
// in a burst the loop takes as one batch) and only then shuts each down,
// so the last member's client does not wait for the others' shutdowns.
// Every client still reads all its frames, the last one, and a clean EOF
// (no reset, even with bytes of its own left unread), and nothing that
// comes after the end.
func TestGroupEndWritesEveryLastFrameBeforeEndingAny(t *testing.T) {
	for _, burst := range []bool{false, true} {
		name := "alone"
		if burst {
			name = "in a burst"
		}
		t.Run(name, func(t *testing.T) {
			var (
				mu         sync.Mutex
				ms         []member
				endedEarly []string
				checks     int
			)
			// On the loop, as it ends one of its sockets: none of its
			// other members may still be waiting for its last frame.
			ending := func(s *Socket) {
				mu.Lock()
				defer mu.Unlock()
				checks++
				for i, m := range ms {
					if m.s.l == s.l && m.s.state == open {
						endedEarly = append(endedEarly, fmt.Sprintf("member %d still open as another one ends", i))
					}
				}
			}
			r := newRegistry(t, Options{Writers: 2, Heartbeat: time.Hour, ending: ending})
			ln := listen(t)
			all := members(t, r, ln, 120)
			g := r.NewGroup()
			for i, m := range all {
				g.Add(m.s)
				if i%7 == 0 { // bytes the server never reads before it ends the stream
					if _, err := m.c.Write([]byte("unread\r\n")); err != nil {
						t.Fatal(err)
					}
				}
			}
			mu.Lock()
			ms = all
			mu.Unlock()

			var want []byte
			if burst { // queued while the loops are busy: each takes them as one batch
				var releases []func()
				for _, l := range r.loops {
					releases = append(releases, holdLoop(t, l))
				}
				for i := range 3 {
					want = append(want, frame(i)...)
					g.Broadcast(frame(i))
				}
				g.End([]byte("end\n"))
				for _, release := range releases {
					release()
				}
			} else {
				g.End([]byte("end\n"))
			}
			want = append(want, "end\n"...)
			g.Broadcast(frame(9)) // after the end: reaches no one

			for i, m := range all {
				_ = m.c.SetReadDeadline(time.Now().Add(patience))
				got, err := io.ReadAll(m.c)
				if err != nil || !bytes.Equal(got, want) {
					t.Errorf("member %d read %q, %v; want %q and EOF", i, got, err, want)
				}
				if why := reason(t, m.closed, patience); why != Ended {
					t.Errorf("member %d closed with %v, want %v", i, why, Ended)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if checks != len(all) {
				t.Errorf("%d members ended, want %d", checks, len(all))
			}
			if len(endedEarly) > 0 {
				t.Errorf("%d times a member was ended before another had its last frame; first: %s", len(endedEarly), endedEarly[0])
			}
			waitFor(t, "the ended members to leave", func() bool { return g.Len() == 0 })
			if st := r.Stats(); st.Registered != 0 || st.Ended != uint64(len(all)) {
				t.Errorf("stats %+v, want 0 registered, %d ended", st, len(all))
			}
		})
	}
}
