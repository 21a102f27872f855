package sockets

import "time"

// wheel holds each of a loop's sockets in the slot of the tick at which its
// heartbeat falls due. Slots cover one heartbeat interval and a tick more,
// so a socket is never more than a lap ahead. A socket is only looked at
// when its slot comes round: writes move nothing (the loop compares the
// socket's last write when it gets there), so the wheel costs a pointer per
// socket and a look per interval. It belongs to its loop's goroutine.
type wheel struct {
	tick  int64 // nanoseconds
	slots [][]*Socket
	next  int64 // the absolute tick number take has not yet emptied
}

func (w *wheel) init(tick, interval time.Duration) {
	w.tick = int64(tick)
	w.slots = make([][]*Socket, int64(interval)/w.tick+2)
}

// add files s under the tick of due (nanoseconds on the Registry's clock),
// or the next tick to be taken if due is already past.
func (w *wheel) add(s *Socket, due int64) {
	t := max(due/w.tick, w.next)
	i := t % int64(len(w.slots))
	w.slots[i] = append(w.slots[i], s)
}

// take appends to into the sockets of every tick up to now, and empties
// those slots.
func (w *wheel) take(now int64, into []*Socket) []*Socket {
	last := now / w.tick
	for t := w.next; t <= last && t < w.next+int64(len(w.slots)); t++ {
		i := t % int64(len(w.slots))
		into = append(into, w.slots[i]...)
		clear(w.slots[i])
		w.slots[i] = w.slots[i][:0]
	}
	w.next = last + 1
	return into
}

// size is how many sockets the wheel holds, closed ones not yet dropped
// included.
func (w *wheel) size() int {
	n := 0
	for _, s := range w.slots {
		n += len(s)
	}
	return n
}
