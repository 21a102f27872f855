package sockets

import (
	"errors"
	"fmt"
	"math"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Conn is what Register takes over: a connected socket that can show its
// descriptor and be closed (*net.TCPConn is one).
type Conn interface {
	syscall.Conn
	Close() error
}

// Registry holds registered sockets on its event loops; see the package
// doc. Its methods are safe for concurrent use.
type Registry struct {
	opts  Options
	start time.Time // the clock for writes and deadlines: monotonic nanoseconds since start
	loops []*loop
	next  atomic.Uint32 // the loop the next Register goes to, in turn
	hooks hooks

	closing   atomic.Bool
	closeOnce sync.Once
	loopsDone sync.WaitGroup

	registered, parked, lingering            atomic.Int64
	ended, gone, cut, overflowed, heartbeats atomic.Uint64
}

// New starts a Registry: Options.Writers event loops, ended by Close.
func New(opts Options) (*Registry, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults(runtime.GOMAXPROCS(0))
	r := &Registry{opts: opts, start: time.Now()}
	r.hooks.max = max(8, 4*opts.Writers)
	for i := range opts.Writers {
		l, err := newLoop(r, i)
		if err != nil {
			for _, l := range r.loops {
				l.file.Close()
			}
			return nil, err
		}
		r.loops = append(r.loops, l)
	}
	r.loopsDone.Add(len(r.loops))
	for _, l := range r.loops {
		go l.run()
	}
	return r, nil
}

// errFirstTooLarge is Register's answer to a first write of 2 GiB or more.
var errFirstTooLarge = errors.New("sockets: first write of 2 GiB or more")

func (r *Registry) now() int64 { return int64(time.Since(r.start)) }

// Register takes over c, on which the caller has written nothing yet or
// only whole bytes it has flushed: from here on only the Registry writes
// to it and closes it (see Registration). The socket goes to the next loop
// in turn, which makes its first write. On error c is left open and still
// the caller's.
func (r *Registry) Register(c Conn, reg Registration) (*Socket, error) {
	if r.closing.Load() {
		return nil, ErrClosed
	}
	if len(reg.First) > math.MaxInt32 {
		return nil, errFirstTooLarge // Socket.batchFirst is an int32
	}
	fd, err := dup(c)
	if err != nil {
		return nil, err
	}
	if r.opts.PeerTimeout > 0 {
		if err := setPeerTimeout(fd, r.opts.PeerTimeout); err != nil {
			unix.Close(fd)
			return nil, err
		}
	}
	l := r.loops[r.next.Add(1)%uint32(len(r.loops))]
	s := &Socket{l: l, onClose: reg.OnClose, fd: int32(fd)}
	r.registered.Add(1)
	// The loop adds s to its epoll set and makes the first write before it
	// takes any later job for s: nothing can come before the first bytes.
	if !l.push(job{kind: jobAdd, one: s, frame: reg.First}) {
		r.registered.Add(-1)
		unix.Close(fd)
		return nil, ErrClosed
	}
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
	// One struct for what the closure sets: one allocation on the connect
	// path, where two variables would be two.
	var d struct {
		fd  int
		err error
	}
	if err := rc.Control(func(s uintptr) { d.fd, d.err = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, fmt.Errorf("sockets: take over connection: %w", err)
	}
	if d.err != nil {
		return -1, fmt.Errorf("sockets: dup: %w", d.err)
	}
	fd := d.fd
	// Go's net sets O_NONBLOCK on the shared file description already;
	// make sure, since every write here relies on it (one F_GETFL when
	// it is so).
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("sockets: set non-blocking: %w", err)
	}
	return fd, nil
}

// ListenConfig is a listener whose accepted sockets all have the peer
// timeout (see Options.PeerTimeout) from the start: it is set once on the
// listening socket, whose options the kernel copies to each socket it
// accepts, and Go's own keep-alive settings, four more system calls per
// accept, are left off. Register then has nothing to set per socket (leave
// Options.PeerTimeout 0), and connections that never become registered
// streams (a stream kept in its handler, a publisher's idle keep-alive
// connection) are let go in bounded time too. d <= 0: Go's defaults.
func ListenConfig(d time.Duration) net.ListenConfig {
	if d <= 0 {
		return net.ListenConfig{}
	}
	return net.ListenConfig{
		KeepAlive: -1, // the listening socket's keep-alive is inherited instead
		Control: func(_, _ string, c syscall.RawConn) error {
			var err error
			if cerr := c.Control(func(fd uintptr) { err = setPeerTimeout(int(fd), d) }); cerr != nil {
				return cerr
			}
			return err
		},
	}
}

// setPeerTimeout makes the kernel give up on a peer that acknowledges
// nothing for d: TCP_USER_TIMEOUT bounds retransmissions of unacknowledged
// bytes (a heartbeat or a frame), and keep-alive probes from half of d on
// make an idle connection have something unacknowledged too. With a user
// timeout set, the kernel drops the connection once d has passed since the
// peer last answered, whatever TCP_KEEPCNT says.
func setPeerTimeout(fd int, d time.Duration) error {
	idle := max(1, int(d/2/time.Second))
	intvl := max(1, int(d/4/time.Second))
	for _, o := range []struct{ level, opt, v int }{
		{unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, max(1, int(d/time.Millisecond))},
		{unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
		{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, idle},
		{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, intvl},
	} {
		if err := unix.SetsockoptInt(fd, o.level, o.opt, o.v); err != nil {
			return fmt.Errorf("sockets: peer timeout: %w", err)
		}
	}
	return nil
}

// Broadcast writes frame to every socket of socks, each after what it was
// handed before. It never waits for a socket: it queues one job for each
// loop that holds some of socks (the whole list, which each loop filters
// for its own; a Group hands each loop only its own). frame and socks are
// kept until written and must not be changed. A loop whose queue is full
// cuts its sockets among socks as TooSlow.
func (r *Registry) Broadcast(frame []byte, socks []*Socket) {
	if len(socks) == 0 {
		return
	}
	l := socks[0].l
	for _, s := range socks[1:] {
		if s.l != l {
			for _, l := range r.loops {
				l.push(job{frame: frame, socks: socks, mixed: true})
			}
			return
		}
	}
	l.push(job{frame: frame, socks: socks})
}

// Stats returns the counters.
func (r *Registry) Stats() Stats {
	return Stats{
		Registered: r.registered.Load(),
		Parked:     r.parked.Load(),
		Lingering:  r.lingering.Load(),
		Ended:      r.ended.Load(),
		Gone:       r.gone.Load(),
		Cut:        r.cut.Load(),
		Overflowed: r.overflowed.Load(),
		Heartbeats: r.heartbeats.Load(),
	}
}

// Close ends the Registry: each loop writes the jobs already queued for it,
// takes no more, ends every stream still open with Shutdown (shutting its
// write side down and lingering, as Options.Linger says: a caller draining
// gracefully calls End on its streams first), waits for the lingering
// descriptors to close, and returns; Close then waits for the close hooks.
// Later calls return nil at once.
func (r *Registry) Close() error {
	r.closeOnce.Do(func() {
		r.closing.Store(true)
		for _, l := range r.loops {
			l.stop()
		}
		r.loopsDone.Wait()
		r.hooks.wait()
	})
	return nil
}

// Socket is one registered stream. It belongs to one loop, which alone
// writes to it, reads from it and closes it; other goroutines only queue
// jobs for it and look at its atomic flags.
type Socket struct {
	l       *loop
	onClose func(Reason, int64)
	group   atomic.Pointer[Group] // the Group it is in, if any
	dead    atomic.Bool           // its stream has ended: groups drop it
	lost    atomic.Bool           // a frame could not be queued for it: it is being cut

	// The loop's own, touched by its goroutine only (and by Register
	// before the socket is handed to the loop). Every idle stream holds a
	// Socket, so the small fields are packed together: 160 bytes, not 176.
	fd        int32 // -1 once closed
	slot, gen uint32
	parkAt    int32 // its index in the loop's parked list
	lastWrite int64 // Registry.now of the last bytes handed to the kernel or queued
	since     int64 // Registry.now when parked or, once lingering, when it began
	sent      int64 // bytes handed to the kernel or queued, for onClose
	received  int64 // bytes the client sent after its request
	pending   pending

	state state

	// What its loop gathers for it from one batch of jobs (loop.batch).
	gathering  bool
	batchEnd   bool // an End or a cut is among them: nothing after it
	batchCut   bool
	batchFirst int32 // the length of Register's first write, if it is among them (Register refuses one of 2 GiB)
	batch      [][]byte
}

type state uint8

const (
	fresh     state = iota // registered, not yet taken by its loop
	open                   // in its loop's epoll set and wheel
	ending                 // End was handled: closes once pending drains
	lingering              // ended, write side shut down: waits for the client's EOF
	closed                 // descriptor closed
)

// Send writes frame to s after what it was handed before, without waiting.
// frame must not be changed afterwards. If s's loop cannot queue it, s is
// cut as TooSlow.
func (s *Socket) Send(frame []byte) { s.l.push(job{frame: frame, one: s}) }

// End writes last (if not empty) after everything s was handed before,
// drops whatever it is handed after, then ends s with Ended once the
// kernel has taken it all (or cuts it as any parked socket), shutting the
// write side down and lingering for the client's EOF. It is how a terminal
// event, MAX_STREAM_DURATION or a graceful drain ends a stream.
func (s *Socket) End(last []byte) { s.l.push(job{frame: last, one: s, kind: jobEnd}) }
