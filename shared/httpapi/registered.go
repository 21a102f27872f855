package httpapi

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"sync"
	"time"

	"github.com/orderstream/orderstream/shared/broker"
	"github.com/orderstream/orderstream/shared/sockets"
)

// socketStreams hands live streams to a sockets.Registry (Config.Sockets):
// a stream becomes a registered socket whose first write is its head and
// history, and a broker subscriber with no goroutine of its own. The
// socketStreams is those subscribers' broker.Group: the hub hands it each
// event once for all of an order's registered streams, and it encodes the
// frame once and broadcasts it to their sockets. It also keeps the
// registered streams so that the server's drain and shutdown can end
// them, at a frame boundary, as they end streams in handlers. A nil
// *socketStreams registers nothing.
type socketStreams struct {
	reg     *sockets.Registry
	logger  *slog.Logger
	m       *metrics
	streams *Streams
	drain   *Drain
	padding []byte // Config.FlushPadding's block, after every frame

	mu       sync.Mutex
	live     map[*registered]struct{}
	draining bool // the drain has begun: streams added get an end of their own
	done     bool // Config.Done is closed: streams added end at once
}

// newSocketStreams returns nil unless cfg has a registry, a Done to end
// the streams at shutdown and a Streams to wait for them; otherwise it
// starts the goroutine that ends registered streams when the drain begins
// and when Done is closed, and returns once Done is closed.
func newSocketStreams(logger *slog.Logger, cfg *Config, m *metrics) *socketStreams {
	if cfg.Sockets == nil || cfg.Done == nil || cfg.Streams == nil {
		return nil
	}
	s := &socketStreams{reg: cfg.Sockets, logger: logger, m: m, streams: cfg.Streams,
		drain: cfg.Drain, padding: cfg.padding, live: make(map[*registered]struct{})}
	go s.watch(cfg.Done, cfg.Drain.Begun())
	return s
}

func (s *socketStreams) watch(done, drainBegun <-chan struct{}) {
	for {
		select {
		case <-drainBegun:
			drainBegun = nil
			s.mu.Lock()
			s.draining = true
			for rs := range s.live {
				s.endInDrain(rs)
			}
			s.mu.Unlock()
		case <-done:
			s.mu.Lock()
			s.done = true
			for rs := range s.live {
				rs.end()
			}
			s.mu.Unlock()
			return
		}
	}
}

// endInDrain ends rs at a time drawn from what is left of the drain, as a
// stream in its handler does (Drain.streamLeft). A timer, not a goroutine;
// it does nothing if rs has closed meanwhile.
func (s *socketStreams) endInDrain(rs *registered) {
	time.AfterFunc(s.drain.streamLeft(time.Now()), rs.end)
}

// add lists rs for the drain and shutdown, unless it has closed already.
func (s *socketStreams) add(rs *registered, maxDuration time.Duration) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.gone {
		return
	}
	rs.listed = true
	if maxDuration > 0 {
		rs.lifetime = time.AfterFunc(maxDuration, rs.end)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.live[rs] = struct{}{}
	switch {
	case s.done:
		rs.end()
	case s.draining:
		s.endInDrain(rs)
	}
}

func (s *socketStreams) remove(rs *registered) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.live, rs)
}

// canRegister tells whether st's request may become a registered socket:
// a GET over HTTP/1.1 on plain TCP (HTTP/2 streams share a connection, an
// HTTP/1.0 client may not read a body ended by the close, and TLS is a
// layer over the socket that the registry does not speak), with live events
// to come.
func canRegister(cfg *Config, st *stream, r *http.Request) bool {
	return r.Method == http.MethodGet && r.ProtoMajor == 1 && r.ProtoMinor >= 1 && r.TLS == nil &&
		!st.sub.Finished && !cfg.HistoryOnly
}

// register makes st a registered socket, and reports whether it did; the
// handler then returns, and the registry's close hook (registered.closed)
// ends it. The response is written by hand on the connection taken over
// from net/http: a head with Connection: close and no Transfer-Encoding, so
// the body ends with the connection and every byte after the head is plain
// SSE; no chunk framing, nothing that rests on how net/http frames a body.
// Head, retry: and history are the socket's first write, made by the
// registry without blocking: one syscall, no deadline to set, and nothing
// the registry writes later (a heartbeat, an event) can come before them.
func (s *socketStreams) register(logger *slog.Logger, cfg *Config, st *stream, w http.ResponseWriter, r *http.Request) bool {
	if s == nil || !canRegister(cfg, st, r) {
		return false
	}
	// Counted before the connection is taken: once it is, net/http's
	// Shutdown no longer waits for it, and the caller's Wait may begin.
	if !s.streams.add(1) {
		return false // shutting down
	}
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		s.streams.done(1)
		return false // not a connection net/http can give up: stay in the handler
	}
	setHeaders(w.Header())
	rs := &registered{set: s, st: st, logger: logger, logLine: detachLine(w, r)}
	st.m.streamOpened()
	st.opened = true
	first := &collectSink{b: responseHead(w.Header())}
	rs.head = len(first.b) // the log line counts the body
	st.out = first
	st.history(cfg, nil) // collectSink never fails, and canRegister saw live events to come
	c, ok := conn.(sockets.Conn)
	if !ok {
		// Hijack gives a *net.TCPConn on a plain listener; a listener that
		// wraps its conns is not one the registry can take over. The client
		// resumes from its Last-Event-ID.
		logger.Warn("stream connection cannot be registered", "order", st.id, "conn", fmt.Sprintf("%T", conn))
		conn.Close()
		rs.closed(sockets.WriteFailed, 0)
		return true
	}
	sock, err := s.reg.Register(c, sockets.Registration{First: first.b, OnClose: rs.closed})
	if err != nil {
		// Closed (shutting down) or out of descriptors: end the stream; the
		// client resumes elsewhere.
		logger.Info("stream not registered", "order", st.id, "err", err)
		conn.Close()
		rs.closed(sockets.Shutdown, 0)
		return true
	}
	rs.sock = sock
	// What only the handler needed goes, so an idle stream keeps no more
	// than its subscriber, its socket and its log line.
	st.out, st.buf, st.sub.History = nil, nil, nil
	if err := st.sub.Handover(func(buffered []broker.Event) broker.Subscriber {
		for _, ev := range buffered {
			rs.Deliver(ev)
		}
		return rs
	}); err != nil {
		// It ended first (the order finished, the client went, the broker
		// closed): its channel holds the rest.
		for ev := range st.sub.Events() {
			rs.Deliver(ev)
		}
		rs.End(st.sub.Err())
	}
	s.add(rs, cfg.MaxStreamDuration)
	return true
}

// responseHead is the head of a registered stream's response: 200, the
// headers set for it (the stream's and the middleware's, CORS included),
// and Connection: close, which delimits the body.
func responseHead(h http.Header) []byte {
	var b bytes.Buffer
	b.WriteString("HTTP/1.1 200 OK\r\n")
	h.Set("Connection", "close")
	if h.Get("Date") == "" {
		h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	}
	_ = h.Write(&b) // a bytes.Buffer does not fail
	b.WriteString("\r\n")
	return b.Bytes()
}

// registered is a stream held as a registered socket: the broker
// Subscriber its subscription was handed over to (a member of its
// socketStreams' Group), and the socket's close hook.
type registered struct {
	set     *socketStreams
	st      *stream
	sock    *sockets.Socket // set before it is a subscriber or listed
	logger  *slog.Logger
	logLine func(more int64)
	head    int // bytes of the response head, which the log line does not count

	mu       sync.Mutex
	gone     bool        // closed: not to be listed
	listed   bool        // in set.live
	lifetime *time.Timer // MaxStreamDuration's end
}

// Group makes rs a member of its socketStreams' group: the hub hands live
// events to DeliverGroup, once for all of an order's registered streams.
func (rs *registered) Group() broker.Group { return rs.set }

// DeliverGroup encodes ev's frame once and hands it to every member's
// socket in one Broadcast: a job per writer, not per stream, written by
// the registry's writers without blocking. It runs under the hub's lock.
func (s *socketStreams) DeliverGroup(ev broker.Event, members []broker.Subscriber) {
	frame, err := appendEvent(nil, ev, s.padding)
	if err != nil {
		// Cannot happen for a broker's events; ending the streams is the
		// safe answer (their clients resume from their last event id).
		for _, m := range members {
			m.(*registered).end()
		}
		return
	}
	socks := make([]*sockets.Socket, len(members)) // kept by the writers: a new slice each time
	for i, m := range members {
		socks[i] = m.(*registered).sock
	}
	s.reg.Broadcast(frame, socks)
	s.m.eventsDelivered(ev.Update.Timestamp, len(members))
}

// Deliver hands one event's frame to the socket: the events a
// Subscription had buffered when it was handed over (later ones come
// through DeliverGroup). It runs under the hub's lock (broker.Subscriber).
func (rs *registered) Deliver(ev broker.Event) bool {
	frame, err := appendEvent(nil, ev, rs.set.padding)
	if err != nil {
		return false // cannot happen for a broker's events: end the stream, the client resumes
	}
	rs.sock.Send(frame)
	rs.st.m.eventDelivered(ev.Update.Timestamp, true)
	return true
}

// End ends the stream after what it was handed: after the order's terminal
// event, when the broker dropped it or closed.
func (rs *registered) End(err error) {
	rs.st.endedEarly(rs.logger, err)
	rs.sock.End(nil)
}

// end ends the stream at a frame boundary: MaxStreamDuration, the drain,
// shutdown. The client resumes from its last event id.
func (rs *registered) end() { rs.sock.End(nil) }

// closed is the socket's close hook, called once from a registry
// goroutine with the bytes the socket was handed: it unsubscribes, frees
// the stream's places under the limits, counts it closed, and writes the
// request's log line.
func (rs *registered) closed(reason sockets.Reason, sent int64) {
	defer func() {
		if v := recover(); v != nil {
			// net/http's recovery does not cover the registry's goroutines:
			// a panic ends this stream only, never the process.
			rs.logger.Error("panic in a stream", "order", rs.st.id, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
		}
	}()
	rs.mu.Lock()
	rs.gone = true
	listed, lifetime := rs.listed, rs.lifetime
	rs.mu.Unlock()
	if lifetime != nil {
		lifetime.Stop()
	}
	if listed {
		rs.set.remove(rs)
	}
	switch reason {
	case sockets.TooSlow, sockets.WriteTimeout:
		rs.st.m.subscriberDropped("write_timeout")
	}
	defer rs.set.streams.done(1)
	rs.st.close()
	if rs.logLine != nil {
		rs.logLine(max(0, sent-int64(rs.head))) // heartbeats count, as in a handler
	}
}

// collectSink gathers a registered stream's head, retry: and history into
// the socket's first write.
type collectSink struct{ b []byte }

func (c *collectSink) send(frame []byte) error {
	c.b = append(c.b, frame...)
	return nil
}

// SocketOptions are the options of a registry for cfg's streams: its
// heartbeat interval, write timeout and heartbeat (padded as cfg pads).
func SocketOptions(cfg Config) sockets.Options {
	cfg = cfg.withDefaults()
	return sockets.Options{Heartbeat: cfg.HeartbeatInterval, WriteTimeout: cfg.WriteTimeout,
		KeepAlive: append(keepAlive[:len(keepAlive):len(keepAlive)], cfg.padding...)}
}
