package sockets

import (
	"errors"
	"fmt"
	"time"
)

// Options tunes a Registry. Heartbeat, WriteTimeout and KeepAlive are the
// streams' own settings and required (New fails without them); the rest
// tune the registry and take its defaults when zero.
type Options struct {
	// Heartbeat is how long a socket may go without bytes before it is sent
	// KeepAlive.
	Heartbeat time.Duration
	// WriteTimeout is how long a socket may stay parked with bytes the
	// kernel will not take before it is cut as a slow subscriber.
	WriteTimeout time.Duration
	// MaxPending is how many unwritten bytes a parked socket may hold,
	// FrameOverhead not counted; a frame that would pass it cuts the socket
	// (default 256 KiB).
	MaxPending int
	// FrameOverhead is how many bytes of every frame and heartbeat are
	// padding (FLUSH_PADDING): a parked socket's pending frames count
	// against MaxPending without them, so padding never makes a reader that
	// keeps up look slow. Frames shorter than it count as nothing.
	FrameOverhead int
	// Writers is how many event loops hold the sockets, each with its own
	// epoll set and its own share of the sockets (default GOMAXPROCS).
	Writers int
	// QueueLen is how many frames (a Send, an End, or one Broadcast's share
	// for the loop) may wait for a loop; a frame that finds its loop's
	// queue full is not queued and the sockets it was for are cut as
	// TooSlow, so a publisher never waits (default 16384).
	QueueLen int
	// KeepAlive is the heartbeat's bytes (an SSE comment, ": keep-alive\n\n";
	// a caller that pads every write, FLUSH_PADDING, pads it too).
	KeepAlive []byte
	// Linger is how long a stream the server ends (End, a cut, Close) keeps
	// its descriptor after shutdown(SHUT_WR), reading and dropping what the
	// client still sends, until the client's EOF: closing with unread bytes
	// would reset the connection and could lose the last frames on their
	// way (default 500ms, as net/http; negative: close at once).
	Linger time.Duration
	// MaxReceive is how many bytes a client may send after its request
	// before its stream is ended with TooMuchInput; they are read and
	// dropped a bounded amount per wakeup (default 64 KiB; negative: no
	// limit).
	MaxReceive int
	// PeerTimeout, if positive, ends a stream whose client stopped
	// acknowledging (a phone that lost its network: no FIN, no RST) after
	// about this long: Register sets TCP_USER_TIMEOUT and TCP keep-alive
	// probes on its socket, so an idle one is found too. Zero leaves the
	// kernel's defaults (about 15 minutes of retransmissions).
	PeerTimeout time.Duration

	// ending, if set, runs on a socket's loop as the loop ends it after its
	// last frame (Ended), before the shutdown: tests look at the loop's
	// other sockets then.
	ending func(*Socket)
}

// check reports the required options that are missing.
func (o Options) check() error {
	var errs []error
	if o.Heartbeat <= 0 {
		errs = append(errs, fmt.Errorf("sockets: Options.Heartbeat must be positive, got %v", o.Heartbeat))
	}
	if o.WriteTimeout <= 0 {
		errs = append(errs, fmt.Errorf("sockets: Options.WriteTimeout must be positive, got %v", o.WriteTimeout))
	}
	if len(o.KeepAlive) == 0 {
		errs = append(errs, errors.New("sockets: Options.KeepAlive is empty"))
	}
	return errors.Join(errs...)
}

func (o Options) withDefaults(procs int) Options {
	if o.MaxPending <= 0 {
		o.MaxPending = 256 << 10
	}
	o.FrameOverhead = max(0, o.FrameOverhead)
	if o.Writers <= 0 {
		o.Writers = max(1, procs)
	}
	if o.QueueLen <= 0 {
		o.QueueLen = 16384
	}
	if o.Linger == 0 {
		o.Linger = 500 * time.Millisecond
	}
	if o.MaxReceive == 0 {
		o.MaxReceive = 64 << 10
	}
	return o
}

// tick is how often a loop looks at its heartbeat wheel and at its parked
// sockets' deadlines: a quarter of the shorter interval, so a heartbeat or
// a cut is at most a quarter late.
func (o Options) tick() time.Duration {
	return max(time.Millisecond, min(o.Heartbeat, o.WriteTimeout)/4)
}

// weight is what a pending frame counts against MaxPending.
func (o Options) weight(frame []byte) int { return max(0, len(frame)-o.FrameOverhead) }

// Registration is what Register needs besides the connection.
type Registration struct {
	// First is the socket's first write (the response head and the
	// history), made before any frame or heartbeat it is handed later. It
	// may be longer than Options.MaxPending; a parked first write still
	// waits at most Options.WriteTimeout.
	First []byte
	// OnClose, if not nil, is called once when the stream ends, with the
	// reason and how many bytes it was handed in all (First, frames and
	// heartbeats). It runs on one of the registry's hook workers, never on
	// an event loop, so a hook that blocks (a lock, a full log pipe)
	// delays no stream; the socket's descriptor may stay open for up to
	// Options.Linger after it. It may call Broadcast, Send, End and
	// Register, not Close.
	OnClose func(reason Reason, sent int64)
}

// Reason says why a registered socket was closed.
type Reason int

const (
	none Reason = iota
	// Ended: End was called and its last bytes went out.
	Ended
	// ClientGone: the client closed or reset the connection.
	ClientGone
	// TooSlow: a frame would have passed Options.MaxPending, or could not
	// be queued for the socket's loop (Options.QueueLen).
	TooSlow
	// WriteTimeout: the socket stayed parked for Options.WriteTimeout.
	WriteTimeout
	// WriteFailed: write(2) failed for another reason than the client going.
	WriteFailed
	// Shutdown: the Registry was closed.
	Shutdown
	// TooMuchInput: the client sent more than Options.MaxReceive bytes
	// after its request.
	TooMuchInput
	// Vanished: the client stopped acknowledging for Options.PeerTimeout
	// (TCP_USER_TIMEOUT or keep-alive probes went unanswered).
	Vanished
)

func (r Reason) String() string {
	switch r {
	case Ended:
		return "ended"
	case ClientGone:
		return "client gone"
	case TooSlow:
		return "too slow"
	case WriteTimeout:
		return "write timeout"
	case WriteFailed:
		return "write failed"
	case Shutdown:
		return "shutdown"
	case TooMuchInput:
		return "too much input"
	case Vanished:
		return "client vanished"
	}
	return "none"
}

// graceful tells whether a close for this reason shuts the write side
// down and lingers for the client's EOF (see Options.Linger): the server
// ended the stream and the client may still be reading. A client that
// left, vanished, floods or cannot be written to is closed at once.
func (r Reason) graceful() bool {
	switch r {
	case Ended, Shutdown, TooSlow, WriteTimeout:
		return true
	}
	return false
}

// Stats are a Registry's counters, for metrics.
type Stats struct {
	Registered int64  // streams held now
	Parked     int64  // of those, sockets waiting for the kernel to take their bytes
	Lingering  int64  // ended streams whose descriptor waits for the client's EOF (Options.Linger)
	Ended      uint64 // streams ended by End
	Gone       uint64 // clients that went away or vanished
	Cut        uint64 // slow subscribers cut (TooSlow, WriteTimeout), failed writes, floods
	Overflowed uint64 // of the cut, streams a frame could not be queued for (Options.QueueLen)
	Heartbeats uint64 // keep-alive comments written
}

var (
	// ErrUnsupported is New's error where there is no poller: keep the
	// stream in its handler.
	ErrUnsupported = errors.New("sockets: registered streams are not supported on this system")
	// ErrClosed is Register's error once the Registry is closed.
	ErrClosed = errors.New("sockets: registry closed")
)
