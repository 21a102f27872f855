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
	// MaxPending is how many unwritten bytes a parked socket may hold; a
	// frame that would pass it cuts the socket (default 256 KiB).
	MaxPending int
	// Writers is how many goroutines write frames (default GOMAXPROCS).
	Writers int
	// KeepAlive is the heartbeat's bytes (an SSE comment, ": keep-alive\n\n";
	// a caller that pads every write, FLUSH_PADDING, pads it too).
	KeepAlive []byte
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
	if o.Writers <= 0 {
		o.Writers = max(1, procs)
	}
	return o
}

// tick is how often the poller looks at the heartbeat wheel and at the
// parked sockets' deadlines: a quarter of the shorter interval, so a
// heartbeat or a cut is at most a quarter late.
func (o Options) tick() time.Duration {
	return max(time.Millisecond, min(o.Heartbeat, o.WriteTimeout)/4)
}

// Registration is what Register needs besides the connection.
type Registration struct {
	// First is the socket's first write (the response head and the
	// history), made before any frame or heartbeat it is handed later. It
	// may be longer than Options.MaxPending; a parked first write still
	// waits at most Options.WriteTimeout.
	First []byte
	// OnClose, if not nil, is called once when the socket closes, with the
	// reason and how many bytes it was handed in all (First, frames and
	// heartbeats), from a registry goroutine or from Close. It must not
	// block for long; it may call Broadcast, Send, End and Register, not
	// Close.
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
	// TooSlow: a frame would have passed Options.MaxPending.
	TooSlow
	// WriteTimeout: the socket stayed parked for Options.WriteTimeout.
	WriteTimeout
	// WriteFailed: write(2) failed for another reason than the client going.
	WriteFailed
	// Shutdown: the Registry was closed.
	Shutdown
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
	}
	return "none"
}

// Stats are a Registry's counters, for metrics.
type Stats struct {
	Registered int64  // sockets held now
	Parked     int64  // of those, sockets waiting for the kernel to take their bytes
	Ended      uint64 // streams ended by End
	Gone       uint64 // clients that went away
	Cut        uint64 // slow subscribers cut (TooSlow, WriteTimeout) and failed writes
	Heartbeats uint64 // keep-alive comments written
}

var (
	// ErrUnsupported is New's error where there is no poller: keep the
	// stream in its handler.
	ErrUnsupported = errors.New("sockets: registered streams are not supported on this system")
	// ErrClosed is Register's error once the Registry is closed.
	ErrClosed = errors.New("sockets: registry closed")
)
