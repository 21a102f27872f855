package httpapi

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/orderstream/orderstream/shared/broker"
	"github.com/orderstream/orderstream/shared/sse"
)

// eventType names every event of an order stream.
const eventType = "order-update"

// keepAlive is the heartbeat: a comment, then a blank line, so that proxies
// which pass data on at frame boundaries pass it on.
var keepAlive = append(sse.AppendComment(nil, "keep-alive"), '\n')

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
		id, ok := orderID(w, r)
		if !ok {
			return
		}
		after, err := lastEventID(r)
		if err != nil {
			writeProblem(w, r, http.StatusBadRequest, err.Error())
			return
		}
		release, refused := limits.acquire(r, id)
		if refused != nil {
			m.streamRejected(refused.limit)
			writeProblem(w, r, refused.status, refused.detail)
			return
		}
		defer release()
		sub, err := b.Subscribe(r.Context(), id, after)
		if err != nil {
			writeBrokerError(logger, m, "subscribe", w, r, err)
			return
		}
		defer sub.Close()
		if sub.Finished && len(sub.History) == 0 {
			// The client has seen the end: 204 tells EventSource to stop reconnecting.
			w.WriteHeader(http.StatusNoContent)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Accel-Buffering", "no")
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodHead {
			return
		}

		m.streamOpened()
		defer m.streamClosed()
		s := &streamWriter{w: w, rc: http.NewResponseController(w), timeout: cfg.WriteTimeout, m: m}
		s.buf = sse.AppendRetry(s.buf, cfg.RetryInterval)
		if s.flush() != nil {
			return
		}
		for _, ev := range sub.History {
			if s.event(ev, false) != nil {
				return
			}
		}
		if sub.Finished || cfg.HistoryOnly {
			return
		}

		heartbeat := time.NewTimer(cfg.HeartbeatInterval)
		defer heartbeat.Stop()
		var lifetime <-chan time.Time
		if cfg.MaxStreamDuration > 0 {
			t := time.NewTimer(cfg.MaxStreamDuration)
			defer t.Stop()
			lifetime = t.C
		}
		for {
			select {
			case ev, ok := <-sub.Events():
				if !ok {
					// Finished (nil), dropped as too slow, or the broker went
					// away: end the stream; the client resumes from its last id.
					switch err := sub.Err(); {
					case errors.Is(err, broker.ErrSlowSubscriber):
						m.subscriberDropped("buffer")
						logger.Info("stream ended early", "order", id, "reason", err)
					case errors.Is(err, broker.ErrClosed):
						logger.Info("stream ended early", "order", id, "reason", err)
					case err != nil:
						m.brokerError("stream")
						logger.Info("stream ended early", "order", id, "reason", err)
					}
					return
				}
				if s.event(ev, true) != nil || ev.Update.Status.Terminal() {
					return
				}
				heartbeat.Reset(cfg.HeartbeatInterval)
			case <-heartbeat.C:
				s.buf = append(s.buf, keepAlive...)
				if s.flush() != nil {
					return
				}
				heartbeat.Reset(cfg.HeartbeatInterval)
			case <-lifetime:
				return
			case <-cfg.Done:
				return
			case <-r.Context().Done():
				return
			}
		}
	})
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
