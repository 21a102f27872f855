package httpapi

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/orderstream/orderstream/shared/broker"
	"github.com/orderstream/orderstream/shared/sockets"
)

// socketStreams hands live streams to a sockets.Registry (Config.Sockets):
// once its head and history are written, a stream is a registered socket
// and a broker subscriber that writes each event's frame to it, with no
// goroutine of its own. It keeps the registered streams so that the
// server's drain and shutdown can end them, at a frame boundary, as they
// end streams in handlers. A nil *socketStreams registers nothing.
type socketStreams struct {
	reg     *sockets.Registry
	logger  *slog.Logger
	m       *metrics
	streams *Streams
	drain   *Drain
	frames  frameCache

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
		drain: cfg.Drain, live: make(map[*registered]struct{})}
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
	head := responseHead(w.Header())
	// Head, retry: and history go out on the connection before it is
	// registered, so nothing the registry writes (a heartbeat) can come
	// before them.
	st.out = &connSink{conn: conn, timeout: cfg.WriteTimeout, rs: rs}
	if !st.history(cfg, head) {
		conn.Close()
		rs.closed(sockets.WriteFailed)
		return true
	}
	rs.sent.Add(-int64(len(head))) // the log line counts the body
	c, ok := conn.(sockets.Conn)
	if !ok {
		// Hijack gives a *net.TCPConn on a plain listener; a listener that
		// wraps its conns is not one the registry can take over. The client
		// resumes from its Last-Event-ID.
		logger.Warn("stream connection cannot be registered", "order", st.id, "conn", fmt.Sprintf("%T", conn))
		conn.Close()
		rs.closed(sockets.WriteFailed)
		return true
	}
	sock, err := s.reg.Register(c, rs.closed)
	if err != nil {
		// Closed (shutting down) or out of descriptors: end the stream; the
		// client resumes elsewhere.
		logger.Info("stream not registered", "order", st.id, "err", err)
		conn.Close()
		rs.closed(sockets.Shutdown)
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
// Subscriber its subscription was handed over to, and the socket's close
// hook.
type registered struct {
	set     *socketStreams
	st      *stream
	sock    *sockets.Socket // set before it is a subscriber or listed
	logger  *slog.Logger
	logLine func(more int64)
	sent    atomic.Int64 // body bytes handed to the socket, for the log line

	mu       sync.Mutex
	gone     bool        // closed: not to be listed
	listed   bool        // in set.live
	lifetime *time.Timer // MaxStreamDuration's end
}

// Deliver hands ev's frame to the socket: encoded once per event for all
// of the instance's subscribers (frameCache), written by the registry's
// writers, never blocking. It runs under the hub's lock (broker.Subscriber).
func (rs *registered) Deliver(ev broker.Event) bool {
	frame, err := rs.set.frames.frame(ev, rs.st.padding)
	if err != nil {
		return false // cannot happen for a broker's events: end the stream, the client resumes
	}
	rs.sent.Add(int64(len(frame)))
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
// goroutine: it unsubscribes, frees the stream's places under the limits,
// counts it closed, and writes the request's log line.
func (rs *registered) closed(reason sockets.Reason) {
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
		rs.logLine(rs.sent.Load())
	}
}

// connSink writes a stream's head and history on the connection taken
// over from net/http, before it is registered: whole frames under a
// per-write deadline, as handlerWriter does.
type connSink struct {
	conn    net.Conn
	timeout time.Duration
	rs      *registered
}

func (c *connSink) send(frame []byte) error {
	if err := c.conn.SetWriteDeadline(time.Now().Add(c.timeout)); err != nil {
		return err
	}
	if _, err := c.conn.Write(frame); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			c.rs.st.m.subscriberDropped("write_timeout")
		}
		return err
	}
	c.rs.sent.Add(int64(len(frame)))
	return nil
}

// frameCache encodes each event once for all of an instance's registered
// subscribers: the hub delivers one order's event to its subscribers one
// after the other, so the first encodes it and the rest find it in the
// order's slot. Slots are picked as the hub picks its shards, so orders
// that share a slot share a hub lock and rarely take turns in it.
type frameCache struct {
	slots [64]frameSlot
}

type frameSlot struct {
	mu    sync.Mutex
	order uuid.UUID
	id    string
	frame []byte
}

func (c *frameCache) frame(ev broker.Event, padding []byte) ([]byte, error) {
	sl := &c.slots[ev.Update.OrderID[15]%uint8(len(c.slots))]
	sl.mu.Lock()
	defer sl.mu.Unlock()
	if sl.order == ev.Update.OrderID && sl.id == ev.ID && sl.frame != nil {
		return sl.frame, nil
	}
	frame, err := appendEvent(nil, ev, padding)
	if err != nil {
		return nil, err
	}
	sl.order, sl.id, sl.frame = ev.Update.OrderID, ev.ID, frame
	return frame, nil
}

// SocketOptions are the options of a registry for cfg's streams: its
// heartbeat interval, write timeout and heartbeat (padded as cfg pads).
func SocketOptions(cfg Config) sockets.Options {
	cfg = cfg.withDefaults()
	return sockets.Options{Heartbeat: cfg.HeartbeatInterval, WriteTimeout: cfg.WriteTimeout,
		KeepAlive: append(keepAlive[:len(keepAlive):len(keepAlive)], cfg.padding...)}
}
