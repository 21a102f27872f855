package sockets

import (
	"bytes"
	"testing"
)

// contents is what p would write, in order.
func (p *pending) contents() []byte {
	var b []byte
	for _, s := range p.bufs {
		b = append(b, s...)
	}
	return b
}

// checkPending runs ops against a pending queue and a plain buffer: a
// positive op pushes that many bytes (cut to 64), a negative one consumes
// up to that many (as a partial write would); the two must agree throughout.
func checkPending(t *testing.T, limit int, ops []int) {
	t.Helper()
	var p pending
	var model []byte
	var frames []int // the whole lengths of the frames queued, the first one's included
	headLeft := 0    // what is left of the first one
	next := byte(0)
	for i, op := range ops {
		switch {
		case op > 0:
			b := make([]byte, min(op, 64))
			for j := range b {
				b[j] = next
				next++
			}
			ok := p.push(b, len(b), limit)
			weight := 0
			for _, n := range frames {
				weight += n
			}
			if want := weight+len(b) <= limit; ok != want {
				t.Fatalf("op %d: push %d bytes onto %d of weight %d (limit %d) = %v", i, len(b), len(model), weight, limit, ok)
			}
			if ok {
				model = append(model, b...)
				if len(frames) == 0 {
					headLeft = len(b)
				}
				frames = append(frames, len(b))
			}
		case op < 0:
			n := min(-op, p.n, len(bytesOf(p.headBufs())))
			p.consume(n, func(b []byte) int { return len(b) })
			model = model[n:]
			for n > 0 {
				if n < headLeft {
					headLeft -= n
					break
				}
				n -= headLeft
				frames = frames[1:]
				headLeft = 0
				if len(frames) > 0 {
					headLeft = frames[0]
				}
			}
		}
		weight := 0
		for _, n := range frames {
			weight += n // a frame weighs its whole length until it has gone whole
		}
		if p.n != len(model) || !bytes.Equal(p.contents(), model) || p.empty() != (len(model) == 0) || p.weight != weight {
			t.Fatalf("op %d: queue holds %d %q weighing %d, want %d %q weighing %d", i, p.n, p.contents(), p.weight, len(model), model, weight)
		}
		if p.empty() && p.bufs != nil {
			t.Fatalf("op %d: an empty queue keeps its array", i)
		}
	}
}

func bytesOf(iov [][]byte) []byte { return bytes.Join(iov, nil) }

func TestPending(t *testing.T) {
	for _, tc := range []struct {
		name  string
		limit int
		ops   []int
	}{
		{"push and drain whole", 100, []int{10, 20, -30}},
		{"partial writes split frames", 100, []int{10, 20, -5, -10, -1, -14}},
		{"frames keep their order behind a partial one", 1000, []int{30, -7, 5, 5, -3, -40}},
		{"the limit refuses what would pass it", 50, []int{30, 30, 20, -50, 40}},
		{"an empty frame is nothing", 10, []int{0, 10, 0, -10}},
		{"consume nothing", 10, []int{5, -0, -5}},
	} {
		t.Run(tc.name, func(t *testing.T) { checkPending(t, tc.limit, tc.ops) })
	}
}

func TestPendingHeadIsCapped(t *testing.T) {
	var p pending
	for range maxIovecs + 10 {
		p.push([]byte("x"), 1, 1<<20)
	}
	if len(p.headBufs()) != maxIovecs {
		t.Fatalf("head has %d slices, want %d", len(p.headBufs()), maxIovecs)
	}
}

// With padding (FrameOverhead), a frame weighs its length less the
// padding, the first write nothing, and the limit is on the weight: a
// queue of padded frames holds as much content as one of bare frames.
func TestPendingWeighsFramesWithoutTheirPadding(t *testing.T) {
	const overhead, limit = 100, 50
	o := Options{FrameOverhead: overhead}
	weigh := o.weight
	padded := func(content int) []byte { return make([]byte, content+overhead) }
	var p pending
	if !p.push(make([]byte, 1000), 0, limit) { // the first write's rest
		t.Fatal("the first write was refused")
	}
	for i := range 5 {
		if f := padded(10); !p.push(f, weigh(f), limit) {
			t.Fatalf("padded frame %d (weight 10, queue weight %d) refused under a limit of %d", i, p.weight, limit)
		}
	}
	if f := padded(10); p.push(f, weigh(f), limit) {
		t.Fatal("a sixth frame of weight 10 passed a limit of 50")
	}
	if p.n != 1000+5*110 || p.weight != 50 {
		t.Fatalf("queue holds %d bytes weighing %d, want %d weighing 50", p.n, p.weight, 1000+5*110)
	}
	p.consume(999, weigh) // the first write all but a byte: still weighs nothing
	if p.weight != 50 {
		t.Fatalf("weight %d after a partial first write, want 50", p.weight)
	}
	p.consume(1+60, weigh) // the rest of it, and part of a frame, which keeps its weight
	if p.weight != 50 || p.head != 10 {
		t.Fatalf("weight %d, head %d after a partial frame, want 50 and 10", p.weight, p.head)
	}
	p.consume(50, weigh) // the rest of that frame
	if p.weight != 40 || p.head != 10 {
		t.Fatalf("weight %d, head %d after a whole frame, want 40 and 10", p.weight, p.head)
	}
	if f := padded(10); !p.push(f, weigh(f), limit) {
		t.Fatal("room freed by a written frame was not given back")
	}
	if w := weigh(make([]byte, 30)); w != 0 {
		t.Errorf("a frame shorter than the padding weighs %d, want 0", w)
	}
	p.consume(p.n, weigh)
	if !p.empty() || p.weight != 0 || p.head != 0 || p.bufs != nil {
		t.Fatalf("drained queue: %+v", p)
	}
}

func FuzzPending(f *testing.F) {
	f.Add(uint16(300), []byte{10, 0x85, 20, 0x9f, 0xff})
	f.Fuzz(func(t *testing.T, limit uint16, raw []byte) {
		ops := make([]int, len(raw))
		for i, b := range raw {
			if b&0x80 != 0 {
				ops[i] = -int(b & 0x7f)
			} else {
				ops[i] = int(b)
			}
		}
		checkPending(t, int(limit), ops)
	})
}
