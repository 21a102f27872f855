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
	next := byte(0)
	for i, op := range ops {
		switch {
		case op > 0:
			b := make([]byte, min(op, 64))
			for j := range b {
				b[j] = next
				next++
			}
			ok := p.push(b, limit)
			if want := len(model)+len(b) <= limit; ok != want {
				t.Fatalf("op %d: push %d bytes onto %d (limit %d) = %v", i, len(b), len(model), limit, ok)
			}
			if ok {
				model = append(model, b...)
			}
		case op < 0:
			n := min(-op, p.n, len(bytesOf(p.head())))
			p.consume(n)
			model = model[n:]
		}
		if p.n != len(model) || !bytes.Equal(p.contents(), model) || p.empty() != (len(model) == 0) {
			t.Fatalf("op %d: queue holds %d %q, want %d %q", i, p.n, p.contents(), len(model), model)
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
		p.push([]byte("x"), 1<<20)
	}
	if len(p.head()) != maxIovecs {
		t.Fatalf("head has %d slices, want %d", len(p.head()), maxIovecs)
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
