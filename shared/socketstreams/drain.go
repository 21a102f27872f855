package socketstreams

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// drain spreads the ends of a server's streams over a window when it shuts
// down, so that the rest of the fleet absorbs their reconnects gradually
// instead of in one instant. The zero value has not begun.
type drain struct {
	once  sync.Once
	end   time.Time   // the window's end; written before begun is set
	begun atomic.Bool // read on every /healthz, without a lock
}

// begin starts the drain over window (0 or less: at once), if it has not
// begun, and returns the time by which every stream will have been told to
// end.
func (d *drain) begin(window time.Duration) time.Time {
	d.once.Do(func() {
		d.end = time.Now().Add(max(window, 0))
		d.begun.Store(true)
	})
	return d.end
}

// draining reports whether the drain has begun.
func (d *drain) draining() bool { return d.begun.Load() }

// streamLeft picks how much longer a stream runs once the drain has begun:
// uniformly from what is left of the window at now, so that the streams
// open at the start are spread over the whole window and one opened during
// the drain still ends before it closes.
func (d *drain) streamLeft(now time.Time) time.Duration {
	left := d.end.Sub(now)
	if left <= 0 {
		return 0
	}
	return rand.N(left)
}
