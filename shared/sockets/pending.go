package sockets

// pending is a parked socket's bytes that the kernel has not taken yet: the
// frames in order, the first one cut to its unwritten rest. It holds slices
// of the shared frames, never copies, so a frame must not change once handed
// over (the broker's frames never do).
//
// Each frame has a weight, what it counts against the socket's limit: its
// length less the padding every frame carries (Options.weight), or nothing
// for Register's first write. The limit is on the weight, so a padded
// stream is held to the same allowance of content as an unpadded one.
type pending struct {
	bufs   [][]byte
	n      int // bytes in bufs
	weight int // what bufs weigh in all
	head   int // what bufs[0] weighs
}

// maxIovecs is how many slices one writev takes (IOV_MAX is 1024 on Linux).
const maxIovecs = 1024

func (p *pending) empty() bool { return p.n == 0 }

// push appends b, of weight w, unless the queue's weight would pass limit.
func (p *pending) push(b []byte, w, limit int) bool {
	if len(b) == 0 {
		return true
	}
	if p.weight+w > limit {
		return false
	}
	if len(p.bufs) == 0 {
		p.head = w
	}
	p.bufs = append(p.bufs, b)
	p.n += len(b)
	p.weight += w
	return true
}

// head is what the next writev should try, in order.
func (p *pending) headBufs() [][]byte { return p.bufs[:min(len(p.bufs), maxIovecs)] }

// consume drops the n bytes a write took from the front; weigh gives the
// weight of a frame that comes to the front whole (every frame but the
// first write, which is never behind another).
func (p *pending) consume(n int, weigh func([]byte) int) {
	p.n -= n
	for n > 0 {
		if n < len(p.bufs[0]) {
			p.bufs[0] = p.bufs[0][n:]
			return
		}
		n -= len(p.bufs[0])
		p.bufs[0] = nil // let the frame go
		p.bufs = p.bufs[1:]
		p.weight -= p.head
		p.head = 0
		if len(p.bufs) > 0 {
			p.head = weigh(p.bufs[0])
		}
	}
	if p.n == 0 {
		p.bufs = nil // a drained queue keeps no array
	}
}
