// Package socketstreams serves the core's live streams the way a long-lived
// server on its own sockets can: it wraps the handler of shared/httpapi, as
// lambdaurl wraps it for Lambda, and the core never knows it is there.
//
// Where it can (Linux, a GET over HTTP/1.1 on plain TCP), a live stream
// leaves its handler and becomes a registered socket (shared/sockets): no
// goroutine, no stack, written by the registry's writers, one encoding of
// each event for all of an order's streams. Everywhere else (HTTP/2,
// HTTP/1.0, TLS, other systems) the stream stays in its handler.
//
// Either way, Streams ends the streams when the server goes: spread over a
// drain window (Drain), then all at once (End); Close waits for the
// registered ones, which net/http no longer tracks. A stream in its handler
// is ended by closing the channel it was given (httpapi.Handover.EndWith),
// which the core treats as the end of the stream.
package socketstreams

import (
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/orderstream/orderstream/shared/httpapi"
	"github.com/orderstream/orderstream/shared/sockets"
)

// Streams holds one server's live streams. Make it with New, wrap the
// server's handler with Wrap, and at shutdown call Drain, End (from
// http.Server.RegisterOnShutdown) and, once the server has stopped, Close.
type Streams struct {
	logger *slog.Logger
	reg    *sockets.Registry // nil: every stream stays in its handler
	drain  drain
	limit  Limit

	// held counts the live streams offered and not yet gone, in their
	// handlers or registered: with the registry's lingering closes, the
	// descriptors streams hold, which limit.Max bounds.
	held atomic.Int64

	groupsMu sync.Mutex
	groups   map[uuid.UUID]*orderGroup // by order, while some registered stream holds it

	mu         sync.Mutex
	ended      bool // End was called: streams offered now end at once
	registered map[*registered]struct{}
	inHandlers map[*offer]struct{}
	// open counts the registered streams not yet closed: once a stream has
	// left its handler, net/http's Shutdown no longer waits for it.
	open sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// Options are what Streams needs besides the core's configuration.
type Options struct {
	// Register holds live streams as registered sockets where it can
	// (Linux, HTTP/1.1 on plain TCP); false keeps every stream in its
	// handler.
	Register bool
	// Reserve is how many descriptors the process holds besides its
	// streams and the base reserve Limit describes: the broker's
	// connections.
	Reserve int
}

// New returns Streams for the streams of a server configured with cfg,
// whose heartbeat, write timeout and padding registered streams keep too,
// and works out how many streams it may hold (Limit). With opts.Register
// false, or where registered sockets are not supported or cannot be made
// (said in the log), every stream stays in its handler and only the
// drain, the shutdown and the limit apply.
func New(logger *slog.Logger, cfg httpapi.Config, opts Options) *Streams {
	s := &Streams{logger: logger, registered: make(map[*registered]struct{}),
		inHandlers: make(map[*offer]struct{}), groups: make(map[uuid.UUID]*orderGroup)}
	if opts.Register {
		s.reg = openRegistry(logger, cfg)
	}
	s.limit = streamLimit(cfg.MaxStreams, opts.Reserve)
	if s.limit.Over > 0 {
		logger.Warn("MAX_STREAMS is more than the open-file limit leaves for streams: streams past it are refused",
			"max_streams", s.limit.Over, "open_file_limit", s.limit.Files, "max", s.limit.Max)
	}
	return s
}

// Limit is how many streams the server may hold, for httpapi.Config's
// MaxStreams and the startup log: MAX_STREAMS if set and the descriptors
// allow it, else what the process's open-file limit leaves once the
// descriptors it holds besides streams are set aside.
func (s *Streams) Limit() Limit { return s.limit }

// Wrap returns next with its live streams held by s. Wrap one server's
// handler per Streams: its registered streams share one encoding of each
// event, and so the server's padding.
func (s *Streams) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			next.ServeHTTP(w, r) // only a GET is ever a live stream
			return
		}
		s.serve(next, w, r)
	})
}

// serve gives the request a writer that takes its stream, if it is one.
// Nothing more: a GET that is no stream, or a stream taken over, costs
// Streams one small struct.
func (s *Streams) serve(next http.Handler, w http.ResponseWriter, r *http.Request) {
	o := &offer{ResponseWriter: w, r: r, s: s}
	defer o.finished()
	next.ServeHTTP(o, r)
}

// offer is a GET request's writer: the core offers it the request's
// stream (httpapi.Detacher). Unwrap lets http.ResponseController reach
// net/http's writer beneath.
type offer struct {
	http.ResponseWriter
	r *http.Request
	s *Streams
	// ended, made when the stream is kept in its handler, ends it once
	// closed (httpapi.Handover.EndWith).
	ended   chan struct{}
	endOnce sync.Once
	kept    bool // in s.inHandlers
	held    bool // a place admit took, given back when the handler returns
}

func (o *offer) Unwrap() http.ResponseWriter { return o.ResponseWriter }

// end ends the stream kept in its handler, at a frame boundary; again, or
// once the handler has returned, it does nothing.
func (o *offer) end() { o.endOnce.Do(func() { close(o.ended) }) }

// Detach takes the stream as a registered socket where it can; otherwise
// it lists the stream, which stays in its handler, for the drain and
// shutdown to end. Either way it holds a descriptor: past the limit
// (counting the descriptors of streams that ended and still linger) the
// stream is refused, before its connection is taken over: 503 with
// Retry-After, and the connection closed.
func (o *offer) Detach(h *httpapi.Handover) bool {
	s := o.s
	if !s.admit() {
		h.Refuse(o.ResponseWriter, http.StatusServiceUnavailable, unavailable)
		return true
	}
	if s.register(o.ResponseWriter, o.r, h) {
		return true // its place is the registered stream's, or given back
	}
	o.held = true
	o.ended = make(chan struct{})
	h.EndWith(o.ended)
	s.keep(o)
	return false
}

// admit takes a place for a live stream if the limit has one.
func (s *Streams) admit() bool {
	n := s.held.Add(1)
	if s.limit.Max <= 0 {
		return true
	}
	if s.reg != nil {
		n += s.reg.Stats().Lingering
	}
	if n > int64(s.limit.Max) {
		s.held.Add(-1)
		return false
	}
	return true
}

// release gives back a place admit took.
func (s *Streams) release() { s.held.Add(-1) }

// keep lists o's stream, kept in its handler, for the drain and shutdown.
func (s *Streams) keep(o *offer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		o.end() // shutting down: history, then the end
		return
	}
	s.inHandlers[o] = struct{}{}
	o.kept = true
	if s.drain.draining() {
		s.endInDrain(o.end)
	}
}

// finished runs when the handler returns.
func (o *offer) finished() {
	if o.kept {
		o.s.mu.Lock()
		delete(o.s.inHandlers, o)
		o.s.mu.Unlock()
	}
	if o.held {
		o.s.release()
	}
}

// Drain begins the drain, if it has not begun: Draining reports true (for
// /healthz, httpapi.Config.ShuttingDown), and every stream, open or opened
// later, ends at a frame boundary at a time drawn evenly from what is left
// of window; its client resumes elsewhere with its Last-Event-ID. It
// returns the time by which every stream will have been told to end.
func (s *Streams) Drain(window time.Duration) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.drain.draining() {
		return s.drain.end
	}
	end := s.drain.begin(window)
	for rs := range s.registered {
		s.endInDrain(rs.end)
	}
	for o := range s.inHandlers {
		s.endInDrain(o.end)
	}
	return end
}

// Draining reports whether the drain has begun.
func (s *Streams) Draining() bool { return s.drain.draining() }

// endInDrain calls end at a time drawn from what is left of the drain: a
// timer, not a goroutine. end does nothing if the stream has ended
// meanwhile.
func (s *Streams) endInDrain(end func()) {
	time.AfterFunc(s.drain.streamLeft(time.Now()), end)
}

// End ends every stream at once, at a frame boundary; streams offered
// afterwards send their history and end. Call it when the server shuts
// down (http.Server.RegisterOnShutdown), so that Shutdown is not left
// waiting on streams in their handlers.
func (s *Streams) End() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return
	}
	s.ended = true
	for rs := range s.registered {
		rs.end()
	}
	for o := range s.inHandlers {
		o.end()
	}
}

// Close ends every stream, waits until the registered ones have closed
// (their close hooks have run), and closes the registry. Call it once the
// server has stopped; calls after the first return what it did.
func (s *Streams) Close() error {
	s.closeOnce.Do(func() {
		s.End()
		s.open.Wait()
		if s.reg != nil {
			s.closeErr = s.reg.Close()
		}
	})
	return s.closeErr
}
