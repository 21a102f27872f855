package sockets

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"weak"
)

// patience bounds every wait in these tests: far beyond what a loaded box
// needs, so that only a real hang fails them.
const patience = 30 * time.Second

// keepAlive is the heartbeat the tests' registries send.
var keepAlive = []byte(": keep-alive\n\n")

// testOptions is opts with the streams' settings it leaves zero set as the
// service's defaults (New requires them).
func testOptions(opts Options) Options {
	if opts.Heartbeat == 0 {
		opts.Heartbeat = 15 * time.Second
	}
	if opts.WriteTimeout == 0 {
		opts.WriteTimeout = 10 * time.Second
	}
	if opts.KeepAlive == nil {
		opts.KeepAlive = keepAlive
	}
	return opts
}

func newRegistry(t testing.TB, opts Options) *Registry {
	t.Helper()
	r, err := New(testOptions(opts))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func listen(t testing.TB) *net.TCPListener {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// connect dials ln and accepts, without a goroutine; rcvbuf > 0 shrinks
// the client's receive buffer (and the server's send buffer) so that a
// client that does not read fills them quickly.
func connect(t testing.TB, ln *net.TCPListener, rcvbuf int) (client, server *net.TCPConn) {
	t.Helper()
	d := net.Dialer{Timeout: patience}
	if rcvbuf > 0 {
		d.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
			})
			return errors.Join(err, serr)
		}
	}
	c, err := d.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	if rcvbuf > 0 {
		if err := s.SetWriteBuffer(rcvbuf); err != nil {
			t.Fatal(err)
		}
	}
	return c.(*net.TCPConn), s
}

// register takes over server; the channel gets the close reason.
func register(t testing.TB, r *Registry, server *net.TCPConn) (*Socket, chan Reason) {
	t.Helper()
	closed := make(chan Reason, 1)
	s, err := r.Register(server, Registration{OnClose: func(why Reason, _ int64) { closed <- why }})
	if err != nil {
		t.Fatal(err)
	}
	return s, closed
}

func readExactly(t testing.TB, c net.Conn, n int) []byte {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(patience))
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("read %d bytes: %v", n, err)
	}
	return b
}

func waitFor(t testing.TB, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func reason(t testing.TB, closed <-chan Reason, within time.Duration) Reason {
	t.Helper()
	select {
	case why := <-closed:
		return why
	case <-time.After(within):
		t.Fatalf("no close within %v", within)
		return none
	}
}

func frame(i int) []byte {
	return fmt.Appendf(nil, "id: %d\nevent: order-update\ndata: {\"n\":%d}\n\n", i, i)
}

func TestBroadcastReachesEverySocketInOrder(t *testing.T) {
	r := newRegistry(t, Options{Writers: 3})
	ln := listen(t)
	const sockets, frames = 100, 200
	var clients []*net.TCPConn
	var socks []*Socket
	for range sockets {
		c, srv := connect(t, ln, 0)
		defer c.Close()
		s, _ := register(t, r, srv)
		clients, socks = append(clients, c), append(socks, s)
	}
	var want []byte
	for i := range frames {
		f := frame(i)
		want = append(want, f...)
		if i%10 == 9 {
			socks[i%sockets].Send(frame(-i)) // one socket's own frame, between broadcasts
			r.Broadcast(f, socks)
			continue
		}
		r.Broadcast(f, socks)
	}
	for i, c := range clients {
		got := readExactly(t, c, len(want)+extra(i, sockets, frames))
		got = dropOwn(got, i, sockets, frames)
		if !bytes.Equal(got, want) {
			t.Fatalf("socket %d got frames out of order or missing", i)
		}
	}
}

// extra and dropOwn account for the frames Send gave one socket of the
// broadcast test, which must come exactly between the broadcasts around them.
func extra(i, sockets, frames int) int {
	n := 0
	for f := range frames {
		if f%10 == 9 && f%sockets == i {
			n += len(frame(-f))
		}
	}
	return n
}

func dropOwn(got []byte, i, sockets, frames int) []byte {
	for f := range frames {
		if f%10 == 9 && f%sockets == i {
			own := append(frame(f-1), frame(-f)...)
			got = bytes.Replace(got, own, frame(f-1), 1)
		}
	}
	return got
}

func TestIdleSocketsAddNoGoroutines(t *testing.T) {
	r := newRegistry(t, Options{})
	ln := listen(t)
	before := runtime.NumGoroutine()
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	for range 1000 {
		c, srv := connect(t, ln, 0)
		defer c.Close()
		register(t, r, srv)
	}
	if got := r.Stats().Registered; got != 1000 {
		t.Fatalf("registered %d, want 1000", got)
	}
	runtime.GC()
	runtime.ReadMemStats(&m1)
	// For the record, not a limit: the registry's heap per socket, plus
	// the test's own client net.TCPConn.
	t.Logf("heap per idle registered socket, its client conn included: %d bytes",
		(int64(m1.HeapAlloc)-int64(m0.HeapAlloc))/1000)
	// A small constant: nothing per socket. (Go's net starts no goroutine
	// per connection either, so any growth here would be the registry's.)
	if after := runtime.NumGoroutine(); after > before+2 {
		t.Errorf("1,000 idle sockets: %d goroutines, %d before", after, before)
	}
}

func TestStalledReaderIsCutAtTheWriteDeadline(t *testing.T) {
	const timeout = 3 * time.Second
	r := newRegistry(t, Options{WriteTimeout: timeout, MaxPending: 8 << 20, Heartbeat: time.Hour})
	ln := listen(t)
	stalled, srv := connect(t, ln, 4096)
	defer stalled.Close() // never read
	slow, slowClosed := register(t, r, srv)
	socks := []*Socket{slow}
	var readers []*net.TCPConn
	for range 10 {
		c, srv := connect(t, ln, 0)
		defer c.Close()
		s, _ := register(t, r, srv)
		socks, readers = append(socks, s), append(readers, c)
	}
	payload := bytes.Repeat([]byte("x"), 1000)
	f := append(append([]byte("data: "), payload...), "\n\n"...)
	const frames = 300
	for range frames {
		r.Broadcast(f, socks)
	}
	// The publisher is back before the stalled socket is cut: it never
	// waited for it.
	if s := r.Stats(); s.Cut != 0 || s.Registered != 11 {
		t.Fatalf("after publishing: %+v; want the stalled socket parked, not yet cut", s)
	}
	var wg sync.WaitGroup
	got := make([]time.Time, len(readers))
	for i, c := range readers {
		wg.Go(func() {
			b := readExactly(t, c, frames*len(f))
			if !bytes.Equal(b, bytes.Repeat(f, frames)) {
				t.Errorf("reader %d: frames corrupted", i)
			}
			got[i] = time.Now()
		})
	}
	waitFor(t, "the stalled socket to park", func() bool { return r.Stats().Parked >= 1 })
	if why := reason(t, slowClosed, timeout+patience); why != WriteTimeout {
		t.Errorf("stalled socket closed with %v, want %v", why, WriteTimeout)
	}
	cutAt := time.Now()
	wg.Wait()
	for i, at := range got {
		if at.After(cutAt) {
			t.Errorf("reader %d got its last frame after the stalled socket was cut", i)
		}
	}
	if s := r.Stats(); s.Cut != 1 || s.Parked != 0 || s.Registered != 10 {
		t.Errorf("after the cut: %+v; want 1 cut, 0 parked, 10 registered", s)
	}
}

func TestTooMuchPendingCuts(t *testing.T) {
	r := newRegistry(t, Options{MaxPending: 16 << 10, Heartbeat: time.Hour})
	ln := listen(t)
	c, srv := connect(t, ln, 4096)
	defer c.Close() // never read
	s, closed := register(t, r, srv)
	f := bytes.Repeat([]byte("y"), 1000)
	for range 1000 {
		s.Send(f)
	}
	if why := reason(t, closed, patience); why != TooSlow {
		t.Errorf("closed with %v, want %v", why, TooSlow)
	}
}

func TestEndWritesTheLastFrameAfterEverythingThenCloses(t *testing.T) {
	r := newRegistry(t, Options{Heartbeat: time.Hour})
	ln := listen(t)
	// A client that reads only after End: the socket parks, and its last
	// frame must still come after every earlier one.
	c, srv := connect(t, ln, 4096)
	defer c.Close()
	s, closed := register(t, r, srv)
	var want []byte
	pad := bytes.Repeat([]byte(": padding\n"), 100)
	for i := range 200 {
		f := append(pad[:len(pad):len(pad)], frame(i)...)
		s.Send(f)
		want = append(want, f...)
	}
	s.End([]byte("event: end\ndata: bye\n\n"))
	want = append(want, "event: end\ndata: bye\n\n"...)
	s.Send(frame(-1)) // after End: dropped
	r.Broadcast(frame(-2), []*Socket{s, s})
	waitFor(t, "the socket to park", func() bool { return r.Stats().Parked == 1 })
	_ = c.SetReadDeadline(time.Now().Add(patience))
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes (%v), want %d then EOF", len(got), err, len(want))
	}
	if why := reason(t, closed, patience); why != Ended {
		t.Errorf("closed with %v, want %v", why, Ended)
	}
}

func TestClientThatLeavesIsNoticedWithinAHeartbeat(t *testing.T) {
	const heartbeat = 5 * time.Second
	r := newRegistry(t, Options{Heartbeat: heartbeat})
	ln := listen(t)
	c, srv := connect(t, ln, 0)
	_, closed := register(t, r, srv)
	// Bytes after the request are read and dropped; the stream stays.
	if _, err := c.Write([]byte("ignored bytes")); err != nil {
		t.Fatal(err)
	}
	select {
	case why := <-closed:
		t.Fatalf("closed with %v after the client wrote", why)
	case <-time.After(100 * time.Millisecond):
	}
	c.Close()
	if why := reason(t, closed, heartbeat); why != ClientGone {
		t.Errorf("closed with %v, want %v", why, ClientGone)
	}
	if s := r.Stats(); s.Registered != 0 || s.Gone != 1 {
		t.Errorf("stats %+v; want none registered, 1 gone", s)
	}
}

func TestHeartbeatsReachIdleSocketsNotBusyOnes(t *testing.T) {
	const heartbeat = time.Second
	r := newRegistry(t, Options{Heartbeat: heartbeat})
	ln := listen(t)
	idle, srv := connect(t, ln, 0)
	defer idle.Close()
	register(t, r, srv)
	busy, srv := connect(t, ln, 0)
	defer busy.Close()
	b, _ := register(t, r, srv)
	f := []byte("data: x\n\n")
	start := time.Now()
	sent := 0
	for time.Since(start) < 3*heartbeat {
		b.Send(f)
		sent++
		time.Sleep(heartbeat / 20)
	}
	got := readExactly(t, idle, 2*len(keepAlive))
	if !bytes.Equal(got, append(keepAlive[:len(keepAlive):len(keepAlive)], keepAlive...)) {
		t.Errorf("idle socket got %q, want two keep-alives", got)
	}
	got = readExactly(t, busy, sent*len(f))
	if bytes.Contains(got, keepAlive) {
		t.Error("a busy socket got a keep-alive")
	}
	if n := r.Stats().Heartbeats; n < 2 {
		t.Errorf("%d heartbeats counted, want >= 2", n)
	}
}

// registryGoroutines counts the goroutines running a registry's event
// loop, in every registry of the process.
func registryGoroutines() int {
	return countStacks("sockets.(*loop).run(")
}

// loopsBefore waits for the loops of earlier tests, which close their
// registries as they end, to be gone (a loop is still on its way out for
// a moment after Close returns), and returns how many are left: none.
func loopsBefore(t testing.TB) int {
	t.Helper()
	waitFor(t, "earlier tests' loops to exit", func() bool { return registryGoroutines() == 0 })
	return 0
}

// loopsExit waits for the loop goroutines to be back to n.
func loopsExit(t testing.TB, n int) {
	t.Helper()
	waitFor(t, "every loop goroutine to exit", func() bool { return registryGoroutines() == n })
}

func countStacks(frame string) int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	return bytes.Count(buf, []byte(frame))
}

func openFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func TestRegisterCloseCyclesLeakNothing(t *testing.T) {
	heartbeat := 100 * time.Millisecond
	r := newRegistry(t, Options{Heartbeat: heartbeat})
	ln := listen(t)
	cycle := func(n int) {
		var clients []*net.TCPConn
		for i := range n {
			c, srv := connect(t, ln, 0)
			s, _ := register(t, r, srv)
			if i%2 == 0 {
				s.End(frame(i)) // the server ends it
			}
			clients = append(clients, c)
		}
		for _, c := range clients {
			c.Close() // the client leaves (or closes after its end)
		}
		waitFor(t, "every socket to close", func() bool { return r.Stats().Registered == 0 })
	}
	cycle(100) // warm up: the runtime's own descriptors and goroutines
	fds, goroutines := openFDs(t), runtime.NumGoroutine()
	for range 99 {
		cycle(100)
	}
	waitFor(t, "no open descriptor more than before", func() bool { return openFDs(t) <= fds })
	waitFor(t, "no goroutine more than before", func() bool { return runtime.NumGoroutine() <= goroutines })
	left := 0
	onLoops(t, r, func(l *loop) {
		for _, s := range l.slots {
			if s != nil {
				left++
			}
		}
	})
	if left != 0 {
		t.Errorf("%d registry entries left", left)
	}
	waitFor(t, "the wheel to drop closed sockets", func() bool {
		size := 0
		onLoops(t, r, func(l *loop) { size += l.wheel.size() })
		return size == 0
	})
	if s := r.Stats(); s.Ended+s.Gone != 10000 || s.Cut != 0 {
		t.Errorf("stats %+v; want 10,000 ended or gone", s)
	}
}

func TestCloseEndsEverything(t *testing.T) {
	registries := loopsBefore(t)
	before := runtime.NumGoroutine()
	r, err := New(testOptions(Options{Heartbeat: time.Hour, Writers: 3}))
	if err != nil {
		t.Fatal(err)
	}
	ln := listen(t)
	var clients []*net.TCPConn
	var closes []chan Reason
	for i := range 20 {
		c, srv := connect(t, ln, 4096)
		defer c.Close()
		s, closed := register(t, r, srv)
		if i%2 == 0 { // half of them parked
			for range 100 {
				s.Send(bytes.Repeat([]byte("z"), 1000))
			}
		}
		clients, closes = append(clients, c), append(closes, closed)
	}
	waitFor(t, "sockets to park", func() bool { return r.Stats().Parked > 0 })
	waitFor(t, "3 loops", func() bool { return registryGoroutines()-registries == 3 })
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	for i, closed := range closes {
		if why := reason(t, closed, patience); why != Shutdown {
			t.Errorf("socket %d closed with %v, want %v", i, why, Shutdown)
		}
	}
	for i, c := range clients {
		_ = c.SetReadDeadline(time.Now().Add(patience))
		if _, err := io.Copy(io.Discard, c); err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("client %d: %v, want EOF", i, err)
		}
	}
	if s := r.Stats(); s.Registered != 0 || s.Parked != 0 {
		t.Errorf("after Close: %+v", s)
	}
	loopsExit(t, registries)
	// Close has waited for its own goroutines; the wait is for those of
	// earlier tests and of the runtime, which come and go meanwhile.
	waitFor(t, "no more goroutines than before New", func() bool { return runtime.NumGoroutine() <= before })
	// Closed: Register refuses and leaves the conn to the caller.
	c, srv := connect(t, ln, 0)
	defer c.Close()
	if _, err := r.Register(srv, Registration{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Register after Close: %v, want ErrClosed", err)
	}
	if _, err := srv.Write([]byte("still mine")); err != nil {
		t.Errorf("the refused conn is not the caller's any more: %v", err)
	}
	srv.Close()
	if got := readExactly(t, c, len("still mine")); string(got) != "still mine" {
		t.Errorf("client read %q", got)
	}
	r.Close() // twice is fine
}

// Register's first bytes go out before anything else, even when they are
// more than MaxPending and the heartbeat is due at once, and the close hook
// counts every byte the socket was handed: first, frames and heartbeats.
func TestRegisterWritesFirstBytesFirstAndCountsEveryByte(t *testing.T) {
	r := newRegistry(t, Options{Heartbeat: 4 * time.Millisecond, MaxPending: 1024})
	ln := listen(t)
	client, srv := connect(t, ln, 4096) // a small buffer: most of first waits in pending
	defer client.Close()
	first := bytes.Repeat([]byte("h"), 256<<10)
	type closed struct {
		why  Reason
		sent int64
	}
	done := make(chan closed, 1)
	s, err := r.Register(srv, Registration{First: first, OnClose: func(why Reason, sent int64) { done <- closed{why, sent} }})
	if err != nil {
		t.Fatal(err)
	}
	frame := []byte("data: x\n\n")
	s.Send(frame)
	got := readExactly(t, client, len(first))
	if !bytes.Equal(got, first) {
		t.Fatalf("the first %d bytes are not Register's first bytes", len(first))
	}
	// After first: the frame, with keep-alives around it but never inside it.
	var rest bytes.Buffer
	for !bytes.Contains(rest.Bytes(), frame) || !bytes.Contains(rest.Bytes(), keepAlive) {
		rest.Write(readExactly(t, client, 1))
	}
	s.End(nil)
	_ = client.SetReadDeadline(time.Now().Add(patience))
	tail, err := io.ReadAll(client)
	if err != nil {
		t.Fatal(err)
	}
	rest.Write(tail)
	if left := bytes.ReplaceAll(bytes.ReplaceAll(rest.Bytes(), keepAlive, nil), frame, nil); len(left) > 0 {
		t.Errorf("after the first bytes, %q is neither the frame nor a keep-alive", left)
	}
	c := <-done
	if c.why != Ended {
		t.Errorf("closed with %v, want %v", c.why, Ended)
	}
	if want := int64(len(first) + rest.Len()); c.sent != want {
		t.Errorf("close hook counted %d bytes, the client read %d", c.sent, want)
	}
}

// Sockets are handed to the loops in turn, and a Broadcast reaches
// every socket in order whether its sockets share one loop (one job) or
// not (a job for every loop).
func TestBroadcastToOneWriterOrMany(t *testing.T) {
	r := newRegistry(t, Options{Writers: 4})
	ln := listen(t)
	var (
		socks   []*Socket
		clients []*net.TCPConn
	)
	used := map[*loop]bool{}
	for range 20 {
		c, srv := connect(t, ln, 0)
		t.Cleanup(func() { c.Close() })
		s, err := r.Register(srv, Registration{})
		if err != nil {
			t.Fatal(err)
		}
		socks, clients = append(socks, s), append(clients, c)
		used[s.l] = true
	}
	if len(used) != 4 {
		t.Errorf("20 sockets went to %d of 4 loops", len(used))
	}
	var one []*Socket // the sockets of the first one's loop
	var oneClients []*net.TCPConn
	for i, s := range socks {
		if s.l == socks[0].l {
			one, oneClients = append(one, s), append(oneClients, clients[i])
		}
	}
	for _, tc := range []struct {
		socks   []*Socket
		clients []*net.TCPConn
	}{{one, oneClients}, {socks, clients}} {
		var want []byte
		for i := range 50 {
			f := []byte(fmt.Sprintf("id: %d\ndata: x\n\n", i))
			want = append(want, f...)
			r.Broadcast(f, tc.socks)
		}
		for i, c := range tc.clients {
			if got := readExactly(t, c, len(want)); !bytes.Equal(got, want) {
				t.Fatalf("socket %d of %d got the frames out of order or incomplete", i, len(tc.clients))
			}
		}
	}
}

// A batch of queued jobs goes out socket by socket: each socket gets its
// frames from every job in the order they were handed over (first write,
// broadcasts, sends, heartbeats), nothing after its End, and the close
// hook counts what it was handed.
func TestBatchWritesEachSocketsFramesInOrder(t *testing.T) {
	r := newRegistry(t, Options{Writers: 1, Heartbeat: time.Hour})
	ln := listen(t)
	type sock struct {
		s      *Socket
		c      *net.TCPConn
		closed chan int64
	}
	var socks []sock
	// Held, so that the registrations and the jobs below are one batch.
	release := holdLoop(t, r.loops[0])
	for i := range 3 {
		c, srv := connect(t, ln, 0)
		t.Cleanup(func() { c.Close() })
		closed := make(chan int64, 1)
		var first []byte
		if i == 0 {
			first = []byte("first0|")
		}
		s, err := r.Register(srv, Registration{First: first, OnClose: func(_ Reason, sent int64) { closed <- sent }})
		if err != nil {
			t.Fatal(err)
		}
		socks = append(socks, sock{s, c, closed})
	}
	l := r.loops[0]
	all := []*Socket{socks[0].s, socks[1].s, socks[2].s}
	f := func(s string) []byte { return []byte(s) }
	// Queued while the loop was busy, then written as one batch.
	pushAll(l, []job{
		{frame: f("a|"), socks: all},
		{frame: f("b|"), socks: all[1:]},
		{frame: f("one1|"), one: socks[1].s},
		{frame: f("beat|"), socks: all},
		{frame: f("last2|"), one: socks[2].s, kind: jobEnd},
		{frame: f("c|"), socks: all},
		{one: socks[0].s, kind: jobEnd},
		{frame: f("dropped|"), socks: all},
	})
	release()
	want := []string{"first0|a|beat|c|", "a|b|one1|beat|c|dropped|", "a|b|beat|last2|"}
	for i, sk := range socks {
		if got := string(readExactly(t, sk.c, len(want[i]))); got != want[i] {
			t.Errorf("socket %d got %q, want %q", i, got, want[i])
		}
	}
	for _, i := range []int{0, 2} { // ended: closed after their last bytes, counted whole
		_ = socks[i].c.SetReadDeadline(time.Now().Add(patience))
		if rest, err := io.ReadAll(socks[i].c); err != nil || len(rest) > 0 {
			t.Errorf("socket %d: %q, %v after its end; want EOF", i, rest, err)
		}
		if sent := <-socks[i].closed; sent != int64(len(want[i])) {
			t.Errorf("socket %d: close hook counted %d bytes, want %d", i, sent, len(want[i]))
		}
	}
}

// A batch that the kernel takes only in part parks the socket with the
// rest, which goes out in order once the client reads.
func TestBatchThatFillsTheKernelParks(t *testing.T) {
	r := newRegistry(t, Options{Writers: 1, Heartbeat: time.Hour, MaxPending: 1 << 20})
	ln := listen(t)
	c, srv := connect(t, ln, 4096)
	defer c.Close()
	s, err := r.Register(srv, Registration{})
	if err != nil {
		t.Fatal(err)
	}
	var jobs []job
	var want []byte
	for i := range 40 {
		f := append([]byte(fmt.Sprintf("frame %d:", i)), bytes.Repeat([]byte{'x'}, 8<<10)...)
		want = append(want, f...)
		jobs = append(jobs, job{frame: f, one: s})
	}
	pushAll(r.loops[0], jobs)
	waitFor(t, "the socket to park", func() bool { return r.Stats().Parked == 1 })
	left := 0
	onLoops(t, r, func(*loop) { left = s.pending.n })
	if left == 0 || left >= len(want) {
		t.Errorf("%d of %d bytes pending: want the batch written in part, the rest parked", left, len(want))
	}
	if got := readExactly(t, c, len(want)); !bytes.Equal(got, want) {
		t.Fatal("the parked batch arrived out of order or incomplete")
	}
	waitFor(t, "the socket to unpark", func() bool { return r.Stats().Parked == 0 })
}

// onLoops runs f on each of r's loops in turn, on the loop's goroutine,
// and returns once it has run everywhere.
func onLoops(t testing.TB, r *Registry, f func(*loop)) {
	t.Helper()
	for _, l := range r.loops {
		done := make(chan struct{})
		if !l.push(job{kind: jobCall, call: func() { f(l); close(done) }}) {
			t.Fatal("loop stopped")
		}
		select {
		case <-done:
		case <-time.After(patience):
			t.Fatal("a loop did not run a call")
		}
	}
}

// pushAll queues jobs on l at once, so that the loop takes them as one
// batch (with whatever was queued before them).
func pushAll(l *loop, jobs []job) {
	l.mu.Lock()
	for _, j := range jobs {
		l.queue = append(l.queue, j)
		if j.kind == jobFrame || j.kind == jobEnd {
			l.frames++
		}
	}
	l.queued.Store(true)
	l.mu.Unlock()
	l.wake()
}

// holdLoop keeps l busy in a call until the returned func is called (or
// the test ends), so that what is pushed meanwhile queues up.
func holdLoop(t testing.TB, l *loop) (release func()) {
	t.Helper()
	held, free := make(chan struct{}), make(chan struct{})
	l.push(job{kind: jobCall, call: func() { close(held); <-free }})
	<-held
	var once sync.Once
	release = func() { once.Do(func() { close(free) }) }
	t.Cleanup(release)
	return release
}

// TestNewRequiresStreamSettings: the heartbeat, write timeout and
// keep-alive are the streams' settings, with no defaults here.
func TestNewRequiresStreamSettings(t *testing.T) {
	for _, tc := range []struct {
		opts Options
		want string
	}{
		{Options{}, "Heartbeat"},
		{Options{Heartbeat: time.Second, KeepAlive: keepAlive}, "WriteTimeout"},
		{Options{Heartbeat: time.Second, WriteTimeout: time.Second}, "KeepAlive"},
	} {
		r, err := New(tc.opts)
		if err == nil {
			r.Close()
			t.Errorf("New(%+v) succeeded, want an error naming %s", tc.opts, tc.want)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v): %v, want an error naming %s", tc.opts, err, tc.want)
		}
	}
}

// An ended stream's state, which its close hook holds, is not kept alive
// by the registry, though the closed socket stays in its loop's heartbeat
// wheel until its slot comes round: under churn the wheel held every
// stream ended within the last heartbeat interval, and the heap (and the
// server's RSS) grew with it.
func TestEndedSocketLetsGoOfItsStream(t *testing.T) {
	r := newRegistry(t, Options{Heartbeat: time.Hour})
	ln := listen(t)
	c, srv := connect(t, ln, 0)
	defer c.Close()
	closed := make(chan Reason, 1)
	// The caller's stream, as its hook holds it: made in a function of
	// its own, so that only the hook refers to it.
	hook := func() (func(Reason, int64), weak.Pointer[[4 << 10]byte]) {
		state := new([4 << 10]byte)
		return func(why Reason, _ int64) {
			state[0]++
			closed <- why
		}, weak.Make(state)
	}
	onClose, held := hook()
	s, err := r.Register(srv, Registration{OnClose: onClose})
	if err != nil {
		t.Fatal(err)
	}
	s.End([]byte("end\n"))
	if why := reason(t, closed, patience); why != Ended {
		t.Fatalf("closed with %v, want %v", why, Ended)
	}
	inWheel := 0
	onLoops(t, r, func(l *loop) { inWheel += l.wheel.size() })
	if inWheel == 0 {
		t.Fatal("the ended socket has left the wheel already: this test needs it there")
	}
	waitFor(t, "the ended stream's state to be collected", func() bool {
		runtime.GC()
		return held.Value() == nil
	})
	runtime.KeepAlive(s)
}
