package socketstreams

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/orderstream/orderstream/shared/broker"
	"github.com/orderstream/orderstream/shared/httpapi"
	"github.com/orderstream/orderstream/shared/sockets"
)

// Everything that speaks to shared/sockets is in this file: opening the
// registry, handing a stream's connection over, the fan-out of an event to
// an order's registered streams, and the close hook.

// openRegistry opens the registry for the streams of a server configured
// with cfg: its heartbeat, write timeout and padded keep-alive, and the
// padding every frame carries (which a parked socket's pending bytes do not
// count). The dead-peer timeout is the listener's (Listen), which every
// socket it accepts has from the start. Nil where registered sockets are
// unsupported or the registry cannot be made (said in the log): every
// stream then stays in its handler.
func openRegistry(logger *slog.Logger, cfg httpapi.Config) *sockets.Registry {
	reg, err := sockets.New(sockets.Options{
		Heartbeat:     cfg.HeartbeatInterval,
		WriteTimeout:  cfg.WriteTimeout,
		KeepAlive:     cfg.KeepAlive(),
		FrameOverhead: max(0, cfg.FlushPadding), // the padding block is FlushPadding bytes
	})
	if err != nil {
		if !errors.Is(err, sockets.ErrUnsupported) {
			logger.Warn("live streams stay in their handlers", "err", err)
		}
		return nil
	}
	return reg
}

// canRegister tells whether r's stream may become a registered socket: a
// request over HTTP/1.1 on plain TCP (HTTP/2 streams share a connection, an
// HTTP/1.0 client may not read a body ended by the close, and TLS is a
// layer over the socket that the registry does not speak).
func canRegister(r *http.Request) bool {
	return r.ProtoMajor == 1 && r.ProtoMinor >= 1 && r.TLS == nil
}

// register makes h's stream a registered socket, and reports whether it
// did (or answered it): the handler then returns, and the registry's close
// hook (registered.closed) ends it. The response is written by hand on the
// connection taken over from net/http: a head with Connection: close and no
// Transfer-Encoding, so the body ends with the connection and every byte
// after the head is plain SSE; no chunk framing, nothing that rests on how
// net/http frames a body. Head, retry: and history are the socket's first
// write, made by the registry without blocking: one syscall, no deadline to
// set, and nothing the registry writes later (a heartbeat, an event) can
// come before them.
//
// Once the connection is taken, every client gets an answer: a request
// pipelined behind the stream's (bytes net/http had read past it) gets a
// 400, since the stream's response ends only with the connection and
// nothing after it could be answered; and a stream the registry cannot
// take (no descriptor left for its duplicate) gets a 503 with Retry-After,
// written on the connection the failed Register left open. Either way the
// connection is then closed as net/http closes one.
func (s *Streams) register(w http.ResponseWriter, r *http.Request, h *httpapi.Handover) bool {
	if s.reg == nil || !canRegister(r) {
		return false
	}
	// Counted before the connection is taken: once it is, net/http's
	// Shutdown no longer waits for it, and Close may be waiting.
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return false // shutting down: it stays in its handler and ends there
	}
	s.open.Add(1)
	s.mu.Unlock()
	conn, rw, err := hijack(w)
	if err != nil {
		s.open.Done()
		return false // not a connection net/http can give up: stay in the handler
	}
	if rw.Reader.Buffered() > 0 {
		// The client sent more than its request, and net/http read it: a
		// request pipelined behind a stream can never be answered (the
		// stream's response ends only with the connection). Say so, rather
		// than drop it unseen.
		s.refuse(conn, h, http.StatusBadRequest, "a stream must be the last request on its connection: its response ends only when the connection does, so nothing sent after it could be answered; send other requests on another connection")
		s.open.Done()
		return true
	}
	c, ok := conn.(sockets.Conn)
	if !ok {
		// Hijack gives a *net.TCPConn on a plain listener; a listener that
		// wraps its conns is not one the registry can take over.
		s.logger.Warn("stream connection cannot be registered", "order", h.Order(), "conn", fmt.Sprintf("%T", conn))
		s.refuse(conn, h, http.StatusServiceUnavailable, unavailable)
		s.open.Done()
		return true
	}
	rs := &registered{s: s, h: h, og: s.joinGroup(h.Order())}
	first := appendHead(firstBuffer(rw), w.Header())
	rs.head = int32(len(first)) // the log line counts the body
	first = h.Begin(first)
	sock, err := s.reg.Register(c, sockets.Registration{First: first, OnClose: rs.closed})
	if err != nil {
		// Closed (shutting down) or out of descriptors: the connection is
		// still ours, and the client is told to come back.
		s.logger.Warn("stream not registered", "order", h.Order(), "err", err)
		s.leaveGroup(rs.og)
		s.refuse(conn, h, http.StatusServiceUnavailable, unavailable)
		s.open.Done()
		return true
	}
	rs.sock = sock
	sub := h.Subscription()
	if err := sub.Handover(rs.takeOver); err != nil {
		// It ended first (the order finished, the client went, the broker
		// closed): its channel holds the rest.
		for ev := range sub.Events() {
			rs.Deliver(ev)
		}
		rs.End(sub.Err())
	}
	s.add(rs)
	return true
}

// unavailable is the detail of a 503 for a stream the instance cannot hold.
const unavailable = "this instance is serving as many streams as it may; try again shortly"

// refuse answers h's stream with a problem on conn, taken from net/http,
// and closes conn as net/http does: the write side first, then, once the
// client has closed too (or after a short wait), the rest, so that bytes
// the client sent and no one read cannot turn the answer into a reset.
func (s *Streams) refuse(conn net.Conn, h *httpapi.Handover, status int, detail string) {
	res := &rawResponse{header: http.Header{}}
	h.Refuse(res, status, detail)
	s.release()
	_ = conn.SetDeadline(time.Now().Add(refuseLinger))
	if _, err := conn.Write(res.bytes()); err == nil {
		if cw, ok := conn.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
			var buf [512]byte
			for {
				if _, err := conn.Read(buf[:]); err != nil {
					break // EOF, or the wait is over
				}
			}
		}
	}
	conn.Close()
}

// refuseLinger bounds refuse's write and its wait for the client's close,
// as net/http's own wait after a response that closes its connection.
const refuseLinger = 500 * time.Millisecond

// rawResponse is a ResponseWriter that keeps the response, for refuse to
// write on a connection net/http no longer has.
type rawResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *rawResponse) Header() http.Header { return r.header }

func (r *rawResponse) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

func (r *rawResponse) Write(b []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return r.body.Write(b)
}

// bytes is the whole response: a head that closes the connection, with
// the body's length.
func (r *rawResponse) bytes() []byte {
	r.header.Set("Connection", "close")
	r.header.Set("Content-Length", strconv.Itoa(r.body.Len()))
	r.header.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	var b bytes.Buffer
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\n", r.status, http.StatusText(r.status))
	_ = r.header.Write(&b) // a bytes.Buffer does not fail
	b.WriteString("\r\n")
	b.Write(r.body.Bytes())
	return b.Bytes()
}

// add lists rs for the drain and shutdown, unless it has closed already.
func (s *Streams) add(rs *registered) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.hooked.Load() {
		return
	}
	rs.listed = true
	if d := rs.h.MaxDuration(); d > 0 {
		rs.lifetime = time.AfterFunc(d, rs.end)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.registered[rs] = struct{}{}
	switch {
	case s.ended:
		rs.end()
	case s.drain.draining():
		s.endInDrain(rs.end)
	}
}

func (s *Streams) remove(rs *registered) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.registered, rs)
}

// hijack takes w's connection from net/http: straight from its writer
// where that is a Hijacker (net/http's own, under Streams' offer), else
// through http.ResponseController, which finds one beneath wrappers.
func hijack(w http.ResponseWriter) (net.Conn, *bufio.ReadWriter, error) {
	if hj, ok := w.(http.Hijacker); ok {
		return hj.Hijack()
	}
	return http.NewResponseController(w).Hijack()
}

// firstSize is room enough for most streams' first write: the head, the
// retry: field and a short history, in one allocation.
const firstSize = 512

// firstBuffer is where a stream's first write is made: the buffer of the
// bufio.Writer Hijack handed over with the connection, which net/http
// gets from its pool and, for a hijacked connection, never takes back
// nor touches again (4 KiB that were garbage at once; its pool makes
// another for the next connection either way). Building the first write
// in it saves the connect path an allocation of its own. The registry
// writes it at once; only a socket that cannot take it whole keeps the
// rest queued, and then the 4 KiB array rather than a smaller one.
func firstBuffer(rw *bufio.ReadWriter) []byte {
	if rw != nil && rw.Writer != nil {
		if b := rw.Writer.AvailableBuffer(); cap(b) >= firstSize {
			return b
		}
	}
	return make([]byte, 0, firstSize)
}

// appendHead appends the head of a registered stream's response: 200, the
// headers set for it (the stream's and the middleware's, CORS included),
// the date, and Connection: close, which delimits the body. It appends
// them as Header.Write would (a value's line breaks become spaces), but
// in the map's order and without a sorted copy of the keys or a value
// made for the date: the head is built once per stream, on the connect
// path.
func appendHead(b []byte, h http.Header) []byte {
	b = append(b, "HTTP/1.1 200 OK\r\n"...)
	for k, vs := range h {
		if k == "Connection" || k == "Date" || k == "Content-Length" || k == "Transfer-Encoding" {
			continue // the head's own
		}
		for _, v := range vs {
			b = append(b, k...)
			b = append(b, ": "...)
			if !strings.ContainsAny(v, "\r\n") {
				b = append(b, v...)
			} else {
				b = append(b, strings.NewReplacer("\r", " ", "\n", " ").Replace(v)...)
			}
			b = append(b, "\r\n"...)
		}
	}
	b = append(b, "Connection: close\r\nDate: "...)
	b = time.Now().UTC().AppendFormat(b, http.TimeFormat)
	return append(b, "\r\n\r\n"...)
}

// orderGroup is an order's registered streams on one Streams: a
// sockets.Group, so that an event is handed to each loop once with that
// loop's members. Streams join it at the first event the hub hands them
// through DeliverGroup, not at the hand-over: the hub skips a member for
// events at or before its position, and a group's Broadcast reaches every
// member. It lives while some stream holds it (refs).
type orderGroup struct {
	g     *sockets.Group
	id    uuid.UUID
	refs  int         // under Streams.groupsMu
	ended atomic.Bool // the terminal event ended every member (Group.End)
}

// joinGroup returns the group of order id's registered streams, taking a
// reference that leaveGroup gives back.
func (s *Streams) joinGroup(id uuid.UUID) *orderGroup {
	s.groupsMu.Lock()
	defer s.groupsMu.Unlock()
	og := s.groups[id]
	if og == nil || og.ended.Load() {
		// An ended group's members are on their way out; a stream after the
		// terminal event (a broker that saw it late) starts afresh.
		og = &orderGroup{g: s.reg.NewGroup(), id: id}
		s.groups[id] = og
	}
	og.refs++
	return og
}

// leaveGroup gives back a reference joinGroup took; the group goes with
// the last one. Ended streams leave the sockets.Group by themselves.
func (s *Streams) leaveGroup(og *orderGroup) {
	s.groupsMu.Lock()
	defer s.groupsMu.Unlock()
	if og.refs--; og.refs == 0 && s.groups[og.id] == og {
		delete(s.groups, og.id)
	}
}

// DeliverGroup makes Streams the broker.Group of its registered streams:
// the hub hands it each live event once for all of an order's registered
// streams, and it encodes the frame once and broadcasts it to the order's
// sockets.Group (a job per loop, with that loop's members), written by the
// registry's loops without blocking. After the order's terminal event it
// ends the whole group in one job per loop, where ending each stream would
// queue one per stream. It runs under the hub's lock for the order.
func (s *Streams) DeliverGroup(ev broker.Event, members []broker.Subscriber) {
	if len(members) == 0 {
		return
	}
	first := members[0].(*registered) // every member came through the one server s wraps
	frame, err := first.h.Frame(ev)
	if err != nil {
		for _, m := range members {
			m.(*registered).end()
		}
		return
	}
	og := first.og
	for _, m := range members {
		rs := m.(*registered)
		switch {
		case rs.og != og:
			// Not one order's streams after all: cannot happen, as the
			// hub groups by order; the frame still reaches it.
			rs.sock.Send(frame)
		case !rs.grouped:
			og.g.Add(rs.sock)
			rs.grouped = true
		}
	}
	og.g.Broadcast(frame)
	if ev.Update.Status.Terminal() {
		og.g.End(nil)
		og.ended.Store(true)
	}
	first.h.Delivered(ev, len(members))
}

// registered is a stream held as a registered socket: the broker
// Subscriber its subscription was handed over to (a member of its
// Streams' Group), and the socket's close hook.
//
// Every idle stream holds one, so its small fields are packed together:
// 64 bytes, not 80.
type registered struct {
	s        *Streams
	h        *httpapi.Handover
	og       *orderGroup     // its order's group, held until the stream closes
	sock     *sockets.Socket // set before it is a subscriber or listed
	lifetime *time.Timer     // MaxStreamDuration's end, under mu
	mu       sync.Mutex
	// hooked: closed has begun (the socket is gone), set under mu so that
	// add does not list it.
	hooked atomic.Bool
	head   int32 // bytes of the response head, which the log line does not count
	// grouped: a member of og.g, since the first event DeliverGroup handed
	// it. Under the hub's lock for the order, as Deliver and End are.
	grouped bool
	listed  bool // in s.registered, under mu
}

// Group makes rs a member of its Streams' group: the hub hands live events
// to DeliverGroup, once for all of an order's registered streams.
func (rs *registered) Group() broker.Group { return rs.s }

// takeOver is rs taking its subscription over (broker.Subscription.Handover):
// the events it had buffered, then rs as its subscriber.
func (rs *registered) takeOver(buffered []broker.Event) broker.Subscriber {
	for _, ev := range buffered {
		rs.Deliver(ev)
	}
	return rs
}

// Deliver hands one event's frame to the socket: the events a
// Subscription had buffered when it was handed over (later ones come
// through DeliverGroup). It runs under the hub's lock (broker.Subscriber).
func (rs *registered) Deliver(ev broker.Event) bool {
	frame, err := rs.h.Frame(ev)
	if err != nil {
		return false // cannot happen for a broker's events: end the stream, the client resumes
	}
	rs.sock.Send(frame)
	rs.h.Delivered(ev, 1)
	return true
}

// End ends the stream after what it was handed: after the order's terminal
// event, when the broker dropped it or closed, when it was unsubscribed.
// After the terminal event its group has ended it already.
func (rs *registered) End(err error) {
	rs.h.EndedEarly(err)
	if rs.hooked.Load() || err == nil && rs.grouped && rs.og.ended.Load() {
		return // closed already (its hook unsubscribes), or ended with its group
	}
	rs.sock.End(nil)
}

// end ends the stream at a frame boundary: MaxStreamDuration, the drain,
// shutdown. The client resumes from its last event id.
func (rs *registered) end() { rs.sock.End(nil) }

// closed is the socket's close hook, called once on a registry worker with
// the bytes the socket was handed: it unlists the stream, gives back its
// group and its place in the descriptor budget, and hands its end to the
// core (unsubscribe, free its places under the limits, count it closed or
// dropped, write the request's log line).
func (rs *registered) closed(reason sockets.Reason, sent int64) {
	defer func() {
		if v := recover(); v != nil {
			// A panic in a hook would end the process: it ends this stream
			// only.
			rs.s.logger.Error("panic in a stream", "order", rs.h.Order(), "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
		}
	}()
	rs.mu.Lock()
	rs.hooked.Store(true)
	listed, lifetime := rs.listed, rs.lifetime
	rs.mu.Unlock()
	if lifetime != nil {
		lifetime.Stop()
	}
	if listed {
		rs.s.remove(rs)
	}
	defer rs.s.open.Done()
	defer rs.s.release()
	defer rs.s.leaveGroup(rs.og)
	rs.h.Closed(max(0, sent-int64(rs.head)), dropped(reason)) // heartbeats count, as in a handler
}

// dropped is the metrics label of a stream the registry ended because of
// its client, if any.
func dropped(reason sockets.Reason) string {
	switch reason {
	case sockets.TooSlow, sockets.WriteTimeout:
		return httpapi.DroppedWriteTimeout
	case sockets.TooMuchInput:
		return httpapi.DroppedTooMuchInput
	case sockets.Vanished:
		return httpapi.DroppedVanished
	}
	return ""
}
