// Package sockets holds live SSE streams as registered sockets rather than
// goroutines: a Registry takes over a connected TCP socket, makes its first
// write (the caller's HTTP head and history), and from then on writes the frames
// it is handed with non-blocking write(2) from a few writers (about one per
// core), notices through epoll when the client goes, sends heartbeats from a
// timer wheel, and closes the socket when the stream ends. An idle stream
// costs its kernel socket and a small struct; no goroutine, no stack, no
// timer of its own.
//
// # Writing
//
// Every socket belongs to one writer, handed out in turn. Broadcast hands the
// same job (a frame and a snapshot of subscribers) to every writer (or to the
// one they all share), and each writes the frame to
// its own sockets in turn, so one socket's frames leave in the order they were
// handed over, from one goroutine. A write the kernel takes whole costs one
// syscall. Jobs that queue up while a writer is busy (a burst: an order's
// statuses published at once, many orders at once) are written socket by
// socket, each socket's frames from all of them in one writev, so a burst
// costs a syscall per socket, not per frame, and the client one read. A
// socket whose buffer is full (EAGAIN or a partial write) is parked: its
// unwritten bytes wait in a bounded queue of frame slices (no copy: frames
// are immutable and shared), later frames queue behind them, and the poller
// resumes the writes when epoll reports EPOLLOUT. A parked socket is cut when
// its queue would pass Options.MaxPending or when it has stayed parked for
// Options.WriteTimeout. Publishers only append a job to each writer's queue:
// nothing they call waits on a socket.
//
// # Reading and hang-ups
//
// The poller goroutine waits in epoll_wait for EPOLLIN, EPOLLRDHUP, EPOLLHUP
// and EPOLLERR on every socket (level-triggered), and EPOLLOUT on parked ones.
// Bytes a client sends after its request are read and discarded; EOF or a
// hang-up closes the socket at once and calls its close hook, so the caller
// can unsubscribe it and free its per-client place. The same goroutine ticks
// the heartbeat wheel and the parked sockets' deadlines between waits.
//
// # Heartbeats
//
// A timer wheel of Options.Heartbeat/4 slots-long ticks holds each socket once.
// When a socket's slot comes round, the poller looks at when it last had bytes
// written: if it has been idle for the interval it gets ": keep-alive" (batched
// per writer, one job each) and goes back one interval ahead; otherwise it goes
// back to its last write plus the interval. Busy sockets never get one, and no
// socket has a timer of its own.
//
// # Ownership of the file descriptor
//
// Register duplicates the connection's descriptor (F_DUPFD_CLOEXEC, which
// shares the open file description and so its O_NONBLOCK flag and its TCP
// state), adds the duplicate to the registry's epoll set, and only then closes
// the caller's net.Conn: that removes the original descriptor from Go's own
// poller and frees the net.Conn, while the socket stays open through the
// duplicate. From then on the registry is the duplicate's only owner and
// closes it exactly once, under the socket's lock, after which no write can
// reach a reused descriptor number. If Register fails, the caller's conn is
// left untouched and open, so the caller can keep the stream in its handler.
// The alternative, keeping the net.Conn and writing through its RawConn, would
// leave two pollers (Go's and ours) watching one descriptor and the close in
// net's hands, racing our writes against descriptor reuse.
//
// # Why not a poller library
//
// We weighed gnet (panjf2000/gnet), cloudwego/netpoll and nbio
// (lesismal/nbio). gnet and cloudwego/netpoll own the listener and the whole
// connection life cycle: they replace net/http rather than take over a
// connection it has answered, which would drop the service's HTTP stack (and
// its limits, logging and HTTP/2) for every request, not just live streams.
// nbio can adopt a net.Conn (it duplicates the descriptor as we do) but brings
// a general event loop, read buffers, a timer per connection and its own
// write-buffer policy, most of which a write-only SSE stream does not use, and
// its per-connection timers are what the heartbeat wheel here avoids. What
// this package needs from the kernel is small (epoll_ctl, epoll_wait, write,
// writev, read, close), golang.org/x/sys is already a dependency, and keeping
// it here keeps the write path, the parking rules and the close hook in one
// place the service's tests cover.
//
// # How the service hands a stream over
//
// The local server's stream handler (shared/socketstreams), for an
// HTTP/1.1 GET on a plain TCP connection, subscribes, hijacks the
// connection, and calls Register with a first write of a response head with
// "Connection: close" and no Transfer-Encoding (the body then ends with the
// connection, so every byte after the head is plain SSE, no chunk framing),
// the retry: field and the history, and an onClose that unsubscribes, frees
// the stream's places and writes its log line with the bytes sent. It then
// hands its subscription over (broker.Subscription.Handover) to a
// subscriber that is a member of a broker.Group: the fan-out hub hands each
// event once to the group for all of an order's registered streams, which
// encodes the frame once and Broadcasts it to their sockets (one job per
// writer, not one per stream). Lambda's writer, HTTP/2 (no hijack),
// HTTP/1.0 and TLS streams, and every stream where New returned
// ErrUnsupported, stay in their handlers. A stream whose Register fails
// (the registry closing at shutdown, no descriptor left) ends before its
// first byte, and its client resumes from its last event id.
//
// # Other systems
//
// On systems other than Linux, New returns ErrUnsupported and callers keep
// their streams in their handlers.
package sockets
