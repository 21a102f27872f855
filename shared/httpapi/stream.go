package httpapi

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
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
		// Where an edge takes it (a Detacher on w), a live stream leaves
		// this handler; otherwise its goroutine sits in live for as long as
		// the stream is open. Calls, not one body, and cfg by pointer keep
		// the frames left on the stack then small, so the runtime shrinks
		// the stack to 8 KiB instead of 16
		// (TestIdleInHandlerStreamStackStaysSmall fails if that regresses).
		st := openStream(logger, b, &cfg, m, limits, w, r)
		if st == nil {
			return // answered
		}
		if st.offer(logger, &cfg, w, r) {
			return // the Detacher ends it
		}
		defer st.close()
		if !st.begin(&cfg, w, r) {
			return
		}
		st.live(logger, &cfg, r.Context().Done())
	})
}

// stream is one open event stream.
type stream struct {
	id     uuid.UUID
	sub    *broker.Subscription
	place  limitPlace     // the stream's place under the limits
	out    *handlerWriter // a stream served in its handler writes here (with its frame buffer and padding)
	m      *metrics
	opened bool // counted as an open stream
	// h is the stream as offered to a Detacher, if one was: part of the
	// stream, so that offering it costs no allocation of its own.
	h Handover
}

// openStream checks the request, takes a place under the limits and
// subscribes. It returns nil when it has answered the request itself.
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
	if r.ContentLength != 0 || len(r.TransferEncoding) > 0 {
		// A stream's request ends at its headers: a body would be read by
		// no one (and, where the edge takes the connection over, left in
		// the socket, where it would turn the stream's close into a reset).
		writeProblem(w, r, http.StatusBadRequest, "a stream request carries no body; send it without one")
		return nil
	}
	place, refused := limits.acquire(r, id)
	if refused != nil {
		m.streamRejected(refused.limit)
		if r.ProtoMajor == 1 {
			// A refused stream keeps no connection: under a full instance
			// its descriptor is what the next request needs. (On HTTP/2
			// this would close every stream of the connection.)
			w.Header().Set("Connection", "close")
		}
		writeProblem(w, r, refused.status, refused.detail)
		return nil
	}
	sub, err := b.Subscribe(r.Context(), id, after)
	if err != nil {
		place.release(id)
		writeBrokerError(logger, m, "subscribe", w, r, err)
		return nil
	}
	return &stream{id: id, sub: sub, place: place, m: m}
}

func (st *stream) close() {
	if st.opened {
		st.m.streamClosed()
	}
	st.sub.Close()
	st.place.release(st.id)
}

// setHeaders sets the stream's response headers, each to a value shared by
// every stream (Header.Set would make a slice per header per stream): no
// one changes a response's header values in place (Add appends, which
// copies a full slice).
func setHeaders(h http.Header) {
	h["Content-Type"] = eventStreamType
	h["Cache-Control"] = noCache
	h["X-Accel-Buffering"] = no
}

var (
	eventStreamType = []string{"text/event-stream"}
	noCache         = []string{"no-cache"}
	no              = []string{"no"}
)

// begin answers with the stream's headers, the retry: field and the
// history. It reports whether live events follow.
func (st *stream) begin(cfg *Config, w http.ResponseWriter, r *http.Request) bool {
	if st.sub.Finished && len(st.sub.History) == 0 {
		// The client has seen the end: 204 tells EventSource to stop reconnecting.
		w.WriteHeader(http.StatusNoContent)
		return false
	}
	setHeaders(w.Header())
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return false
	}
	// Only a stream served here writes through the handler's writer: one a
	// Detacher takes never makes it.
	st.out = &handlerWriter{w: w, rc: http.NewResponseController(w), timeout: cfg.WriteTimeout, m: st.m, padding: cfg.padding}
	st.m.streamOpened()
	st.opened = true
	return st.history(cfg)
}

// history sends the retry: field and the history; it reports whether live
// events follow.
func (st *stream) history(cfg *Config) bool {
	st.out.buf = sse.AppendRetry(st.out.buf[:0], cfg.retry())
	if st.flush() != nil {
		return false
	}
	for _, ev := range st.sub.History {
		if st.event(ev, false) != nil {
			return false
		}
	}
	return !st.sub.Finished && !cfg.HistoryOnly
}

// live sends live events and heartbeats until the order ends, the stream
// has lived cfg.MaxStreamDuration, or gone is closed: the request's context
// is done, because the client went or because the server ends the stream
// (Lambda's deadline, a server that cancels its requests), or the channel
// a Detacher that kept the stream here gave it (Handover.EndWith: its
// drain, its shutdown) is.
func (st *stream) live(logger *slog.Logger, cfg *Config, gone <-chan struct{}) {
	heartbeat := time.NewTimer(cfg.HeartbeatInterval)
	defer heartbeat.Stop()
	var lifetime <-chan time.Time
	if cfg.MaxStreamDuration > 0 {
		t := time.NewTimer(cfg.MaxStreamDuration)
		defer t.Stop()
		lifetime = t.C
	}
	events := st.sub.Events()
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				// Finished (nil), dropped as too slow, or the broker went
				// away: end the stream; the client resumes from its last id.
				st.endedEarly(logger, st.sub.Err())
				return
			}
			if st.event(ev, true) != nil || ev.Update.Status.Terminal() {
				return
			}
			heartbeat.Reset(cfg.HeartbeatInterval)
		case <-heartbeat.C:
			st.out.buf = append(st.out.buf[:0], keepAlive...)
			if st.flush() != nil {
				return
			}
			heartbeat.Reset(cfg.HeartbeatInterval)
		case <-lifetime:
			return
		case <-gone:
			return
		case <-st.h.end:
			return
		}
	}
}

// endedEarly says why the broker ended the subscription, if not because
// the order finished.
func (st *stream) endedEarly(logger *slog.Logger, err error) {
	switch {
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

// appendEvent encodes ev as one frame, with the padding after it.
func appendEvent(b []byte, ev broker.Event, padding []byte) ([]byte, error) {
	b, err := sse.AppendMessage(b, sse.Message{ID: ev.ID, Event: eventType, Data: ev.Data})
	if err != nil {
		return b, err // cannot happen for a broker's events; ending the stream is the safe answer
	}
	return append(b, padding...), nil
}

// event sends ev; live says it was just published (not history), so its
// delivery latency is worth recording.
func (st *stream) event(ev broker.Event, live bool) error {
	var err error
	if st.out.buf, err = appendEvent(st.out.buf[:0], ev, st.out.padding); err != nil {
		return err
	}
	if err := st.out.send(st.out.buf); err != nil {
		return err
	}
	st.m.eventDelivered(ev.Update.Timestamp, live)
	return nil
}

// flush sends what is in buf, with the padding after it.
func (st *stream) flush() error {
	st.out.buf = append(st.out.buf, st.out.padding...)
	return st.out.send(st.out.buf)
}

// handlerWriter sends a stream's frames through its handler's writer: one
// Write and one flush each, under a per-write deadline, so that a client
// that stops reading is cut off after cfg.WriteTimeout instead of pinning
// the handler (and the server-wide WriteTimeout, meant for short requests,
// never cuts a healthy stream).
type handlerWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	m       *metrics
	// The frame being encoded and Config.FlushPadding's block, sent after
	// each frame: here and not in stream, which a stream that leaves its
	// handler keeps until it closes (a Handover takes the padding from
	// its Config).
	buf, padding []byte
}

func (h *handlerWriter) send(frame []byte) error {
	// Writers without deadlines or flushing (Lambda's streaming response
	// writes through at once) answer ErrNotSupported: that's fine.
	if err := h.rc.SetWriteDeadline(time.Now().Add(h.timeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	if _, err := h.w.Write(frame); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			h.m.subscriberDropped("write_timeout")
		}
		return err
	}
	if err := h.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return nil
}
