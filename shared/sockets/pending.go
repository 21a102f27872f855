package sockets

// pending is a parked socket's bytes that the kernel has not taken yet: the
// frames in order, the first one cut to its unwritten rest. It holds slices
// of the shared frames, never copies, so a frame must not change once handed
// over (the broker's frames never do).
type pending struct {
	bufs [][]byte
	n    int // bytes in bufs
}

// maxIovecs is how many slices one writev takes (IOV_MAX is 1024 on Linux).
const maxIovecs = 1024

func (p *pending) empty() bool { return p.n == 0 }

// push appends b unless the queue would pass limit bytes.
func (p *pending) push(b []byte, limit int) bool {
	if len(b) == 0 {
		return true
	}
	if p.n+len(b) > limit {
		return false
	}
	p.bufs = append(p.bufs, b)
	p.n += len(b)
	return true
}

// head is what the next writev should try, in order.
func (p *pending) head() [][]byte { return p.bufs[:min(len(p.bufs), maxIovecs)] }

// consume drops the n bytes a write took from the front.
func (p *pending) consume(n int) {
	p.n -= n
	for n > 0 {
		if n < len(p.bufs[0]) {
			p.bufs[0] = p.bufs[0][n:]
			return
		}
		n -= len(p.bufs[0])
		p.bufs[0] = nil // let the frame go
		p.bufs = p.bufs[1:]
	}
	if p.n == 0 {
		p.bufs = nil // a drained queue keeps no array
	}
}
