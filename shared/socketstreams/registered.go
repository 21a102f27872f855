package socketstreams

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"sync"
	"time"

	"github.com/orderstream/orderstream/shared/broker"
	"github.com/orderstream/orderstream/shared/httpapi"
	"github.com/orderstream/orderstream/shared/sockets"
)

// Everything that speaks to shared/sockets is in this file: opening the
// registry, handing a stream's connection over, the fan-out of an event to
// an order's registered streams, and the close hook.

// openRegistry opens the registry for the streams of a server configured
// with cfg: its heartbeat, write timeout and padded keep-alive. Nil where
// registered sockets are unsupported or the registry cannot be made (said
// in the log): every stream then stays in its handler.
func openRegistry(logger *slog.Logger, cfg httpapi.Config) *sockets.Registry {
	reg, err := sockets.New(sockets.Options{Heartbeat: cfg.HeartbeatInterval, WriteTimeout: cfg.WriteTimeout, KeepAlive: cfg.KeepAlive()})
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
// did; the handler then returns, and the registry's close hook
// (registered.closed) ends it. The response is written by hand on the
// connection taken over from net/http: a head with Connection: close and no
// Transfer-Encoding, so the body ends with the connection and every byte
// after the head is plain SSE; no chunk framing, nothing that rests on how
// net/http frames a body. Head, retry: and history are the socket's first
// write, made by the registry without blocking: one syscall, no deadline to
// set, and nothing the registry writes later (a heartbeat, an event) can
// come before them.
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
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		s.open.Done()
		return false // not a connection net/http can give up: stay in the handler
	}
	rs := &registered{s: s, h: h}
	first := responseHead(w.Header())
	rs.head = len(first) // the log line counts the body
	first = append(first, h.Begin()...)
	c, ok := conn.(sockets.Conn)
	if !ok {
		// Hijack gives a *net.TCPConn on a plain listener; a listener that
		// wraps its conns is not one the registry can take over. The client
		// resumes from its Last-Event-ID.
		s.logger.Warn("stream connection cannot be registered", "order", h.Order(), "conn", fmt.Sprintf("%T", conn))
		conn.Close()
		rs.closed(sockets.WriteFailed, 0)
		return true
	}
	sock, err := s.reg.Register(c, sockets.Registration{First: first, OnClose: rs.closed})
	if err != nil {
		// Closed (shutting down) or out of descriptors: end the stream; the
		// client resumes elsewhere.
		s.logger.Info("stream not registered", "order", h.Order(), "err", err)
		conn.Close()
		rs.closed(sockets.Shutdown, 0)
		return true
	}
	rs.sock = sock
	sub := h.Subscription()
	if err := sub.Handover(func(buffered []broker.Event) broker.Subscriber {
		for _, ev := range buffered {
			rs.Deliver(ev)
		}
		return rs
	}); err != nil {
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

// add lists rs for the drain and shutdown, unless it has closed already.
func (s *Streams) add(rs *registered) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.gone {
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

// DeliverGroup makes Streams the broker.Group of its registered streams:
// the hub hands it each live event once for all of an order's registered
// streams, and it encodes the frame once and hands it to every member's
// socket in one Broadcast (a job per writer, not per stream), written by
// the registry's writers without blocking. It runs under the hub's lock.
func (s *Streams) DeliverGroup(ev broker.Event, members []broker.Subscriber) {
	if len(members) == 0 {
		return
	}
	h := members[0].(*registered).h // every member came through the one server s wraps
	frame, err := h.Frame(ev)
	if err != nil {
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
	h.Delivered(ev, len(members))
}

// registered is a stream held as a registered socket: the broker
// Subscriber its subscription was handed over to (a member of its
// Streams' Group), and the socket's close hook.
type registered struct {
	s    *Streams
	h    *httpapi.Handover
	sock *sockets.Socket // set before it is a subscriber or listed
	head int             // bytes of the response head, which the log line does not count

	mu       sync.Mutex
	gone     bool        // closed: not to be listed
	listed   bool        // in s.registered
	lifetime *time.Timer // MaxStreamDuration's end
}

// Group makes rs a member of its Streams' group: the hub hands live events
// to DeliverGroup, once for all of an order's registered streams.
func (rs *registered) Group() broker.Group { return rs.s }

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
// event, when the broker dropped it or closed.
func (rs *registered) End(err error) {
	rs.h.EndedEarly(err)
	rs.sock.End(nil)
}

// end ends the stream at a frame boundary: MaxStreamDuration, the drain,
// shutdown. The client resumes from its last event id.
func (rs *registered) end() { rs.sock.End(nil) }

// closed is the socket's close hook, called once from a registry
// goroutine with the bytes the socket was handed: it unlists the stream
// and hands its end to the core (unsubscribe, free its places under the
// limits, count it closed, write the request's log line).
func (rs *registered) closed(reason sockets.Reason, sent int64) {
	defer func() {
		if v := recover(); v != nil {
			// net/http's recovery does not cover the registry's goroutines:
			// a panic ends this stream only, never the process.
			rs.s.logger.Error("panic in a stream", "order", rs.h.Order(), "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
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
		rs.s.remove(rs)
	}
	defer rs.s.open.Done()
	cut := reason == sockets.TooSlow || reason == sockets.WriteTimeout
	rs.h.Closed(max(0, sent-int64(rs.head)), cut) // heartbeats count, as in a handler
}
