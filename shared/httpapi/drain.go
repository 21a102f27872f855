package httpapi

import (
	"math/rand/v2"
	"sync"
	"time"
)

// Drain ends a server's streams gradually when it shuts down, so that the
// rest of the fleet absorbs their reconnects over a window instead of in one
// instant. Once Begin is called, /healthz answers 503 (the balancer stops
// sending new work here) and every stream, open or opened later, ends at a
// frame boundary at a time drawn evenly from what is left of the window;
// its client resumes elsewhere with its Last-Event-ID.
//
// A nil *Drain never begins: streams end only through Config.Done.
type Drain struct {
	window time.Duration
	begun  chan struct{}
	once   sync.Once
	end    time.Time // the window's end; written before begun is closed
}

// NewDrain returns a drain that, once begun, ends streams over window
// (0: all at once).
func NewDrain(window time.Duration) *Drain {
	return &Drain{window: max(window, 0), begun: make(chan struct{})}
}

// Begin starts the drain, if it has not begun, and returns the time by
// which every stream will have been told to end.
func (d *Drain) Begin() time.Time {
	d.once.Do(func() {
		d.end = time.Now().Add(d.window)
		close(d.begun)
	})
	return d.end
}

// Begun is closed when the drain begins; nil (never) for a nil Drain.
func (d *Drain) Begun() <-chan struct{} {
	if d == nil {
		return nil
	}
	return d.begun
}

// Draining reports whether the drain has begun.
func (d *Drain) Draining() bool {
	select {
	case <-d.Begun():
		return true
	default:
		return false
	}
}

// streamLeft picks how much longer a stream runs once the drain has begun:
// uniformly from what is left of the window at now, so that the streams
// open at the start are spread over the whole window and one opened during
// the drain still ends before it closes.
func (d *Drain) streamLeft(now time.Time) time.Duration {
	left := d.end.Sub(now)
	if left <= 0 {
		return 0
	}
	return rand.N(left)
}
