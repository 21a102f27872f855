// Package sockets holds live SSE streams as registered sockets rather than
// goroutines: a Registry takes over a connected TCP socket, makes its first
// write (the caller's HTTP head and history), and from then on writes the
// frames it is handed with non-blocking writes, notices when the client
// goes, sends heartbeats from a timer wheel, and ends the stream when it is
// told to or when the client cannot keep up. An idle stream costs its
// kernel socket and a small struct; no goroutine, no stack, no timer of
// its own.
//
// # Event loops
//
// A Registry runs Options.Writers event loops (one per core by default),
// the shape of gnet and nbio. Register hands each socket to a loop in
// turn, and that loop alone polls it (in its own epoll set), writes to it,
// parks it, sends its heartbeats and closes it: no lock per socket, no
// poller shared by all. Other goroutines only queue jobs for a loop: a
// frame for one socket (Send, End), a frame for the loop's members of a
// Group (Group.Broadcast), a registration. An idle loop's goroutine is
// parked in Go's own poller, which watches the loop's epoll set as one
// descriptor (an epoll set is readable when one of its sockets is ready),
// so an idle loop holds no thread and no P, and a push wakes it by setting
// a read deadline in the past, which costs no system call.
//
// # Writing
//
// A loop writes a job's frame to each of its sockets in turn: a write the
// kernel takes whole costs one writev. Jobs that queue up while the loop is
// busy (a burst) are written socket by socket, each socket's frames from
// all of them in one writev, so a burst costs a syscall per socket, not
// per frame, and the client one read. A socket whose buffer is full
// (EAGAIN or a partial write) is parked: its unwritten bytes wait in a
// bounded queue of frame slices (no copy: frames are immutable and
// shared), later frames queue behind them, and the loop resumes the writes
// when epoll reports EPOLLOUT. A parked socket is cut when its queue would
// pass Options.MaxPending (frames weighed without Options.FrameOverhead,
// the padding a caller adds to every frame and heartbeat) or when it has
// stayed parked for Options.WriteTimeout.
//
// # Bounded queues
//
// A loop's queue holds at most Options.QueueLen frames. A publisher never
// waits: a frame that finds the queue full is not queued, and the sockets
// it was for on that loop are cut as TooSlow, after the frames queued
// before it (their clients resume from their last event id, losing
// nothing). A socket is cut once however many frames it loses, so the
// queue stays bounded by its frames and the loop's sockets.
//
// # Groups
//
// A Group is a set of sockets that take the same frames: an order's
// streams. It keeps its members per loop in copy-on-write lists, so
// Broadcast reads them without a lock and hands each loop one job carrying
// only its own members, and a loop never looks at another loop's sockets.
// A socket leaves its group when its stream ends; the lists drop ended
// sockets lazily, once they are half of them.
//
// # Reading, hang-ups and vanished clients
//
// Each loop's epoll set reports EPOLLIN, EPOLLRDHUP, EPOLLHUP and EPOLLERR
// for its sockets (level-triggered), and EPOLLOUT for parked ones. Bytes a
// client sends after its request are read and dropped, at most 64 KiB per
// socket per wakeup (the rest waits for the next, so a flood cannot hold a
// loop), and a client that sends more than Options.MaxReceive in all is
// ended (TooMuchInput). EOF or a hang-up ends the stream at once
// (ClientGone). A client that vanishes without a FIN or a RST (a phone
// that lost its network) is found by the kernel: with Options.PeerTimeout,
// Register sets TCP_USER_TIMEOUT and keep-alive probes on the socket, and
// the kernel's error ends the stream (Vanished) within about that time,
// idle or not. A server can instead set them once on its listener
// (ListenConfig), whose options every socket it accepts inherits: no
// system call per connect, and its other connections are covered too.
//
// # Closing like net/http
//
// A stream the server ends (End, a cut, Close) is closed as net/http closes
// a connection: shutdown(SHUT_WR), so the FIN follows every byte the
// kernel has, then the descriptor stays open, its client's bytes read and
// dropped, until the client's EOF or Options.Linger. Closing at once with
// bytes from the client unread would make the kernel send a reset, which
// can throw away the last frames on their way, the terminal event among
// them. A client that left or misbehaves is closed at once.
//
// A job that ends many streams (Group.End: an order's terminal event to
// all its streams on the loop, or a burst ending in one) writes the last
// frame to every one of them first and ends them in a second pass: the
// shutdowns, close hooks and the clients' own closing would otherwise sit
// between the terminal event of the first stream and of the last (the
// order's p99 was the terminal event's, 2-3x the raw loop's at 10,000
// streams). A closed socket lets go of its close hook once it is handed
// to a worker: it may stay in its loop's heartbeat wheel for up to an
// interval, and must not keep its caller's stream alive meanwhile.
//
// # Close hooks
//
// Registration.OnClose runs when the stream ends, on a worker, never on a
// loop: a hook takes the caller's locks, updates metrics and writes a log
// line, and one that blocks holds up no stream. Workers start when a hook
// waits and every running worker is busy (up to a bound), and return when
// there are no more: no goroutine while nothing closes.
//
// # Heartbeats
//
// Each loop has a timer wheel of Options.Heartbeat/4 slots-long ticks
// holding each of its sockets once. When a socket's slot comes round, the
// loop looks at when it last had bytes written: if it has been idle for
// the interval it gets ": keep-alive" and goes back one interval ahead;
// otherwise it goes back to its last write plus the interval. Busy and
// parked sockets never get one, and no socket has a timer of its own.
//
// # Ownership of the file descriptor
//
// Register duplicates the connection's descriptor (F_DUPFD_CLOEXEC, which
// shares the open file description and so its O_NONBLOCK flag and its TCP
// state), hands the duplicate to its loop, and only then closes the
// caller's net.Conn: that removes the original descriptor from Go's own
// poller and frees the net.Conn, while the socket stays open through the
// duplicate. From then on the socket's loop is the duplicate's only owner
// and closes it exactly once, after which no write can reach a reused
// descriptor number (a loop's epoll keys carry a generation, so an event
// for a closed socket is never taken for its slot's next one). If Register
// fails, the caller's conn is left untouched and open, so the caller can
// keep the stream in its handler. The alternative, keeping the net.Conn
// and writing through its RawConn, would leave two pollers (Go's and ours)
// watching one descriptor and the close in net's hands.
//
// # Why not a poller library
//
// We weighed gnet (panjf2000/gnet), cloudwego/netpoll and nbio
// (lesismal/nbio), whose loop-per-core shape this package follows. Our
// streams arrive accepted and answered by net/http, and after the first
// write we only write, and read to notice the client go. gnet can adopt a
// net.Conn (Client.Enroll duplicates its descriptor, as Register does),
// but every asynchronous write is a task per connection in the loop's
// unbounded queue, with no write to many connections at once and no bound
// that turns a full queue into a cut, and it reads whatever a client sends
// into its buffers for an OnTraffic handler. cloudwego/netpoll owns the
// listener and reads eagerly into its linked buffers for an RPC handler.
// nbio adopts a net.Conn too, but guards each connection with a mutex and
// writes on the caller's goroutine, and keeps a timer per connection,
// which the heartbeat wheel here avoids. None closes with SHUT_WR and a
// linger, weighs padding, or sets TCP_USER_TIMEOUT for us. What this
// package needs from the kernel is small (epoll_ctl, epoll_wait, writev,
// read, shutdown, close, setsockopt), golang.org/x/sys is already a
// dependency, and keeping it here keeps the write path, the parking and
// cutting rules and the close hook in one place the service's tests cover.
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
// encodes the frame once and Broadcasts it to their sockets. Lambda's
// writer, HTTP/2 (no hijack), HTTP/1.0 and TLS streams, and every stream
// where New returned ErrUnsupported, stay in their handlers. A stream whose
// Register fails (the registry closing at shutdown, no descriptor left)
// ends before its first byte, and its client resumes from its last event
// id.
//
// # Other systems
//
// On systems other than Linux, New returns ErrUnsupported and callers keep
// their streams in their handlers.
package sockets
