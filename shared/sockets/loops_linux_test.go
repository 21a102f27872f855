package sockets

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A client that keeps sending bytes the server never asked for still
// reads every frame, the last one and a clean EOF when the server ends its
// stream: the server shuts its write side down and reads on until the
// client's EOF, where closing at once with the client's bytes unread would
// reset the connection and drop what was still on its way.
func TestEndWithUnreadClientBytesDeliversTheLastFrameAndEOF(t *testing.T) {
	r := newRegistry(t, Options{Heartbeat: time.Hour, MaxReceive: -1, Linger: patience})
	ln := listen(t)
	for round := range 5 {
		c, srv := connect(t, ln, 4096) // small buffers: the end waits in pending
		s, closed := register(t, r, srv)
		var want []byte
		for i := range 64 {
			f := append(bytes.Repeat([]byte{'.'}, 1000), frame(i)...)
			s.Send(f)
			want = append(want, f...)
		}
		last := []byte("event: end\ndata: terminal\n\n")
		s.End(last)
		want = append(want, last...)

		// The client talks throughout, until it has read the end.
		stop := make(chan struct{})
		talked := make(chan error, 1)
		go func() {
			junk := bytes.Repeat([]byte("GET / HTTP/1.1\r\n"), 16)
			for {
				select {
				case <-stop:
					talked <- nil
					return
				default:
				}
				if _, err := c.Write(junk); err != nil {
					talked <- err
					return
				}
				time.Sleep(100 * time.Microsecond)
			}
		}()
		time.Sleep(20 * time.Millisecond) // the server parks, the client's bytes pile up
		_ = c.SetReadDeadline(time.Now().Add(patience))
		got, err := io.ReadAll(c)
		close(stop)
		if err != nil {
			t.Fatalf("round %d: read %d of %d bytes, then %v; want every frame and EOF", round, len(got), len(want), err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("round %d: read %d bytes ending %q, want %d ending %q", round, len(got), tail(got), len(want), tail(want))
		}
		if err := <-talked; err != nil {
			t.Logf("round %d: the client's writes ended with %v", round, err)
		}
		c.Close()
		if why := reason(t, closed, patience); why != Ended {
			t.Errorf("round %d: closed with %v, want %v", round, why, Ended)
		}
	}
	waitFor(t, "the lingering descriptors to close on the clients' EOF", func() bool { return r.Stats().Lingering == 0 })
}

func tail(b []byte) []byte { return b[max(0, len(b)-30):] }

// Bytes a client sends after its request are read a bounded amount per
// wakeup, never until EAGAIN on the loop that other streams share, and a
// client that sends more than MaxReceive in all is ended.
func TestClientFloodIsReadInBoundedAmounts(t *testing.T) {
	flood := func(c net.Conn) (stop func()) {
		done := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			junk := bytes.Repeat([]byte("x"), 64<<10)
			for {
				select {
				case <-done:
					return
				default:
				}
				_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
				if _, err := c.Write(junk); err != nil && !errors.Is(err, net.ErrClosed) && !isTimeout(err) {
					return
				}
			}
		})
		return func() { close(done); wg.Wait() }
	}
	t.Run("unbounded in all, bounded per wakeup", func(t *testing.T) {
		r := newRegistry(t, Options{Writers: 1, Heartbeat: time.Hour, MaxReceive: -1})
		ln := listen(t)
		fc, srv := connect(t, ln, 0)
		defer fc.Close()
		_, floodClosed := register(t, r, srv)
		stop := flood(fc)
		defer stop()
		c, srv := connect(t, ln, 0)
		defer c.Close()
		s, _ := register(t, r, srv)
		// Another stream of the same loop is served throughout.
		for i := range 200 {
			s.Send(frame(i))
			if got := readExactly(t, c, len(frame(i))); !bytes.Equal(got, frame(i)) {
				t.Fatalf("frame %d: got %q", i, got)
			}
		}
		var received int64
		most := 0
		onLoops(t, r, func(l *loop) { most, received = l.mostRead, l.slots[1].received })
		if most > readsPerWake*readBuf {
			t.Errorf("read %d bytes from one socket in one wakeup, want at most %d", most, readsPerWake*readBuf)
		}
		if received < readsPerWake*readBuf {
			t.Errorf("the flood was read %d bytes in all: want more than one wakeup's worth", received)
		}
		select {
		case why := <-floodClosed:
			t.Errorf("the flooding stream was closed (%v) with no MaxReceive", why)
		default:
		}
	})
	t.Run("ended past MaxReceive", func(t *testing.T) {
		const limit = 256 << 10
		r := newRegistry(t, Options{Writers: 1, Heartbeat: time.Hour, MaxReceive: limit})
		ln := listen(t)
		fc, srv := connect(t, ln, 0)
		defer fc.Close()
		_, floodClosed := register(t, r, srv)
		c, srv := connect(t, ln, 0)
		defer c.Close()
		s, otherClosed := register(t, r, srv)
		stop := flood(fc)
		defer stop()
		if why := reason(t, floodClosed, patience); why != TooMuchInput {
			t.Errorf("the flooding stream closed with %v, want %v", why, TooMuchInput)
		}
		s.Send(frame(1))
		if got := readExactly(t, c, len(frame(1))); !bytes.Equal(got, frame(1)) {
			t.Fatalf("the other stream got %q", got)
		}
		select {
		case why := <-otherClosed:
			t.Errorf("the other stream closed: %v", why)
		default:
		}
		if st := r.Stats(); st.Cut != 1 || st.Registered != 1 {
			t.Errorf("stats %+v, want 1 cut and 1 registered", st)
		}
	})
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// A close hook that blocks (a lock held elsewhere, a full log pipe) holds
// up no other stream: not their frames, not their ends, not their hooks,
// not new registrations.
func TestBlockingCloseHookDelaysNoOtherStream(t *testing.T) {
	r, err := New(testOptions(Options{Writers: 1, Heartbeat: time.Hour}))
	if err != nil {
		t.Fatal(err)
	}
	ln := listen(t)
	unblock := make(chan struct{})
	blocked := make(chan struct{})
	defer func() {
		close(unblock)
		r.Close()
	}()
	a, srv := connect(t, ln, 0)
	if _, err := r.Register(srv, Registration{OnClose: func(Reason, int64) { close(blocked); <-unblock }}); err != nil {
		t.Fatal(err)
	}
	b, srv := connect(t, ln, 0)
	defer b.Close()
	sb, bClosed := register(t, r, srv)
	d, srv := connect(t, ln, 0)
	_, dClosed := register(t, r, srv)

	a.Close()
	select {
	case <-blocked:
	case <-time.After(patience):
		t.Fatal("the first stream's hook was not called")
	}
	// While that hook blocks:
	sb.Send(frame(1))
	if got := readExactly(t, b, len(frame(1))); !bytes.Equal(got, frame(1)) {
		t.Fatalf("another stream got %q", got)
	}
	e, srv := connect(t, ln, 0)
	defer e.Close()
	se, err := r.Register(srv, Registration{First: []byte("first")})
	if err != nil {
		t.Fatal(err)
	}
	if got := readExactly(t, e, 5); string(got) != "first" {
		t.Fatalf("a new stream got %q", got)
	}
	se.Send(frame(2))
	readExactly(t, e, len(frame(2)))
	d.Close()
	if why := reason(t, dClosed, patience); why != ClientGone {
		t.Errorf("a client that left: %v, want %v", why, ClientGone)
	}
	sb.End(frame(3))
	if got := readExactly(t, b, len(frame(3))); !bytes.Equal(got, frame(3)) {
		t.Fatalf("an ended stream got %q", got)
	}
	if why := reason(t, bClosed, patience); why != Ended {
		t.Errorf("an ended stream: %v, want %v", why, Ended)
	}
}

// Padding (FrameOverhead) does not count against MaxPending: a reader
// that parks behind a few padded frames and then reads is not cut, and
// a reader that falls behind by more than MaxPending of content is.
func TestPaddingDoesNotMakeAParkedReaderSlow(t *testing.T) {
	const pad, content = 32 << 10, 100
	padded := func(i int) []byte {
		f := fmt.Appendf(nil, "id: %d\ndata: %s\n\n", i, bytes.Repeat([]byte{'c'}, content-20))
		return append(f, append([]byte(": "), append(bytes.Repeat([]byte{'p'}, pad-3), '\n')...)...)
	}
	keep := append(bytes.Clone(keepAlive), padded(0)[len(padded(0))-pad:]...)
	run := func(t *testing.T, overhead, frames int) (Reason, []byte) {
		r := newRegistry(t, Options{MaxPending: 16 << 10, FrameOverhead: overhead, Heartbeat: 20 * time.Millisecond, KeepAlive: keep})
		ln := listen(t)
		c, srv := connect(t, ln, 4096)
		defer c.Close()
		s, closed := register(t, r, srv)
		for i := range frames {
			s.Send(padded(i))
		}
		waitFor(t, "the socket to park", func() bool { return r.Stats().Parked == 1 || len(closed) > 0 })
		time.Sleep(100 * time.Millisecond) // parked through a few heartbeats
		want := 0
		for i := range frames {
			want += len(padded(i))
		}
		var got bytes.Buffer
		_ = c.SetReadDeadline(time.Now().Add(patience))
		buf := make([]byte, 64<<10)
		for len(bytes.ReplaceAll(got.Bytes(), keep, nil)) < want {
			n, err := c.Read(buf)
			got.Write(buf[:n])
			if err != nil {
				break
			}
		}
		select {
		case why := <-closed:
			return why, got.Bytes()
		case <-time.After(200 * time.Millisecond): // heartbeats come and go meanwhile
			return none, got.Bytes()
		}
	}
	t.Run("a reader that keeps up", func(t *testing.T) {
		const frames = 20 // 640 KiB with padding, 2,000 bytes of content
		why, got := run(t, pad, frames)
		if why != none {
			t.Fatalf("closed with %v", why)
		}
		got = bytes.ReplaceAll(got, keep, nil)
		var want []byte
		for i := range frames {
			want = append(want, padded(i)...)
		}
		if !bytes.HasPrefix(got, want) {
			t.Fatalf("read %d bytes (heartbeats taken out), not the %d of the frames in order", len(got), len(want))
		}
	})
	t.Run("the same reader, padding counted", func(t *testing.T) {
		if why, _ := run(t, 0, 20); why != TooSlow {
			t.Fatalf("closed with %v, want %v: what FrameOverhead is for", why, TooSlow)
		}
	})
	t.Run("a reader more than MaxPending of content behind", func(t *testing.T) {
		if why, _ := run(t, pad, 400); why != TooSlow { // 40,000 bytes of content
			t.Fatalf("closed with %v, want %v", why, TooSlow)
		}
	})
}

// A loop's queue is bounded: a frame that finds it full is not queued, the
// sockets it was for on that loop are cut as TooSlow (after the frames
// queued before it, then a clean EOF: their clients resume from their last
// event id), the publisher returns at once, and the loop's other sockets
// are not touched.
func TestFullQueueCutsItsSocketsAndNeverBlocksAPublisher(t *testing.T) {
	r := newRegistry(t, Options{Writers: 1, QueueLen: 4, Heartbeat: time.Hour})
	ln := listen(t)
	g := r.NewGroup()
	type stream struct {
		c      *net.TCPConn
		s      *Socket
		closed chan Reason
	}
	open := func() stream {
		c, srv := connect(t, ln, 0)
		t.Cleanup(func() { c.Close() })
		s, closed := register(t, r, srv)
		return stream{c, s, closed}
	}
	a, a2, b, c := open(), open(), open(), open()
	g.Add(a.s)
	g.Add(a2.s)
	onLoops(t, r, func(*loop) {}) // registered

	release := holdLoop(t, r.loops[0])
	published := make(chan struct{})
	go func() {
		defer close(published)
		for i := range 4 {
			g.Broadcast(frame(i)) // fills the queue
		}
		g.Broadcast(frame(4)) // no room: a and a2 are cut
		g.Broadcast(frame(5))
		c.s.Send(frame(6)) // no room: c is cut
		c.s.End(frame(7))
	}()
	select {
	case <-published:
	case <-time.After(patience):
		t.Fatal("a publisher waited for a loop that was busy")
	}
	if st := r.Stats(); st.Overflowed != 3 {
		t.Errorf("%d streams overflowed, want 3", st.Overflowed)
	}
	release()
	var want []byte
	for i := range 4 {
		want = append(want, frame(i)...)
	}
	for name, st := range map[string]stream{"a": a, "a2": a2} {
		_ = st.c.SetReadDeadline(time.Now().Add(patience))
		got, err := io.ReadAll(st.c)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s read %q, %v; want the 4 queued frames and EOF", name, got, err)
		}
		if why := reason(t, st.closed, patience); why != TooSlow {
			t.Errorf("%s closed with %v, want %v", name, why, TooSlow)
		}
	}
	_ = c.c.SetReadDeadline(time.Now().Add(patience))
	if got, err := io.ReadAll(c.c); err != nil || len(got) > 0 {
		t.Errorf("c read %q, %v; want EOF", got, err)
	}
	if why := reason(t, c.closed, patience); why != TooSlow {
		t.Errorf("c closed with %v, want %v", why, TooSlow)
	}
	// b was not in the way of anything, and the queue takes frames again.
	b.s.Send(frame(8))
	if got := readExactly(t, b.c, len(frame(8))); !bytes.Equal(got, frame(8)) {
		t.Errorf("b got %q", got)
	}
	select {
	case why := <-b.closed:
		t.Errorf("b closed: %v", why)
	default:
	}
	if st := r.Stats(); st.Cut != 3 || st.Registered != 1 {
		t.Errorf("stats %+v, want 3 cut, 1 registered", st)
	}
	if n := g.Len(); n != 0 {
		waitFor(t, "the cut streams to leave their group", func() bool { return g.Len() == 0 })
	}
}

// Many sockets on several loops, and from many goroutines at once:
// group broadcasts, sends, ends, registrations, group changes, clients
// leaving. Every client reads whole frames, each publisher's frames to a
// group in order and without a gap while it is a member, each sender's in
// order, nothing after its end; every hook runs once; Close leaves nothing.
func TestLoopsOwnTheirSocketsUnderConcurrency(t *testing.T) {
	before := loopsBefore(t)
	r, err := New(testOptions(Options{Writers: 4, Heartbeat: 20 * time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	ln := listen(t)
	const (
		groups     = 8
		publishers = 4
		senders    = 2
		rounds     = 300
	)
	gs := make([]*Group, groups)
	for i := range gs {
		gs[i] = r.NewGroup()
	}
	type client struct {
		c    *net.TCPConn
		s    *Socket
		got  chan []byte // everything it read, once it hit EOF or an error
		why  atomic.Int32
		hook atomic.Int32
		left atomic.Bool // the client closed its end: what it read may stop anywhere
	}
	var (
		mu      sync.Mutex
		clients []*client
		readers sync.WaitGroup
	)
	register := func(rnd *rand.Rand) {
		c, srv := connect(t, ln, 0)
		cl := &client{c: c, got: make(chan []byte, 1)}
		s, err := r.Register(srv, Registration{OnClose: func(why Reason, _ int64) {
			cl.why.Store(int32(why))
			if cl.hook.Add(1) > 1 {
				t.Errorf("a close hook ran twice")
			}
		}})
		if err != nil {
			t.Error(err)
			c.Close()
			return
		}
		cl.s = s
		gs[rnd.IntN(groups)].Add(s)
		readers.Go(func() {
			_ = c.SetReadDeadline(time.Now().Add(2 * patience))
			b, _ := io.ReadAll(c)
			cl.got <- b
		})
		mu.Lock()
		clients = append(clients, cl)
		mu.Unlock()
	}
	pick := func(rnd *rand.Rand) *client {
		mu.Lock()
		defer mu.Unlock()
		return clients[rnd.IntN(len(clients))]
	}
	seed := rand.New(rand.NewPCG(1, 2))
	for range 100 {
		register(seed)
	}
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Go(func() {
			rnd := rand.New(rand.NewPCG(uint64(p), 10))
			seq := make([]int, groups)
			for range rounds {
				g := rnd.IntN(groups)
				gs[g].Broadcast(fmt.Appendf(nil, "P%d G%d %d\n", p, g, seq[g]))
				seq[g]++
			}
		})
	}
	for sd := range senders {
		wg.Go(func() {
			rnd := rand.New(rand.NewPCG(uint64(sd), 20))
			for i := range rounds {
				pick(rnd).s.Send(fmt.Appendf(nil, "S%d %d\n", sd, i))
			}
		})
	}
	wg.Go(func() { // registrations
		rnd := rand.New(rand.NewPCG(3, 30))
		for range 50 {
			register(rnd)
		}
	})
	wg.Go(func() { // ends, group removals, clients leaving
		rnd := rand.New(rand.NewPCG(4, 40))
		for i := range 90 {
			cl := pick(rnd)
			switch i % 3 {
			case 0:
				cl.s.End([]byte("END\n"))
			case 1:
				if g := cl.s.group.Load(); g != nil {
					g.Remove(cl.s)
				}
			case 2:
				cl.left.Store(true)
				cl.c.Close()
			}
			runtime.Gosched()
		}
	})
	wg.Wait()
	mu.Lock()
	all := clients
	mu.Unlock()
	for _, cl := range all {
		cl.s.End([]byte("END\n"))
	}
	readers.Wait()
	for i, cl := range all {
		got := <-cl.got
		if cl.left.Load() {
			got = got[:bytes.LastIndexByte(got, '\n')+1]
		}
		if err := checkStream(got); err != nil {
			t.Errorf("client %d: %v", i, err)
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	for i, cl := range all {
		if n := cl.hook.Load(); n != 1 {
			t.Errorf("client %d: hook ran %d times", i, n)
		}
		if why := Reason(cl.why.Load()); why != Ended && why != ClientGone {
			t.Errorf("client %d: closed with %v", i, why)
		}
	}
	if st := r.Stats(); st.Registered != 0 || st.Lingering != 0 || st.Parked != 0 || st.Cut != 0 {
		t.Errorf("after Close: %+v", st)
	}
	loopsExit(t, before)
}

// checkStream checks what a client of the concurrency test read: whole
// lines; per publisher and group, numbers that go up by one (a member
// gets every broadcast from when it joined until it left); per sender,
// numbers that go up; nothing after END.
func checkStream(b []byte) error {
	last := map[string]int{}
	ended := false
	for line := range strings.Lines(string(b)) {
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "", line == ": keep-alive":
			continue
		case ended:
			return fmt.Errorf("%q after END", line)
		case line == "END":
			ended = true
			continue
		}
		f := strings.Fields(line)
		n, err := strconv.Atoi(f[len(f)-1])
		if err != nil || (len(f) != 3 && len(f) != 2) {
			return fmt.Errorf("a torn or foreign line %q", line)
		}
		key := strings.Join(f[:len(f)-1], " ")
		prev, seen := last[key]
		switch {
		case seen && f[0][0] == 'P' && n != prev+1:
			return fmt.Errorf("%s: %d after %d", key, n, prev)
		case seen && n <= prev:
			return fmt.Errorf("%s: %d after %d", key, n, prev)
		}
		last[key] = n
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		return fmt.Errorf("a torn last line %q", tail(b))
	}
	return nil
}

// Close, with streams in every state (idle, parked, ending behind a
// parked write, lingering for their client, just registered), closes every
// descriptor, runs every hook once, and returns with every goroutine it
// started gone.
func TestCloseDrainsEveryStateAndEveryGoroutineExits(t *testing.T) {
	ln := listen(t)
	loops := loopsBefore(t)
	fds, goroutines := openFDs(t), runtime.NumGoroutine()
	r, err := New(testOptions(Options{Writers: 2, Heartbeat: time.Hour, Linger: time.Hour}))
	if err != nil {
		t.Fatal(err)
	}
	var hooks sync.Map
	var clients []*net.TCPConn
	open := func(name string, rcvbuf int) *Socket {
		c, srv := connect(t, ln, rcvbuf)
		clients = append(clients, c)
		s, err := r.Register(srv, Registration{First: []byte(name + "\n"), OnClose: func(why Reason, _ int64) {
			time.Sleep(10 * time.Millisecond) // hooks take time
			if _, dup := hooks.LoadOrStore(name, why); dup {
				t.Errorf("%s: hook ran twice", name)
			}
		}})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	open("idle", 0)
	parked := open("parked", 4096)
	ending := open("ending", 4096)
	lingering := open("lingering", 0)
	for range 100 {
		parked.Send(bytes.Repeat([]byte{'z'}, 1000))
		ending.Send(bytes.Repeat([]byte{'z'}, 1000))
	}
	ending.End(nil)
	lingering.End([]byte("bye\n"))
	waitFor(t, "two parked, one lingering", func() bool {
		st := r.Stats()
		return st.Parked == 2 && st.Lingering == 1
	})
	release := holdLoop(t, r.loops[1])
	var late []*Socket
	for i := range 4 { // queued behind the held loop when Close begins
		late = append(late, open(fmt.Sprintf("late%d", i), 0))
	}
	closed := make(chan struct{})
	go func() { r.Close(); close(closed) }()
	time.Sleep(20 * time.Millisecond)
	// The clients read to their EOF and close, as EventSource does: the
	// lingering descriptors close on that, long before Options.Linger.
	read := make([]chan error, len(clients))
	for i, c := range clients {
		read[i] = make(chan error, 1)
		go func() {
			_ = c.SetReadDeadline(time.Now().Add(patience))
			_, err := io.Copy(io.Discard, c)
			c.Close()
			read[i] <- err
		}()
	}
	release()
	select {
	case <-closed:
	case <-time.After(patience):
		t.Fatal("Close did not return")
	}
	want := map[string]Reason{"idle": Shutdown, "parked": Shutdown, "ending": Shutdown, "lingering": Ended,
		"late0": Shutdown, "late1": Shutdown, "late2": Shutdown, "late3": Shutdown}
	for name, why := range want {
		if got, ok := hooks.Load(name); !ok || got.(Reason) != why {
			t.Errorf("%s: hook got %v (ran: %v), want %v", name, got, ok, why)
		}
	}
	for i := range clients {
		if err := <-read[i]; err != nil {
			t.Errorf("client %d: %v, want EOF", i, err)
		}
	}
	if st := r.Stats(); st != (Stats{Ended: 1, Heartbeats: st.Heartbeats}) {
		t.Errorf("after Close: %+v", st)
	}
	loopsExit(t, loops)
	waitFor(t, "no more goroutines than before New", func() bool { return runtime.NumGoroutine() <= goroutines })
	waitFor(t, "no more descriptors than before New", func() bool { return openFDs(t) <= fds })
	_ = late
}
