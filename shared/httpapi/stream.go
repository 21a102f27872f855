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
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/orderstream/orderstream/shared/broker"
	"github.com/orderstream/orderstream/shared/sse"
)

// eventType names every event of an order stream.
const eventType = "order-update"

// keepAlive is the heartbeat: a comment, then a blank line, so that proxies
// which pass data on at frame boundaries pass it on.
var keepAlive = append(sse.AppendComment(nil, "keep-alive"), '\n')

// paddingBlock is n bytes that every SSE decoder skips: a comment line of
// spaces ended by a blank line (so it is a whole frame, like keepAlive), or
// blank lines alone when n is too small for a comment. nil for n <= 0.
func paddingBlock(n int) []byte {
	if n <= 0 {
		return nil
	}
	if n < 3 {
		return bytes.Repeat([]byte{'\n'}, n)
	}
	b := make([]byte, 0, n)
	b = append(b, ':')
	b = append(b, bytes.Repeat([]byte{' '}, n-3)...)
	return append(b, '\n', '\n')
}

// lastEventID is where the client resumes: the Last-Event-ID header (set by
// EventSource on reconnect) wins over the lastEventId query parameter (set by
// clients that can't send headers, and still present on the URL EventSource
// reconnects to).
func lastEventID(r *http.Request) (broker.EventID, error) {
	v, ok := r.Header["Last-Event-Id"]
	if !ok || len(v) == 0 {
		q := r.URL.Query()
		if !q.Has("lastEventId") {
			return broker.EventID{}, nil
		}
		v = q["lastEventId"]
	}
	if v[0] == "" {
		return broker.EventID{}, nil // EventSource sends an empty id as "start over"
	}
	id, err := broker.ParseEventID(v[0])
	if err != nil {
		return broker.EventID{}, fmt.Errorf("Last-Event-ID %q was not issued by this service: %w", v[0], err)
	}
	return id, nil
}

func handleStream(logger *slog.Logger, b broker.Broker, cfg Config, m *metrics, limits *streamLimits) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Where it can, a live stream leaves this handler (detach); where it
		// can't, its goroutine sits in live for as long as the stream is
		// open. Calls, not one body, keep the frames left on the stack then
		// small, so the runtime shrinks the stack to 8 KiB instead of 16
		// (BenchmarkIdleStreamMemory); cfg goes by pointer for the same reason.
		st := openStream(logger, b, &cfg, m, limits, w, r)
		if st == nil {
			return // answered
		}
		detached := false
		defer func() {
			if !detached {
				st.close()
			}
		}()
		if !st.begin(&cfg, w, r) {
			return
		}
		if detached = st.detach(logger, &cfg, w, r); !detached {
			st.live(logger, &cfg, r.Context().Done())
		}
	})
}

// stream is one open event stream.
type stream struct {
	id      uuid.UUID
	sub     *broker.Subscription
	release func() // gives back the stream's place under the limits
	w       streamWriter
	m       *metrics
	opened  bool // counted as an open stream
}

// openStream checks the request, takes a place under the limits and
// subscribes. It returns nil when it has answered the request itself.
//
//go:noinline
func openStream(logger *slog.Logger, b broker.Broker, cfg *Config, m *metrics, limits *streamLimits, w http.ResponseWriter, r *http.Request) *stream {
	id, ok := orderID(w, r)
	if !ok {
		return nil
	}
	after, err := lastEventID(r)
	if err != nil {
		writeProblem(w, r, http.StatusBadRequest, err.Error())
		return nil
	}
	release, refused := limits.acquire(r, id)
	if refused != nil {
		m.streamRejected(refused.limit)
		writeProblem(w, r, refused.status, refused.detail)
		return nil
	}
	sub, err := b.Subscribe(r.Context(), id, after)
	if err != nil {
		release()
		writeBrokerError(logger, m, "subscribe", w, r, err)
		return nil
	}
	return &stream{id: id, sub: sub, release: release, m: m,
		w: streamWriter{w: w, rc: http.NewResponseController(w), timeout: cfg.WriteTimeout, m: m, padding: cfg.padding}}
}

func (st *stream) close() {
	if st.opened {
		st.m.streamClosed()
	}
	st.sub.Close()
	st.release()
}

// begin answers with the stream's headers, the retry: field and the
// history. It reports whether live events follow.
//
//go:noinline
func (st *stream) begin(cfg *Config, w http.ResponseWriter, r *http.Request) bool {
	if st.sub.Finished && len(st.sub.History) == 0 {
		// The client has seen the end: 204 tells EventSource to stop reconnecting.
		st.w.w.WriteHeader(http.StatusNoContent)
		return false
	}
	h := st.w.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	if canDetach(cfg, w, r) {
		// The stream will take the connection over (detach): none may
		// follow on it.
		h.Set("Connection", "close")
	}
	st.w.w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return false
	}
	st.m.streamOpened()
	st.opened = true
	st.w.buf = sse.AppendRetry(st.w.buf, cfg.retry())
	if st.w.flush() != nil {
		return false
	}
	for _, ev := range st.sub.History {
		if st.w.event(ev, false) != nil {
			return false
		}
	}
	return !st.sub.Finished && !cfg.HistoryOnly
}

// live sends live events and heartbeats until the order ends, the client
// goes (gone is closed), the stream has lived cfg.MaxStreamDuration, its
// turn in the server's drain comes (cfg.Drain), or the server shuts down.
//
//go:noinline
func (st *stream) live(logger *slog.Logger, cfg *Config, gone <-chan struct{}) {
	heartbeat := time.NewTimer(cfg.HeartbeatInterval)
	defer heartbeat.Stop()
	var lifetime <-chan time.Time
	if cfg.MaxStreamDuration > 0 {
		t := time.NewTimer(cfg.MaxStreamDuration)
		defer t.Stop()
		lifetime = t.C
	}
	// A timer only once the drain begins: an idle stream keeps no more.
	drainBegun := cfg.Drain.Begun()
	var drained <-chan time.Time
	for {
		select {
		case <-drainBegun:
			drainBegun = nil
			// No Stop (and no defer in this loop): since Go 1.23 a timer
			// nothing refers to is collected, fired or not.
			drained = time.After(cfg.Drain.streamLeft(time.Now()))
		case <-drained:
			return
		case ev, ok := <-st.sub.Events():
			if !ok {
				// Finished (nil), dropped as too slow, or the broker went
				// away: end the stream; the client resumes from its last id.
				st.endedEarly(logger)
				return
			}
			if st.w.event(ev, true) != nil || ev.Update.Status.Terminal() {
				return
			}
			heartbeat.Reset(cfg.HeartbeatInterval)
		case <-heartbeat.C:
			st.w.buf = append(st.w.buf, keepAlive...)
			if st.w.flush() != nil {
				return
			}
			heartbeat.Reset(cfg.HeartbeatInterval)
		case <-lifetime:
			return
		case <-cfg.Done:
			return
		case <-gone:
			return
		}
	}
}

// canDetach tells whether the stream may take its connection over from
// net/http: only on HTTP/1.1 (HTTP/2 streams share a connection, and
// net/http sends HTTP/1.0 bodies unchunked), only if the writer can give
// the connection up (Lambda's can't), and only when the caller waits for
// detached streams at shutdown (cfg.Streams).
func canDetach(cfg *Config, w http.ResponseWriter, r *http.Request) bool {
	if cfg.Streams == nil || r.ProtoMajor != 1 || r.ProtoMinor < 1 {
		return false
	}
	for {
		if _, ok := w.(http.Hijacker); ok {
			return true
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return false
		}
		w = u.Unwrap()
	}
}

// detach hands the live stream to goroutines of its own, on its connection
// taken over from net/http, and reports whether it did; the handler then
// returns. While a handler runs, net/http keeps the connection's 4 KiB
// reader and 4 KiB writer, the handler's 8 KiB stack and a goroutine reading
// for the client's close: a detached stream keeps a small writing goroutine
// and a small reading one instead (BenchmarkIdleStreamMemory). net/http had
// begun a chunked body, so the stream goes on in chunks and ends with the
// last chunk; the response said Connection: close.
//
//go:noinline
func (st *stream) detach(logger *slog.Logger, cfg *Config, w http.ResponseWriter, r *http.Request) bool {
	if !canDetach(cfg, w, r) {
		return false
	}
	// Counted before the connection is taken: once it is, net/http's
	// Shutdown no longer waits for it, and the caller's Wait may begin.
	if !cfg.Streams.add(2) {
		return false // shutting down
	}
	conn, _, err := st.w.rc.Hijack()
	if err != nil {
		cfg.Streams.done(2)
		return false
	}
	logLine := detachLine(w, r)
	st.w.detach(conn)
	gone := make(chan struct{})
	go func() {
		defer cfg.Streams.done(1)
		defer close(gone)
		// The client sends nothing more; a read ends when it closes the
		// connection (or live does).
		var b [64]byte
		for {
			if _, err := conn.Read(b[:]); err != nil {
				return
			}
		}
	}()
	go func() {
		defer cfg.Streams.done(1)
		defer func() {
			if v := recover(); v != nil {
				// net/http's recovery no longer covers this goroutine: a
				// panic ends this stream only (the client resumes), never
				// the process.
				logger.Error("panic in a stream", "order", st.id, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			}
			conn.Close()
			st.close()
			if logLine != nil {
				logLine(st.w.sent)
			}
		}()
		st.live(logger, cfg, gone)
		st.w.endChunked()
	}()
	return true
}

// endedEarly says why the broker ended the subscription, if not because
// the order finished.
//
//go:noinline
func (st *stream) endedEarly(logger *slog.Logger) {
	switch err := st.sub.Err(); {
	case errors.Is(err, broker.ErrSlowSubscriber):
		st.m.subscriberDropped("buffer")
		logger.Info("stream ended early", "order", st.id, "reason", err)
	case errors.Is(err, broker.ErrClosed):
		logger.Info("stream ended early", "order", st.id, "reason", err)
	case err != nil:
		st.m.brokerError("stream")
		logger.Info("stream ended early", "order", st.id, "reason", err)
	}
}

// streamWriter sends whole SSE frames: one Write and one flush each, under a
// per-write deadline, so that a client that stops reading is cut off after
// cfg.WriteTimeout instead of pinning the handler (and the server-wide
// WriteTimeout, meant for short requests, never cuts a healthy stream).
type streamWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	buf     []byte
	m       *metrics
	padding []byte // Config.FlushPadding's block, sent after each write

	// Once detached: the connection, taken over from net/http mid-way
	// through a chunked body, the chunk being framed, and the bytes of
	// frames sent since (for the request log).
	conn  net.Conn
	chunk []byte
	sent  int64
}

// detach makes the writer write to conn, in HTTP/1.1 chunks.
func (s *streamWriter) detach(conn net.Conn) {
	s.w, s.rc, s.conn = nil, nil, conn
}

// event sends ev; live says it was just published (not history), so its
// delivery latency is worth recording.
func (s *streamWriter) event(ev broker.Event, live bool) error {
	var err error
	s.buf, err = sse.AppendMessage(s.buf, sse.Message{ID: ev.ID, Event: eventType, Data: ev.Data})
	if err != nil {
		return err // cannot happen for a broker's events; ending the stream is the safe answer
	}
	if err := s.flush(); err != nil {
		return err
	}
	s.m.eventDelivered(ev.Update.Timestamp, live)
	return nil
}

func (s *streamWriter) flush() error {
	s.buf = append(s.buf, s.padding...)
	if s.conn != nil {
		return s.flushChunk()
	}
	// Writers without deadlines or flushing (Lambda's streaming response
	// writes through at once) answer ErrNotSupported: that's fine.
	if err := s.rc.SetWriteDeadline(time.Now().Add(s.timeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	_, err := s.w.Write(s.buf)
	s.buf = s.buf[:0]
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			s.m.subscriberDropped("write_timeout")
		}
		return err
	}
	if err := s.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return nil
}

// flushChunk sends what is buffered as one chunk on the detached connection.
func (s *streamWriter) flushChunk() error {
	s.chunk = strconv.AppendInt(s.chunk[:0], int64(len(s.buf)), 16)
	s.chunk = append(s.chunk, "\r\n"...)
	s.chunk = append(s.chunk, s.buf...)
	s.chunk = append(s.chunk, "\r\n"...)
	n := len(s.buf)
	s.buf = s.buf[:0]
	return s.writeConn(s.chunk, int64(n))
}

// endChunked ends the detached body with the last chunk, so that the client
// sees a clean end rather than a cut connection.
func (s *streamWriter) endChunked() {
	s.writeConn([]byte("0\r\n\r\n"), 0)
}

func (s *streamWriter) writeConn(b []byte, payload int64) error {
	if err := s.conn.SetWriteDeadline(time.Now().Add(s.timeout)); err != nil {
		return err
	}
	if _, err := s.conn.Write(b); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			s.m.subscriberDropped("write_timeout")
		}
		return err
	}
	s.sent += payload
	return nil
}
