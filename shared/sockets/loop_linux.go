package sockets

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// jobKind says what a job asks of its loop.
type jobKind uint8

const (
	jobFrame jobKind = iota // write frame to one, or to socks
	jobEnd                  // write frame (if any) to one, or to socks, then end it
	jobAdd                  // take one over; frame is its first write
	jobCut                  // one could not be queued for: cut it as TooSlow
	jobCall                 // run call on the loop (tests look at its state)
)

// job is a loop's unit of work.
type job struct {
	frame []byte
	socks []*Socket
	one   *Socket
	call  func()
	kind  jobKind
	mixed bool // socks holds other loops' sockets too (Registry.Broadcast)
}

// loop is one event loop: a goroutine with its own epoll set and its own
// sockets, which it alone polls, writes, parks, heartbeats and closes.
// Publishers only append jobs to its bounded queue.
type loop struct {
	r    *Registry
	idx  int
	epfd int
	// file is epfd seen by Go's poller: an idle loop parks its goroutine
	// in it (an epoll set is readable when one of its sockets is ready)
	// instead of blocking a thread in epoll_wait, and a push wakes it by
	// setting a past read deadline, which costs no system call.
	file *os.File
	rc   syscall.RawConn

	mu       sync.Mutex
	queue    []job
	frames   int  // frame jobs in queue: at most Options.QueueLen
	stopping bool // Close has asked the loop to stop
	stopped  bool // the loop takes no more jobs
	queued   atomic.Bool
	asleep   atomic.Bool // parked or about to be: a push wakes it

	// The loop goroutine's own.
	slots    []*Socket // by epoll key; slot 0 is never used
	free     []uint32
	gen      uint32
	wheel    wheel
	parked   []*Socket
	linger   []*Socket // lingering sockets, in the order they began (and so their deadlines fall)
	lingerAt int       // linger[:lingerAt] are done
	lingerN  int       // sockets lingering
	spare    []job
	touched  []*Socket
	// ends holds the sockets whose last frame is written, to be ended
	// once the job or batch at hand has written to every socket it is for
	// (deferEnds); see endDeferred.
	ends      []*Socket
	deferEnds bool
	batches   [][][]byte // spare batch arrays
	due       []*Socket
	iov       []unix.Iovec
	one       [1][]byte
	buf       []byte
	events    []unix.EpollEvent
	mostRead  int // the most bytes read from one socket in one wakeup, for tests
	polled    int // events in events
	pollErr   error
	ready     func(uintptr) bool // epollNow, for the RawConn
}

// Reading: a wakeup reads at most readsPerWake times readBuf bytes from a
// socket; more waits for the next (epoll is level-triggered, so it comes).
const (
	readBuf      = 16 << 10
	readsPerWake = 4
)

func newLoop(r *Registry, idx int) (*loop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("sockets: epoll_create1: %w", err)
	}
	// Non-blocking, so that os.NewFile hands it to Go's poller.
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("sockets: epoll non-blocking: %w", err)
	}
	f := os.NewFile(uintptr(epfd), "sockets-epoll")
	rc, err := f.SyscallConn()
	if err == nil {
		err = f.SetReadDeadline(time.Time{}) // fails if Go's poller did not take it
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("sockets: poll the epoll set: %w", err)
	}
	l := &loop{r: r, idx: idx, epfd: epfd, file: f, rc: rc,
		slots: make([]*Socket, 1), buf: make([]byte, readBuf), events: make([]unix.EpollEvent, 256)}
	l.ready = func(uintptr) bool { return l.epollNow() }
	l.wheel.init(r.opts.tick(), r.opts.Heartbeat)
	return l, nil
}

// aLongTimeAgo is a read deadline in the past: setting it wakes the loop.
var aLongTimeAgo = time.Unix(1, 0)

// push queues j; false if the loop has stopped. A frame job beyond
// Options.QueueLen is not queued: the sockets it was for on this loop are
// cut instead (the client resumes from its last event id), so that
// neither the queue nor the publisher waits on a loop that fell behind.
func (l *loop) push(j job) bool {
	l.mu.Lock()
	if l.stopped {
		l.mu.Unlock()
		return false
	}
	switch {
	case j.kind == jobFrame && j.one != nil && j.one.lost.Load():
		// Being cut: nothing more for it.
	case (j.kind == jobFrame || j.kind == jobEnd) && l.frames >= l.r.opts.QueueLen:
		l.overflow(j)
	default:
		l.queue = append(l.queue, j)
		if j.kind == jobFrame || j.kind == jobEnd {
			l.frames++
		}
	}
	l.queued.Store(true)
	l.mu.Unlock()
	l.wake()
	return true
}

// wake wakes the loop if it sleeps in its poll, to take what was queued.
func (l *loop) wake() {
	if l.asleep.CompareAndSwap(true, false) {
		_ = l.file.SetReadDeadline(aLongTimeAgo)
	}
}

// overflow queues a cut for each socket of j on l that is not being cut
// already: one each, whatever the number of frames lost, so the queue stays
// bounded by the frames it holds and the sockets the loop has.
func (l *loop) overflow(j job) {
	cut := func(s *Socket) {
		if s.lost.CompareAndSwap(false, true) {
			l.queue = append(l.queue, job{kind: jobCut, one: s})
			l.r.overflowed.Add(1)
		}
	}
	if j.one != nil {
		cut(j.one)
		return
	}
	for _, s := range j.socks {
		if s.l == l {
			cut(s)
		}
	}
}

// stop asks the loop to finish its queue and close everything.
func (l *loop) stop() {
	l.mu.Lock()
	l.stopping = true
	l.queued.Store(true)
	l.mu.Unlock()
	_ = l.file.SetReadDeadline(aLongTimeAgo)
}

func (l *loop) run() {
	defer l.r.loopsDone.Done()
	r := l.r
	tick := int64(r.opts.tick())
	next := r.now() + tick
	stopping := false
	for {
		n := l.poll(next, stopping)
		now := r.now()
		if l.pollErr != nil {
			slog.Error("sockets: epoll_wait; this loop's streams are closed", "err", l.pollErr)
			l.abort()
			return
		}
		for i := range n {
			l.event(&l.events[i], now)
		}
		if !stopping && l.drain(now) {
			stopping = true
			l.shutdown(now)
		}
		if now >= next {
			l.tick(now)
			next = now + tick
		}
		l.expireLinger(now)
		if stopping && l.lingerN == 0 {
			l.file.Close()
			return
		}
	}
}

// poll returns how many events wait in l.events: at once if some are
// ready or a job is queued, else once some are, a push wakes the loop, or
// the next tick or linger deadline comes, with the goroutine parked in
// Go's poller meanwhile.
func (l *loop) poll(next int64, stopping bool) int {
	if l.epollNow() || l.pollErr != nil || l.queued.Load() {
		return l.polled
	}
	deadline := next
	if l.lingerAt < len(l.linger) {
		deadline = min(deadline, l.linger[l.lingerAt].since+int64(l.r.opts.Linger))
	}
	if deadline <= l.r.now() {
		return 0
	}
	// The deadline is set before asleep, so that a push that sees asleep
	// sets its past deadline after it, never before.
	_ = l.file.SetReadDeadline(l.r.start.Add(time.Duration(deadline)))
	if !stopping {
		l.asleep.Store(true)
		if l.queued.Load() {
			l.asleep.Store(false)
			return 0
		}
	}
	err := l.rc.Read(l.ready)
	l.asleep.Store(false)
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) && l.pollErr == nil {
		l.pollErr = err
	}
	return l.polled
}

// epollNow takes the events ready now into l.events (their number in
// l.polled), without waiting; true if there are some, or epoll failed
// (l.pollErr). It is also l.ready, the function Go's poller calls when
// the epoll set is readable.
func (l *loop) epollNow() bool {
	n, err := unix.EpollWait(l.epfd, l.events, 0)
	switch {
	case err == unix.EINTR:
		n = 0
	case err != nil:
		l.pollErr = err
		n = 0
	}
	l.polled = n
	return n > 0 || l.pollErr != nil
}

// event handles epoll's news about one socket.
func (l *loop) event(ev *unix.EpollEvent, now int64) {
	slot, gen := uint32(ev.Fd), uint32(ev.Pad)
	if slot == 0 || int(slot) >= len(l.slots) {
		return
	}
	s := l.slots[slot]
	if s == nil || s.gen != gen {
		return // closed earlier in this batch of events
	}
	if s.state == lingering {
		if ev.Events&unix.EPOLLERR != 0 || l.readable(s) != none {
			l.release(s)
		}
		return
	}
	why := none
	switch {
	case ev.Events&(unix.EPOLLERR|unix.EPOLLHUP) != 0:
		why = peerError(s.fd)
	case ev.Events&unix.EPOLLRDHUP != 0:
		why = ClientGone
	case ev.Events&unix.EPOLLIN != 0:
		why = l.readable(s)
	}
	if why == none && ev.Events&unix.EPOLLOUT != 0 {
		why = l.flush(s)
	}
	if why != none {
		l.close(s, why, now)
	}
}

// peerError is why the kernel reported an error on fd.
func peerError(fd int32) Reason {
	if e, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR); err == nil && unix.Errno(e) == unix.ETIMEDOUT {
		return Vanished
	}
	return ClientGone
}

// readable reads and drops what the client sent, at most readsPerWake
// reads: EOF means it left, and past Options.MaxReceive in all it is
// ended.
func (l *loop) readable(s *Socket) Reason {
	limit := int64(l.r.opts.MaxReceive)
	read := 0
	defer func() { l.mostRead = max(l.mostRead, read) }()
	for range readsPerWake {
		n, _, errno := unix.RawSyscall(unix.SYS_READ, uintptr(s.fd), uintptr(unsafe.Pointer(&l.buf[0])), uintptr(len(l.buf)))
		switch {
		case errno == unix.EAGAIN:
			return none
		case errno == unix.EINTR:
			continue
		case errno == unix.ETIMEDOUT:
			return Vanished
		case errno != 0, n == 0:
			return ClientGone
		}
		read += int(n)
		s.received += int64(n)
		if limit >= 0 && s.received > limit {
			return TooMuchInput
		}
		if int(n) < len(l.buf) {
			return none // drained, most likely: save the EAGAIN
		}
	}
	return none
}

// drain takes what was queued since the last time and does it; true once
// Close has asked the loop to stop (the queue then takes no more jobs and
// these were its last).
func (l *loop) drain(now int64) bool {
	l.mu.Lock()
	jobs := l.queue
	l.queue, l.frames = l.spare, 0
	l.queued.Store(false)
	stop := l.stopping
	l.stopped = stop
	l.mu.Unlock()
	l.spare = nil
	switch len(jobs) {
	case 0:
	case 1:
		l.do(&jobs[0], now)
	default:
		l.batch(jobs, now)
	}
	clear(jobs) // drop the frames and lists
	l.spare = jobs[:0]
	return stop
}

func (l *loop) do(j *job, now int64) {
	switch j.kind {
	case jobAdd:
		if l.add(j.one, now) {
			l.deliver(j.one, l.frame(j.frame), now, false, len(j.frame))
		}
	case jobFrame, jobEnd:
		end := j.kind == jobEnd
		if j.one != nil {
			l.deliver(j.one, l.frame(j.frame), now, end, 0)
			return
		}
		l.deferEnds = end
		for _, s := range j.socks {
			if !j.mixed || s.l == l {
				l.deliver(s, l.frame(j.frame), now, end, 0)
			}
		}
		l.endDeferred(now)
	case jobCut:
		l.close(j.one, TooSlow, now)
	case jobCall:
		j.call()
	}
}

// frame is f as the frames of one write, in the loop's scratch (a write
// may trim its element; pending keeps its own copy of the slice header).
func (l *loop) frame(f []byte) [][]byte {
	if len(f) == 0 {
		return nil
	}
	l.one[0] = f
	return l.one[:]
}

// batch does the jobs that queued up while the loop was busy socket by
// socket rather than job by job: each socket's frames from all of them,
// in the order they were handed over, go out in one writev. A burst (an
// order's statuses published at once, many orders at once) then costs a
// syscall per socket rather than per frame, and its client a read.
func (l *loop) batch(jobs []job, now int64) {
	var calls []func()
	for i := range jobs {
		j := &jobs[i]
		switch j.kind {
		case jobAdd:
			if l.add(j.one, now) {
				l.gather(j.one, j.frame, false, false, len(j.frame))
			}
		case jobFrame, jobEnd:
			end := j.kind == jobEnd
			if j.one != nil {
				l.gather(j.one, j.frame, end, false, 0)
				continue
			}
			for _, s := range j.socks {
				if !j.mixed || s.l == l {
					l.gather(s, j.frame, end, false, 0)
				}
			}
		case jobCut:
			l.gather(j.one, nil, false, true, 0)
		case jobCall:
			calls = append(calls, j.call)
		}
	}
	l.deferEnds = true
	for _, s := range l.touched {
		l.deliver(s, s.batch, now, s.batchEnd && !s.batchCut, int(s.batchFirst))
		if s.batchCut {
			l.close(s, TooSlow, now)
		}
		clear(s.batch)
		if len(l.batches) < 1024 {
			l.batches = append(l.batches, s.batch[:0])
		}
		s.gathering, s.batch, s.batchEnd, s.batchCut, s.batchFirst = false, nil, false, false, 0
	}
	clear(l.touched)
	l.touched = l.touched[:0]
	l.endDeferred(now)
	for _, f := range calls {
		f()
	}
}

// gather adds one job's frame for s to its batch.
func (l *loop) gather(s *Socket, frame []byte, end, cut bool, first int) {
	if s.state != open || s.batchEnd {
		return // after End nothing more goes out
	}
	if !s.gathering {
		s.gathering = true
		if k := len(l.batches); k > 0 {
			s.batch, l.batches[k-1] = l.batches[k-1], nil
			l.batches = l.batches[:k-1]
		}
		l.touched = append(l.touched, s)
	}
	if len(frame) > 0 {
		s.batch = append(s.batch, frame)
	}
	if first > 0 {
		s.batchFirst = int32(first)
	}
	s.batchEnd = end || cut
	s.batchCut = cut
}

// add takes s into the loop: a slot, the epoll set, the wheel. false if
// it could not be added (it is then closed).
func (l *loop) add(s *Socket, now int64) bool {
	var slot uint32
	if k := len(l.free); k > 0 {
		slot, l.free = l.free[k-1], l.free[:k-1]
	} else {
		slot = uint32(len(l.slots))
		l.slots = append(l.slots, nil)
	}
	if l.gen++; l.gen == 0 {
		l.gen = 1
	}
	s.slot, s.gen, s.state, s.lastWrite = slot, l.gen, open, now
	l.slots[slot] = s
	ev := s.event(unix.EPOLLIN | unix.EPOLLRDHUP)
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, int(s.fd), &ev); err != nil {
		slog.Error("sockets: epoll_ctl add", "err", err)
		l.close(s, WriteFailed, now)
		return false
	}
	l.wheel.add(s, now+int64(l.r.opts.Heartbeat))
	return true
}

// event is an epoll event for s: its slot and generation are the key.
func (s *Socket) event(events uint32) unix.EpollEvent {
	return unix.EpollEvent{Events: events, Fd: int32(s.slot), Pad: int32(s.gen)}
}

// deliver hands frames to s, ending it after them if end.
func (l *loop) deliver(s *Socket, frames [][]byte, now int64, end bool, firstLen int) {
	if s.state != open {
		return // ending: after End nothing more goes out; or gone
	}
	if end {
		s.state = ending
	}
	why := l.send(s, frames, now, firstLen)
	if why == none && s.state == ending && s.pending.empty() {
		if l.deferEnds {
			l.ends = append(l.ends, s)
			return
		}
		why = Ended
	}
	if why != none {
		l.close(s, why, now)
	}
}

// endDeferred ends the sockets whose last frame a group's End (or a
// batch) has written, now that it has written to all of them. Ending a
// stream costs a shutdown(2), its close hook's hand-over and, soon after,
// its client's EOF to read and a close(2): done between the writes, that
// work (and the clients' own closing, on the same cores) would hold up
// the terminal event of every later member, and an order's last
// subscribers would read it after thousands of shutdowns. Nothing can
// reach a socket in between: its state is ending, so no frame or heartbeat
// goes out, and no epoll event is handled until the job or batch is done.
func (l *loop) endDeferred(now int64) {
	l.deferEnds = false
	for i, s := range l.ends {
		l.close(s, Ended, now)
		l.ends[i] = nil
	}
	l.ends = l.ends[:0]
}

// rawWritev is writev(2) without the runtime's syscall bookkeeping: the
// descriptor is non-blocking, so the call never waits, and a loop making
// thousands of them back to back neither hands its P off nor keeps sysmon
// polling for Ps stuck in syscalls (both showed in profiles of a fan-out).
// iov is the caller's scratch, emptied again so that it keeps no frame
// alive.
func rawWritev(fd int32, bufs [][]byte, iov *[]unix.Iovec) (int, error) {
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

// send hands frames to the kernel in one writev, or queues them behind
// pending bytes, up to MaxPending of weight; the rest of Register's first
// write (firstLen: its length if it is among frames) weighs nothing.
func (l *loop) send(s *Socket, frames [][]byte, now int64, firstLen int) Reason {
	o := &l.r.opts
	total := 0
	for _, f := range frames {
		total += len(f)
	}
	if total == 0 {
		return none
	}
	s.lastWrite = now
	s.sent += int64(total)
	if !s.pending.empty() {
		for _, f := range frames {
			if !s.pending.push(f, o.weight(f), o.MaxPending) {
				return TooSlow
			}
		}
		return none
	}
	rest, written := frames, 0
	for len(rest) > 0 {
		try := rest[:min(len(rest), maxIovecs)]
		tried := 0
		for _, f := range try {
			tried += len(f)
		}
		n, err := rawWritev(s.fd, try, &l.iov)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			n = 0
		case err != nil:
			return writeError(err)
		}
		written += n
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
			for i, f := range rest {
				w := o.weight(f)
				if i == 0 && written < firstLen {
					w = 0 // the first write's rest
				}
				if !s.pending.push(f, w, o.MaxPending) {
					return TooSlow
				}
			}
			return l.park(s, now)
		}
	}
	return none
}

func writeError(err error) Reason {
	switch {
	case errors.Is(err, unix.EPIPE), errors.Is(err, unix.ECONNRESET):
		return ClientGone
	case errors.Is(err, unix.ETIMEDOUT):
		return Vanished
	}
	return WriteFailed
}

// park asks epoll for EPOLLOUT and starts s's write deadline.
func (l *loop) park(s *Socket, now int64) Reason {
	ev := s.event(unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLOUT)
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, int(s.fd), &ev); err != nil {
		slog.Error("sockets: epoll_ctl park", "err", err)
		return WriteFailed
	}
	s.since = max(now, 1)
	s.parkAt = int32(len(l.parked))
	l.parked = append(l.parked, s)
	l.r.parked.Add(1)
	return none
}

// unpark ends s's parking; rearm drops EPOLLOUT from its events.
func (l *loop) unpark(s *Socket, rearm bool) {
	if s.since == 0 {
		return
	}
	last := l.parked[len(l.parked)-1]
	l.parked[s.parkAt], last.parkAt = last, s.parkAt
	l.parked[len(l.parked)-1] = nil
	l.parked = l.parked[:len(l.parked)-1]
	s.since = 0
	l.r.parked.Add(-1)
	if rearm {
		ev := s.event(unix.EPOLLIN | unix.EPOLLRDHUP)
		// Should it fail, EPOLLOUT keeps firing and flush keeps finding
		// nothing to write: wasteful, not wrong.
		_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, int(s.fd), &ev)
	}
}

// flush writes pending bytes now that epoll says there is room.
func (l *loop) flush(s *Socket) Reason {
	for !s.pending.empty() {
		n, err := rawWritev(s.fd, s.pending.headBufs(), &l.iov)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return none // still parked; epoll reports the next room
		case err != nil:
			return writeError(err)
		}
		s.pending.consume(n, l.r.opts.weight)
	}
	l.unpark(s, true)
	if s.state == ending {
		return Ended
	}
	return none
}

// close ends s's stream for why: counted, its hook handed to a worker,
// and its descriptor closed, at once or after lingering (Reason.graceful).
func (l *loop) close(s *Socket, why Reason, now int64) {
	if s.state != fresh && s.state != open && s.state != ending {
		return
	}
	r := l.r
	if why == Ended && r.opts.ending != nil {
		r.opts.ending(s)
	}
	parked := s.since != 0
	if parked {
		l.unpark(s, false)
	}
	s.pending = pending{}
	s.dead.Store(true)
	r.registered.Add(-1)
	switch why {
	case Ended:
		r.ended.Add(1)
	case ClientGone, Vanished:
		r.gone.Add(1)
	case TooSlow, WriteTimeout, WriteFailed, TooMuchInput:
		r.cut.Add(1)
	}
	if why.graceful() && s.state != fresh && r.opts.Linger > 0 && unix.Shutdown(int(s.fd), unix.SHUT_WR) == nil {
		// The FIN goes after the bytes the kernel has; the client reads
		// them and its EOF, closes, and the loop closes on that EOF.
		if parked {
			ev := s.event(unix.EPOLLIN | unix.EPOLLRDHUP)
			_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, int(s.fd), &ev)
		}
		s.state, s.since = lingering, now
		l.linger = append(l.linger, s)
		l.lingerN++
		r.lingering.Add(1)
	} else {
		l.release(s)
	}
	// The hook goes with the call, and the socket lets go of it: a closed
	// socket stays in its loop's heartbeat wheel until its slot comes
	// round (up to Options.Heartbeat) and in its group's lists until they
	// are compacted, and through the hook it would keep the caller's whole
	// stream alive (subscription, request, handler state): under churn,
	// every stream ended in the last heartbeat interval, and the heap goal
	// and the RSS with them.
	r.hooks.post(closeCall{s: s, hook: s.onClose, why: why, sent: s.sent})
	s.onClose = nil
}

// release closes s's descriptor, which also takes it out of the epoll set
// (the duplicate is close-on-exec: no child holds a copy), and gives its
// slot back.
func (l *loop) release(s *Socket) {
	if s.state == lingering {
		l.lingerN--
		l.r.lingering.Add(-1)
	}
	_ = unix.Close(int(s.fd))
	if s.state != fresh {
		l.slots[s.slot] = nil
		l.free = append(l.free, s.slot)
	}
	s.fd, s.state = -1, closed
}

// expireLinger closes the lingering sockets whose client has not closed
// within Options.Linger.
func (l *loop) expireLinger(now int64) {
	for l.lingerAt < len(l.linger) {
		s := l.linger[l.lingerAt]
		if s.state == lingering {
			if now-s.since < int64(l.r.opts.Linger) {
				return
			}
			l.release(s)
		}
		l.linger[l.lingerAt] = nil
		l.lingerAt++
	}
	if l.lingerAt == len(l.linger) {
		l.linger, l.lingerAt = l.linger[:0], 0
	} else if l.lingerAt > 64 && 2*l.lingerAt > len(l.linger) {
		// Closes keep coming: move the rest down rather than grow.
		n := copy(l.linger, l.linger[l.lingerAt:])
		clear(l.linger[n:])
		l.linger, l.lingerAt = l.linger[:n], 0
	}
}

// tick cuts parked sockets past their deadline and writes heartbeats to
// the idle sockets whose slot has come.
func (l *loop) tick(now int64) {
	r := l.r
	limit := int64(r.opts.WriteTimeout)
	// Backwards: a close moves the last parked socket, already seen, into
	// the place of the one it removes.
	for i := len(l.parked) - 1; i >= 0; i-- {
		if i < len(l.parked) && now-l.parked[i].since >= limit {
			l.close(l.parked[i], WriteTimeout, now)
		}
	}
	l.due = l.wheel.take(now, l.due[:0])
	interval := int64(r.opts.Heartbeat)
	var beats uint64
	for _, s := range l.due {
		switch {
		case s.state != open:
			// Ending or gone: it leaves the wheel here.
		case !s.pending.empty():
			l.wheel.add(s, now+interval) // parked: bytes are on their way
		case now-s.lastWrite >= interval:
			l.deliver(s, l.frame(r.opts.KeepAlive), now, false, 0)
			if s.state == open {
				beats++
				l.wheel.add(s, now+interval)
			}
		default:
			l.wheel.add(s, s.lastWrite+interval)
		}
	}
	clear(l.due)
	if beats > 0 {
		r.heartbeats.Add(beats)
	}
}

// shutdown ends every stream still open when the loop stops.
func (l *loop) shutdown(now int64) {
	for _, s := range l.slots {
		if s != nil {
			l.close(s, Shutdown, now)
		}
	}
}

// abort closes everything at once and stops taking jobs: the loop's poll
// failed and it is about to return.
func (l *loop) abort() {
	l.mu.Lock()
	l.stopped = true
	jobs := l.queue
	l.queue = nil
	l.mu.Unlock()
	now := l.r.now()
	for _, j := range jobs {
		if j.kind == jobAdd { // never taken: closed before its first byte
			l.close(j.one, Shutdown, now)
			if j.one.state == lingering {
				l.release(j.one)
			}
		}
	}
	for _, s := range l.slots {
		if s != nil {
			l.close(s, Shutdown, now)
			if s.state == lingering {
				l.release(s)
			}
		}
	}
	l.file.Close()
}
