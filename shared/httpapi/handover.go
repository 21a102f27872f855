package httpapi

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/orderstream/orderstream/shared/broker"
	"github.com/orderstream/orderstream/shared/sse"
)

// A Detacher takes live streams out of their handlers. The core looks for
// one on the ResponseWriter (the writer itself, or one it unwraps to, as
// http.ResponseController looks for a Flusher), so that an edge that holds
// streams some other way wraps the core's handler from outside and the core
// never knows how: the local server's registered sockets
// (shared/socketstreams) are one.
//
// Detach is offered each stream that has live events to come (a GET, not
// yet finished, not HistoryOnly), after its subscription and its places
// under the limits are taken and its response headers are set, before its
// first byte. It returns false, leaving the response untouched, to keep the
// stream in its handler; or true once it has taken the stream, having
// called h.Begin (which takes the request's log line over from the
// handler, and gives the stream's first bytes), or refused it (h.Refuse).
// A stream it took it then hands h.Subscription over
// (broker.Subscription.Handover), and calls h.Closed exactly once when the
// stream ends. The handler returns as soon as Detach returns true.
type Detacher interface {
	Detach(h *Handover) bool
}

// detacherOf finds the Detacher on w or under it (Unwrap), nil if none.
func detacherOf(w http.ResponseWriter) Detacher {
	for {
		if d, ok := w.(Detacher); ok {
			return d
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return nil
		}
		w = u.Unwrap()
	}
}

// Handover is a live stream offered to a Detacher: what the edge needs to
// serve it out of its handler, and what the core still does for it there
// (its bytes, its metrics, its log line, its places under the limits).
type Handover struct {
	st     *stream
	logger *slog.Logger
	cfg    *Config
	// req is what only Detach uses: the handler's writer and request and
	// the request's path. Apart, so that a stream that leaves its handler
	// keeps 8 bytes of it rather than 40 (an idle stream keeps its
	// Handover); nil once Detach has returned.
	req   *handoverReq
	line  detachedLine
	http1 bool // HTTP/1.x: a refusal closes the connection
	done  bool // Closed or Refuse has run (beside http1: an idle stream keeps a Handover)
	// end, if set by EndWith, ends a stream kept in its handler.
	end <-chan struct{}
}

// handoverReq is a Handover's request while it is offered.
type handoverReq struct {
	// The handler's writer and request, until Begin: the log line is found
	// under w, and neither is kept while the stream lives.
	w    http.ResponseWriter
	r    *http.Request
	path string // the request's, for a refusal's problem (Refuse is called within Detach)
}

// offer offers st to the Detacher on w, if there is one and live events
// are to come, and reports whether it took the stream.
func (st *stream) offer(logger *slog.Logger, cfg *Config, w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodGet || st.sub.Finished || cfg.HistoryOnly {
		return false
	}
	d := detacherOf(w)
	if d == nil {
		return false
	}
	setHeaders(w.Header())
	st.h = Handover{st: st, logger: logger, cfg: cfg, http1: r.ProtoMajor == 1,
		req: &handoverReq{w: w, r: r, path: r.URL.Path}}
	ok := d.Detach(&st.h)
	// Refuse is only called within Detach: the path, a piece of the request
	// line net/http read, is not kept for the life of the stream.
	st.h.req = nil
	return ok
}

// EndWith, called within a Detach that keeps the stream in its handler
// (returns false), gives the stream a channel whose close ends it at a
// frame boundary, as its request's context ending does: an edge that ends
// the streams it keeps (a drain, a shutdown) needs no context of its own
// for every request.
func (h *Handover) EndWith(end <-chan struct{}) { h.end = end }

// Subscription is the stream's subscription, for the Detacher to hand over
// to a broker.Subscriber of its own.
func (h *Handover) Subscription() *broker.Subscription { return h.st.sub }

// Order is the stream's order, for the Detacher's log.
func (h *Handover) Order() uuid.UUID { return h.st.id }

// MaxDuration is how long the stream may live (Config.MaxStreamDuration;
// 0: until it ends otherwise).
func (h *Handover) MaxDuration() time.Duration { return h.cfg.MaxStreamDuration }

// Begin is called once the stream is taken, within Detach: it counts the
// stream open, takes the request's log line over from the handler, and
// appends to b the body's first bytes, the retry: field and the history,
// as a stream in its handler writes them (padding included), so that the
// edge can make them one write with its own (a response head).
func (h *Handover) Begin(b []byte) []byte {
	st := h.st
	h.line = detachLine(h.req.w, h.req.r)
	h.line.forgetPath(st.id)
	h.req.w, h.req.r = nil, nil
	st.m.streamOpened()
	st.opened = true
	// Encoded straight into b, as history() sends them in a handler.
	b = append(sse.AppendRetry(b, h.cfg.retry()), h.cfg.padding...)
	for _, ev := range st.sub.History {
		var err error
		if b, err = appendEvent(b, ev, h.cfg.padding); err != nil {
			break // cannot happen for a broker's events; b is as it was before ev
		}
		st.m.eventDelivered(ev.Update.Timestamp, false)
	}
	// What only the handler needed goes, so an idle stream keeps no more
	// than its subscription and its log line.
	st.sub.History = nil
	return b
}

// Frame encodes ev as the stream's event frame, padding included. Every
// stream of a server gets the same bytes, so one encoding serves all of an
// order's streams. An error cannot happen for a broker's events; ending
// the stream is the safe answer to one (its client resumes).
func (h *Handover) Frame(ev broker.Event) ([]byte, error) {
	return appendEvent(nil, ev, h.cfg.padding)
}

// Delivered records that ev went live to n streams of this server.
func (h *Handover) Delivered(ev broker.Event, n int) {
	h.st.m.eventsDelivered(ev.Update.Timestamp, n)
}

// EndedEarly says why the broker ended the subscription (its Err), if not
// because the order finished.
func (h *Handover) EndedEarly(err error) { h.st.endedEarly(h.logger, err) }

// Closed ends the stream's life in the core, once it has closed: it
// unsubscribes, gives back its places under the limits, counts it closed
// (and, if dropped is not empty, dropped for that reason: the labels of
// orderstream_slow_subscribers_dropped_total), and writes the request's log
// line with the body bytes sent.
func (h *Handover) Closed(sent int64, dropped string) {
	if h.done {
		return
	}
	h.done = true
	if dropped != "" {
		h.st.m.subscriberDropped(dropped)
	}
	h.st.close()
	h.line.write(0, sent, h.st.id)
}

// The reasons Closed takes for a dropped stream, besides the broker's
// "buffer": the edge says which.
const (
	// DroppedWriteTimeout: the client stopped reading (a write waited too
	// long, or too much waited for it).
	DroppedWriteTimeout = "write_timeout"
	// DroppedTooMuchInput: the client sent more after its request than a
	// stream reads and drops.
	DroppedTooMuchInput = "too_much_input"
	// DroppedVanished: the client stopped answering at all (no FIN, no
	// RST: its network went), found by the edge's dead-peer timeout.
	DroppedVanished = "vanished"
)

// Refuse ends the stream in the core without serving it, within Detach,
// before Begin or after it (the edge could not hold the stream after
// all): it answers status with detail as a problem on w (Retry-After with
// a 503; Connection: close on HTTP/1, so that a refused stream keeps no
// connection and its descriptor), gives back the subscription and the
// stream's places, counts a 503 as refused at the instance's limit, and
// writes the request's log line with status. w is the handler's writer
// while the edge has not taken the connection; once it has, a writer
// whose response the edge sends itself. Detach then returns true.
func (h *Handover) Refuse(w http.ResponseWriter, status int, detail string) {
	if h.done {
		return
	}
	h.done = true
	var path string
	if req := h.req; req != nil { // nil only if called after Detach, which it must not be
		path = req.path
		if req.w != nil { // not begun: the log line is still the handler's
			h.line = detachLine(req.w, req.r)
			req.w, req.r = nil, nil
		}
	}
	w.Header().Del("X-Accel-Buffering") // the stream's, set before Detach
	if h.http1 {
		w.Header().Set("Connection", "close")
	}
	cw := &countingWriter{ResponseWriter: w}
	writeProblemBody(cw, problem{Status: status, Detail: detail, Instance: path})
	if status == http.StatusServiceUnavailable {
		h.st.m.streamRejected("instance")
	}
	h.st.close()
	h.line.write(status, cw.n, h.st.id)
}

// countingWriter counts the body bytes written through it.
type countingWriter struct {
	http.ResponseWriter
	n int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	c.n += int64(n)
	return n, err
}

// KeepAlive is the heartbeat a stream with cfg's padding sends while idle,
// for an edge that sends heartbeats itself.
func (c Config) KeepAlive() []byte {
	return append(keepAlive[:len(keepAlive):len(keepAlive)], paddingBlock(c.FlushPadding)...)
}
