package socketstreams

import (
	"context"
	"net"
	"time"

	"github.com/orderstream/orderstream/shared/sockets"
)

// Listen listens on addr (TCP) for a server whose streams Streams holds.
// With peerTimeout positive, every connection it accepts (a stream,
// registered or kept in its handler, or any other request's) is let go by
// the kernel once its client has acknowledged nothing for about that long,
// as when a phone lost its network (no FIN, no RST): TCP_USER_TIMEOUT and
// keep-alive probes, set once on the listening socket and copied by the
// kernel to each socket it accepts, so that a connect costs no system call
// for them (and Go's own keep-alive, four calls per accept, is left off).
// Zero leaves the kernel's own (about 15 minutes) and Go's keep-alive.
func Listen(ctx context.Context, addr string, peerTimeout time.Duration) (net.Listener, error) {
	lc := sockets.ListenConfig(peerTimeout)
	return lc.Listen(ctx, "tcp", addr)
}
