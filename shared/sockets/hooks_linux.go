package sockets

import "sync"

// closeCall is a stream's end, for its hook.
type closeCall struct {
	s    *Socket
	hook func(Reason, int64)
	why  Reason
	sent int64
}

// run takes s out of its group and calls its close hook.
func (c closeCall) run() {
	if g := c.s.group.Load(); g != nil {
		g.leave(c.s)
	}
	if c.hook != nil {
		c.hook(c.why, c.sent)
	}
}

// hooks runs close hooks off the loops: a hook takes the caller's locks,
// updates metrics and writes a log line, any of which may wait, and a
// loop must not. Workers start when a hook is posted and every running
// worker is inside another one, up to max, and return when the queue is
// empty: no goroutine while nothing closes, and a hook that blocks holds
// up only its own worker. The queue holds a call per stream that ended
// and has not been run: bounded by the streams the registry held.
type hooks struct {
	mu      sync.Mutex
	queue   []closeCall
	head    int // queue[:head] are taken
	workers int // running
	busy    int // of those, inside a hook
	max     int
	wg      sync.WaitGroup
}

func (h *hooks) post(c closeCall) {
	h.mu.Lock()
	h.queue = append(h.queue, c)
	if h.workers-h.busy < len(h.queue)-h.head && h.workers < h.max {
		h.workers++
		h.wg.Add(1)
		go h.work()
	}
	h.mu.Unlock()
}

func (h *hooks) work() {
	defer h.wg.Done()
	h.mu.Lock()
	for h.head < len(h.queue) {
		c := h.queue[h.head]
		h.queue[h.head] = closeCall{}
		switch h.head++; {
		case h.head == len(h.queue):
			h.queue, h.head = h.queue[:0], 0
		case h.head > 64 && 2*h.head > len(h.queue):
			// Closes keep coming: move the rest down rather than grow.
			n := copy(h.queue, h.queue[h.head:])
			clear(h.queue[n:])
			h.queue, h.head = h.queue[:n], 0
		}
		h.busy++
		h.mu.Unlock()
		c.run()
		h.mu.Lock()
		h.busy--
	}
	h.workers--
	h.mu.Unlock()
}

// wait returns once every posted hook has run; nothing may be posted
// meanwhile (the loops have returned).
func (h *hooks) wait() { h.wg.Wait() }
