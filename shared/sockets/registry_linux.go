package sockets

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Conn is what Register takes over: a connected socket that can show its
// descriptor and be closed (*net.TCPConn is one).
type Conn interface {
	syscall.Conn
	Close() error
}

// Registry holds registered sockets; see the package doc. Its methods are
// safe for concurrent use.
type Registry struct {
	opts    Options
	start   time.Time // the clock for lastWrite and deadlines: monotonic nanoseconds since start
	epfd    int
	wakefd  int // an eventfd in the epoll set: Close wakes the poller through it
	writers []*writer
	wheel   wheel

	nextWriter atomic.Uint32
	nextID     atomic.Uint64

	mu      sync.Mutex
	socks   map[uint64]*Socket // by id, the key the poller gets back from epoll
	closing bool

	parkedMu sync.Mutex
	parked   map[*Socket]int64 // parked sockets and when they parked

	registered, parkedN               atomic.Int64
	ended, gone, cut, heartbeatsTotal atomic.Uint64

	writersDone sync.WaitGroup
	pollerDone  sync.WaitGroup
	closeOnce   sync.Once
	stop        atomic.Bool
}

// wakeID is the epoll key of the wake eventfd; sockets' ids start at 1.
const wakeID = 0

// New starts a Registry: one poller goroutine and Options.Writers writers,
// all ended by Close.
func New(opts Options) (*Registry, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults(runtime.GOMAXPROCS(0))
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("sockets: epoll_create1: %w", err)
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("sockets: eventfd: %w", err)
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wakefd, &unix.EpollEvent{Events: unix.EPOLLIN}); err != nil {
		unix.Close(wakefd)
		unix.Close(epfd)
		return nil, fmt.Errorf("sockets: epoll_ctl wake: %w", err)
	}
	r := &Registry{
		opts:   opts,
		start:  time.Now(),
		epfd:   epfd,
		wakefd: wakefd,
		socks:  make(map[uint64]*Socket),
		parked: make(map[*Socket]int64),
	}
	r.wheel.init(opts.tick(), opts.Heartbeat)
	r.nextID.Store(wakeID)
	for range opts.Writers {
		w := &writer{r: r, wake: make(chan struct{}, 1), quit: make(chan struct{})}
		r.writers = append(r.writers, w)
		r.writersDone.Add(1)
		go w.run()
	}
	r.pollerDone.Add(1)
	go r.poll()
	return r, nil
}

func (r *Registry) now() int64 { return int64(time.Since(r.start)) }

// Register takes over c, on which the caller has written nothing yet or
// only whole bytes it has flushed: from here on only the Registry writes
// to it and closes it (see Registration). On error c is left open and
// still the caller's.
func (r *Registry) Register(c Conn, reg Registration) (*Socket, error) {
	fd, err := dup(c)
	if err != nil {
		return nil, err
	}
	s := &Socket{
		r:       r,
		w:       r.writers[r.nextWriter.Add(1)%uint32(len(r.writers))],
		id:      r.nextID.Add(1),
		onClose: reg.OnClose,
		fd:      fd,
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP}
	s.key(&ev)
	// Under r.mu, so that Close (which sets closing under it first) never
	// closes the epoll descriptor under a registration.
	r.mu.Lock()
	if r.closing {
		r.mu.Unlock()
		unix.Close(fd)
		return nil, ErrClosed
	}
	if err := unix.EpollCtl(r.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		r.mu.Unlock()
		unix.Close(fd)
		return nil, fmt.Errorf("sockets: epoll_ctl add: %w", err)
	}
	r.socks[s.id] = s
	r.registered.Add(1)
	r.mu.Unlock()
	now := r.now()
	s.lastWrite.Store(now)
	// The first write is the writer's first job for s, queued before s is
	// in the wheel, so no heartbeat can go out ahead of it.
	if len(reg.First) > 0 {
		s.w.push(job{frame: reg.First, one: s, first: true})
	}
	r.wheel.add(s, now+int64(r.opts.Heartbeat))
	// The duplicate keeps the socket open; closing c takes the original
	// descriptor out of Go's poller and frees the net.Conn.
	_ = c.Close()
	return s, nil
}

// dup returns a close-on-exec duplicate of c's descriptor, non-blocking.
func dup(c Conn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1, fmt.Errorf("sockets: take over connection: %w", err)
	}
	fd, derr := -1, error(nil)
	if err := rc.Control(func(s uintptr) { fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, fmt.Errorf("sockets: take over connection: %w", err)
	}
	if derr != nil {
		return -1, fmt.Errorf("sockets: dup: %w", derr)
	}
	// Go's net sets O_NONBLOCK on the shared file description already;
	// make sure, since every write here relies on it.
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("sockets: set non-blocking: %w", err)
	}
	return fd, nil
}

// Broadcast writes frame to every socket of socks, each after what it was
// handed before. It never waits for a socket: it appends one job to every
// writer's queue, each writer then writing to its own sockets among socks
// (or only to the one writer all of socks share: a small order's). frame
// and socks are kept until written and must not be changed.
func (r *Registry) Broadcast(frame []byte, socks []*Socket) {
	if len(socks) == 0 {
		return
	}
	w := socks[0].w
	for _, s := range socks[1:] {
		if s.w != w {
			for _, w := range r.writers {
				w.push(job{frame: frame, socks: socks})
			}
			return
		}
	}
	w.push(job{frame: frame, socks: socks})
}

// Stats returns the counters.
func (r *Registry) Stats() Stats {
	return Stats{
		Registered: r.registered.Load(),
		Parked:     r.parkedN.Load(),
		Ended:      r.ended.Load(),
		Gone:       r.gone.Load(),
		Cut:        r.cut.Load(),
		Heartbeats: r.heartbeatsTotal.Load(),
	}
}

// Close ends the Registry: the writers finish the jobs already handed to
// them, every socket still open is closed with Shutdown (a caller draining
// gracefully calls End on its streams first), the poller stops, and Close
// waits for all of its goroutines. Later calls return nil at once.
func (r *Registry) Close() error {
	r.closeOnce.Do(func() {
		r.mu.Lock()
		r.closing = true
		r.mu.Unlock()
		for _, w := range r.writers {
			close(w.quit)
		}
		r.writersDone.Wait()
		r.mu.Lock()
		left := slices.Collect(maps.Values(r.socks))
		r.mu.Unlock()
		for _, s := range left {
			s.mu.Lock()
			s.release(Shutdown)
		}
		r.stop.Store(true)
		var one [8]byte
		one[0] = 1 // eventfd counts in host order; any non-zero value wakes it
		_, _ = unix.Write(r.wakefd, one[:])
		r.pollerDone.Wait()
		unix.Close(r.wakefd)
		unix.Close(r.epfd)
	})
	return nil
}

// Socket is one registered stream.
type Socket struct {
	r         *Registry
	w         *writer
	id        uint64
	onClose   func(Reason, int64)
	lastWrite atomic.Int64 // Registry.now of the last bytes handed to the kernel or queued
	gone      atomic.Bool  // closed: the wheel drops it

	mu          sync.Mutex
	fd          int // -1 once closed
	pending     pending
	parkedSince int64 // Registry.now when parked; 0 when not
	ending      bool  // End was handled: close once pending drains
	sent        int64 // bytes handed to the kernel or queued, for onClose
	firstLeft   int   // bytes of Register's first write still pending: allowed beyond MaxPending

	// What its writer gathers for it from one batch of jobs (writer.batch),
	// touched by that writer's goroutine only.
	gathering  bool
	batch      [][]byte
	batchEnd   bool // an End is among them: nothing after it
	batchFirst int  // the length of Register's first write, if it is among them
	batchBeats int  // heartbeats among them
}

// key puts s's id into an epoll event's data.
func (s *Socket) key(ev *unix.EpollEvent) {
	ev.Fd = int32(uint32(s.id))
	ev.Pad = int32(uint32(s.id >> 32))
}

func eventKey(ev *unix.EpollEvent) uint64 {
	return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
}

// Send writes frame to s after what it was handed before, without waiting.
// frame must not be changed afterwards.
func (s *Socket) Send(frame []byte) { s.w.push(job{frame: frame, one: s}) }

// End writes last (if not empty) after everything s was handed before,
// drops whatever it is handed after, then closes
// s with Ended once the kernel has taken it all (or cuts it as any parked
// socket). It is how a terminal event, MAX_STREAM_DURATION or a graceful
// drain ends a stream.
func (s *Socket) End(last []byte) { s.w.push(job{frame: last, one: s, end: true}) }

// release unlocks s, first closing it when reason is not none, and then
// calls the close hook outside the lock.
func (s *Socket) release(reason Reason) {
	if reason == none || s.fd < 0 {
		s.mu.Unlock()
		return
	}
	s.closeLocked(reason)
	sent := s.sent
	s.mu.Unlock()
	if s.onClose != nil {
		s.onClose(reason, sent)
	}
}

func (s *Socket) closeLocked(reason Reason) {
	r := s.r
	if s.parkedSince != 0 {
		s.unparkLocked(false)
	}
	// Closing the only descriptor also takes it out of the epoll set (the
	// duplicate is close-on-exec, so no child holds a copy): no
	// EPOLL_CTL_DEL, one syscall fewer per stream.
	_ = unix.Close(s.fd)
	s.fd = -1
	s.pending = pending{}
	s.gone.Store(true)
	r.mu.Lock()
	delete(r.socks, s.id)
	r.mu.Unlock()
	r.registered.Add(-1)
	switch reason {
	case Ended:
		r.ended.Add(1)
	case ClientGone:
		r.gone.Add(1)
	case TooSlow, WriteTimeout, WriteFailed:
		r.cut.Add(1)
	}
}

// rawWritev is writev(2) without the runtime's syscall bookkeeping: the
// descriptor is non-blocking, so the call never waits, and a writer making
// thousands of them back to back neither hands its P off nor keeps sysmon
// polling for Ps stuck in syscalls (both showed in profiles of a fan-out).
// iov is the caller's scratch, emptied again so that it keeps no frame
// alive.
func rawWritev(fd int, bufs [][]byte, iov *[]unix.Iovec) (int, error) {
	v := (*iov)[:0]
	for _, b := range bufs {
		if len(b) == 0 {
			continue
		}
		var x unix.Iovec
		x.Base = &b[0]
		x.SetLen(len(b))
		v = append(v, x)
	}
	defer func() { clear(v); *iov = v[:0] }()
	if len(v) == 0 {
		return 0, nil
	}
	n, _, errno := unix.RawSyscall(unix.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&v[0])), uintptr(len(v)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// flushLocked writes pending bytes now that epoll says there is room.
func (s *Socket) flushLocked() Reason {
	for !s.pending.empty() {
		n, err := unix.Writev(s.fd, s.pending.head())
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return none // still parked; epoll reports the next room
		case err != nil:
			return writeError(err)
		}
		s.pending.consume(n)
		s.firstLeft = min(s.firstLeft, s.pending.n)
	}
	s.unparkLocked(true)
	if s.ending {
		return Ended
	}
	return none
}

func writeError(err error) Reason {
	if errors.Is(err, unix.EPIPE) || errors.Is(err, unix.ECONNRESET) {
		return ClientGone
	}
	return WriteFailed
}

// parkLocked asks epoll for EPOLLOUT and starts s's write deadline.
func (s *Socket) parkLocked(now int64) Reason {
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLOUT}
	s.key(&ev)
	if err := unix.EpollCtl(s.r.epfd, unix.EPOLL_CTL_MOD, s.fd, &ev); err != nil {
		slog.Error("sockets: epoll_ctl park", "err", err)
		return WriteFailed
	}
	s.parkedSince = max(now, 1)
	s.r.parkedMu.Lock()
	s.r.parked[s] = s.parkedSince
	s.r.parkedMu.Unlock()
	s.r.parkedN.Add(1)
	return none
}

// unparkLocked ends s's parking; rearm drops EPOLLOUT from its events (not
// needed when s is about to close).
func (s *Socket) unparkLocked(rearm bool) {
	if s.parkedSince == 0 {
		return
	}
	if rearm {
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP}
		s.key(&ev)
		// Should it fail, EPOLLOUT keeps firing and flushLocked keeps
		// finding nothing to write: wasteful, not wrong.
		_ = unix.EpollCtl(s.r.epfd, unix.EPOLL_CTL_MOD, s.fd, &ev)
	}
	s.parkedSince = 0
	s.r.parkedMu.Lock()
	delete(s.r.parked, s)
	s.r.parkedMu.Unlock()
	s.r.parkedN.Add(-1)
}

// discardLocked reads and drops what the client sent; EOF means it left.
func (s *Socket) discardLocked(buf []byte) Reason {
	for {
		n, err := unix.Read(s.fd, buf)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return none
		case err != nil:
			return ClientGone
		case n == 0:
			return ClientGone
		}
	}
}

// job is a writer's unit of work: frame to one socket (one), or to this
// writer's sockets among socks.
type job struct {
	frame     []byte
	socks     []*Socket
	one       *Socket
	end       bool // with one: close it after frame
	first     bool // with one: Register's first write, which may pass MaxPending
	heartbeat bool // count what is written as heartbeats
}

// writer writes jobs in the order they were pushed. Its queue is unbounded
// so that a publisher never waits; what waits in it is a frame reference
// and a subscriber-list reference per publish, and the writers take it as
// fast as non-blocking writes go.
type writer struct {
	r     *Registry
	wake  chan struct{} // one token: there is work
	quit  chan struct{} // closed by Close: finish the queue and return
	mu    sync.Mutex
	queue []job
	done  bool  // the writer has returned: pushes are dropped
	spare []job // the writer goroutine's other queue, swapped in under mu

	// The writer goroutine's scratch.
	touched []*Socket
	iov     []unix.Iovec
	one     [1][]byte
}

func (w *writer) push(j job) {
	w.mu.Lock()
	if w.done {
		w.mu.Unlock()
		return
	}
	w.queue = append(w.queue, j)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *writer) run() {
	defer w.r.writersDone.Done()
	for {
		select {
		case <-w.wake:
			w.drain(false)
		case <-w.quit:
			w.drain(true)
			return
		}
	}
}

// drain writes every queued job; last marks the writer done once its queue
// is empty, under the same lock, so no push is left behind.
func (w *writer) drain(last bool) {
	for {
		w.mu.Lock()
		jobs := w.queue
		if len(jobs) == 0 {
			w.done = last
			w.mu.Unlock()
			return
		}
		w.queue = w.spare
		w.mu.Unlock()
		if len(jobs) == 1 {
			w.do(jobs[0])
		} else {
			w.batch(jobs)
		}
		clear(jobs) // drop the frames and lists
		w.spare = jobs[:0]
	}
}

func (w *writer) do(j job) {
	now := w.r.now()
	if j.one != nil {
		firstLen := 0
		if j.first {
			firstLen = len(j.frame)
		}
		j.one.write(w.frame(j.frame), now, j.end, firstLen, &w.iov)
		return
	}
	var written uint64
	for _, s := range j.socks {
		if s.w == w && s.write(w.frame(j.frame), now, false, 0, &w.iov) {
			written++
		}
	}
	if j.heartbeat {
		w.r.heartbeatsTotal.Add(written)
	}
}

// frame is f as the frames of one write, in the writer's scratch (a write
// may trim its element; pending keeps its own copy of the slice header).
func (w *writer) frame(f []byte) [][]byte {
	if len(f) == 0 {
		return nil
	}
	w.one[0] = f
	return w.one[:]
}

// batch writes the jobs that queued up while the writer was busy, socket
// by socket rather than job by job: each socket's frames from all of them,
// in the order they were handed over, go out in one writev. A burst (an
// order's statuses published at once, many orders at once) then costs a
// syscall per socket rather than per frame, and its client a read.
func (w *writer) batch(jobs []job) {
	now := w.r.now()
	for i := range jobs {
		j := &jobs[i]
		if j.one != nil {
			w.gather(j.one, j.frame, j.end, j.first, false)
			continue
		}
		for _, s := range j.socks {
			if s.w == w {
				w.gather(s, j.frame, false, false, j.heartbeat)
			}
		}
	}
	var beats uint64
	for _, s := range w.touched {
		if s.write(s.batch, now, s.batchEnd, s.batchFirst, &w.iov) {
			beats += uint64(s.batchBeats)
		}
		clear(s.batch)
		s.gathering, s.batch, s.batchEnd, s.batchFirst, s.batchBeats = false, s.batch[:0], false, 0, 0
	}
	clear(w.touched)
	w.touched = w.touched[:0]
	if beats > 0 {
		w.r.heartbeatsTotal.Add(beats)
	}
}

// gather adds one job's frame for s to its batch.
func (w *writer) gather(s *Socket, frame []byte, end, first, heartbeat bool) {
	if s.batchEnd {
		return // after End nothing more goes out
	}
	if !s.gathering {
		s.gathering = true
		w.touched = append(w.touched, s)
	}
	if len(frame) > 0 {
		s.batch = append(s.batch, frame)
	}
	if first {
		s.batchFirst = len(frame)
	}
	if heartbeat {
		s.batchBeats++
	}
	s.batchEnd = end
}

// write is a writer's delivery of frames to s, closing it after them if
// end; false if s is closed.
func (s *Socket) write(frames [][]byte, now int64, end bool, firstLen int, iov *[]unix.Iovec) bool {
	s.mu.Lock()
	if s.fd < 0 {
		s.mu.Unlock()
		return false
	}
	if s.ending { // after End nothing more goes out
		s.mu.Unlock()
		return true
	}
	s.ending = end
	s.release(s.sendLocked(frames, now, firstLen, iov))
	return true
}

// sendLocked hands frames to the kernel in one writev, or queues them
// behind pending bytes, up to MaxPending bytes beyond what is left of
// Register's first write (firstLen: its length if it is among frames,
// whose remainder is allowed whatever its size).
func (s *Socket) sendLocked(frames [][]byte, now int64, firstLen int, iov *[]unix.Iovec) Reason {
	limit := s.r.opts.MaxPending + s.firstLeft + firstLen
	total := 0
	for _, f := range frames {
		total += len(f)
	}
	if total > 0 {
		s.lastWrite.Store(now)
		s.sent += int64(total)
	}
	if !s.pending.empty() {
		for _, f := range frames {
			if !s.pending.push(f, limit) {
				return TooSlow
			}
		}
		return none
	}
	rest := frames
	for len(rest) > 0 {
		try := rest[:min(len(rest), maxIovecs)]
		tried := 0
		for _, f := range try {
			tried += len(f)
		}
		n, err := rawWritev(s.fd, try, iov)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			n = 0
		case err != nil:
			return writeError(err)
		}
		full := n < tried // the kernel's buffer is full: park the rest
		for n > 0 {       // drop what the kernel took
			if n < len(rest[0]) {
				rest[0] = rest[0][n:]
				break
			}
			n -= len(rest[0])
			rest = rest[1:]
		}
		if full {
			for _, f := range rest {
				if !s.pending.push(f, limit) {
					return TooSlow
				}
			}
			if firstLen > 0 {
				s.firstLeft = min(s.pending.n, firstLen)
			}
			return s.parkLocked(now)
		}
	}
	if s.ending {
		return Ended
	}
	return none
}

// poll is the poller goroutine: readiness, hang-ups, and the ticks of the
// heartbeat wheel and the write deadlines.
func (r *Registry) poll() {
	defer r.pollerDone.Done()
	events := make([]unix.EpollEvent, 256)
	buf := make([]byte, 4096)
	tick := int64(r.opts.tick())
	next := r.now() + tick
	var due []*Socket
	for {
		wait := max(0, (next-r.now())/int64(time.Millisecond)+1)
		n, err := unix.EpollWait(r.epfd, events, int(wait))
		if err != nil && err != unix.EINTR {
			slog.Error("sockets: epoll_wait; registered streams are no longer watched", "err", err)
			return
		}
		for i := range max(n, 0) {
			id := eventKey(&events[i])
			if id == wakeID {
				if r.stop.Load() {
					return
				}
				continue
			}
			r.mu.Lock()
			s := r.socks[id]
			r.mu.Unlock()
			if s != nil {
				s.ready(events[i].Events, buf)
			}
		}
		if now := r.now(); now >= next {
			due = r.tickAt(now, due[:0])
			next = now + tick
		}
	}
}

// ready handles epoll's news about s.
func (s *Socket) ready(events uint32, buf []byte) {
	s.mu.Lock()
	if s.fd < 0 {
		s.mu.Unlock()
		return
	}
	reason := none
	if events&(unix.EPOLLERR|unix.EPOLLHUP|unix.EPOLLRDHUP) != 0 {
		reason = ClientGone
	}
	if reason == none && events&unix.EPOLLIN != 0 {
		reason = s.discardLocked(buf)
	}
	if reason == none && events&unix.EPOLLOUT != 0 {
		reason = s.flushLocked()
	}
	s.release(reason)
}

// tickAt cuts parked sockets past their deadline and sends heartbeats to
// the idle sockets whose slot has come; due is scratch space, returned for
// reuse.
func (r *Registry) tickAt(now int64, due []*Socket) []*Socket {
	type overdue struct {
		s     *Socket
		since int64
	}
	var late []overdue
	limit := int64(r.opts.WriteTimeout)
	r.parkedMu.Lock()
	for s, since := range r.parked {
		if now-since >= limit {
			late = append(late, overdue{s, since})
		}
	}
	r.parkedMu.Unlock()
	for _, o := range late {
		o.s.mu.Lock()
		if o.s.parkedSince == o.since { // still the same parking
			o.s.release(WriteTimeout)
		} else {
			o.s.mu.Unlock()
		}
	}

	due = r.wheel.take(now, due)
	interval := int64(r.opts.Heartbeat)
	batches := make(map[*writer][]*Socket)
	for _, s := range due {
		if s.gone.Load() {
			continue // closed since it was added: it leaves the wheel here
		}
		last := s.lastWrite.Load()
		if now-last >= interval {
			batches[s.w] = append(batches[s.w], s)
			r.wheel.add(s, now+interval)
		} else {
			r.wheel.add(s, last+interval)
		}
	}
	for w, socks := range batches {
		w.push(job{frame: r.opts.KeepAlive, socks: socks, heartbeat: true})
	}
	clear(due)
	return due
}
