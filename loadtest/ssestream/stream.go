// Package ssestream is the load suite's event-stream subscriber, without
// k6: the k6 extension (xsse) and the baseline tool both use it.
package ssestream

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"math/rand/v2"
	"mime"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/orderstream/orderstream/shared/sse"
)

// Recorder receives what streams observe. Its methods are called from the
// streams' goroutines, concurrently.
type Recorder interface {
	Connecting(d time.Duration) // from sending the request to a 200's headers
	Open(delta int)             // a stream opened (+1) or ended (-1)
	FirstEvent(d time.Duration) // from the stream's first request to its first event
	// Event reports one event (not a duplicate). replayed: it was published
	// before the request that brought it (history), so its latency says
	// nothing about delivery and is not recorded.
	Event(received, published time.Time, replayed bool)
	Heartbeat()
	Reconnect()
	// Resumed reports a stream open again (a 200) after its previous
	// connection ended early: d runs from that end, through the retry:
	// wait and any failed attempts, to the new stream's headers.
	Resumed(d time.Duration)
	Error(reason string)
	Gaps(n int)
	Duplicate()
	Completed() // the order's terminal event arrived (or a 204 said it had)
}

// StreamConfig is what every stream of one open() shares.
type StreamConfig struct {
	Headers     http.Header
	LastEventID string
	// Reconnect after a stream ends early (error, EOF before the terminal
	// event, a drop): the client resumes with Last-Event-ID, as EventSource does.
	Reconnect bool
	// ReconnectDelay < 0 waits for what the server's retry: field says (3s
	// before it has said anything), as EventSource does.
	ReconnectDelay time.Duration
	// DropMin..DropMax (both > 0): each connection is cut after a random
	// time in the range, then resumed: the resume test.
	DropMin, DropMax time.Duration
	// ExpectAll: a simulation publishes every status from Created on, so a
	// missing one is a gap.
	ExpectAll bool
}

const defaultRetry = 3 * time.Second

type endKind int

const (
	endClosed   endKind = iota // our context ended: the test is over
	endFinished                // terminal event or 204: do not reconnect
	endRetry                   // ended early (error, EOF, drop): resume
)

// stream is one subscriber, over as many connections as it takes.
type stream struct {
	client *http.Client
	url    string
	cfg    *StreamConfig
	rec    Recorder

	lastID   string
	retry    time.Duration
	seq      Sequence
	start    time.Time
	gotFirst bool
	endedAt  time.Time // when the last connection ended early; zero while one is open
}

// Run subscribes to url until the order ends, or ctx does.
func Run(ctx context.Context, client *http.Client, url string, cfg *StreamConfig, rec Recorder) {
	s := &stream{
		client: client, url: url, cfg: cfg, rec: rec,
		lastID: cfg.LastEventID, retry: -1,
		seq:   Sequence{ExpectAll: cfg.ExpectAll && cfg.LastEventID == ""},
		start: time.Now(),
	}
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			if !s.cfg.Reconnect || !Sleep(ctx, s.delay()) {
				return
			}
			rec.Reconnect()
		}
		switch s.connect(ctx) {
		case endClosed:
			return
		case endFinished:
			rec.Completed()
			return
		case endRetry:
			if s.endedAt.IsZero() { // failed attempts keep the first end
				s.endedAt = time.Now()
			}
		}
	}
}

func (s *stream) delay() time.Duration {
	switch {
	case s.cfg.ReconnectDelay >= 0:
		return s.cfg.ReconnectDelay
	case s.retry >= 0:
		return s.retry
	}
	return defaultRetry
}

// errDrop marks a connection the test cut on purpose.
var errDrop = errors.New("planned drop")

// connect makes one request and reads its stream to the end.
func (s *stream) connect(ctx context.Context) endKind {
	attemptCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if s.cfg.DropMax > 0 {
		span := s.cfg.DropMax - s.cfg.DropMin
		after := s.cfg.DropMin
		if span > 0 {
			after += rand.N(span)
		}
		t := time.AfterFunc(after, func() { cancel(errDrop) })
		defer t.Stop()
	}
	// ended tells why reading stopped when the read error itself can't.
	ended := func(reason string) endKind {
		switch {
		case ctx.Err() != nil:
			return endClosed
		case errors.Is(context.Cause(attemptCtx), errDrop):
			return endRetry
		}
		s.rec.Error(reason)
		return endRetry
	}

	req, err := http.NewRequestWithContext(attemptCtx, http.MethodGet, s.url, nil)
	if err != nil {
		s.rec.Error("request")
		return endFinished // a bad URL does not get better
	}
	for k, v := range s.cfg.Headers {
		req.Header[k] = v
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Cache-Control", "no-cache")
	if s.lastID != "" {
		req.Header.Set("Last-Event-ID", s.lastID)
	}
	sent := time.Now()
	resp, err := s.client.Do(req)
	if err != nil {
		return ended(dialReason(err))
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNoContent:
		return endFinished
	default:
		if d, ok := retryAfter(resp.Header.Get("Retry-After")); ok {
			s.retry = d
		}
		return ended("status_" + strconv.Itoa(resp.StatusCode))
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "text/event-stream" {
		return ended("content_type")
	}
	s.rec.Connecting(time.Since(sent))
	if !s.endedAt.IsZero() {
		s.rec.Resumed(time.Since(s.endedAt))
		s.endedAt = time.Time{}
	}
	s.rec.Open(+1)
	defer s.rec.Open(-1)

	dec := sse.NewDecoder(resp.Body)
	dec.SetMaxLineLength(64 << 10)
	dec.OnComment = func(string) { s.rec.Heartbeat() }
	for {
		msg, err := dec.Next()
		now := time.Now()
		if r, ok := dec.Retry(); ok {
			s.retry = r
		}
		if err != nil {
			if errors.Is(err, io.EOF) && ctx.Err() == nil && context.Cause(attemptCtx) == nil {
				return endRetry // the server ended the stream early: resume, no error
			}
			return ended("read")
		}
		s.lastID = dec.LastEventID()
		u, err := ParseUpdate(msg.Data)
		if err != nil {
			s.rec.Error("data")
			continue
		}
		v := s.seq.Observe(msg.ID, u.Status)
		if v.Duplicate {
			s.rec.Duplicate()
			continue
		}
		if v.Gaps > 0 {
			s.rec.Gaps(v.Gaps)
		}
		if v.Backwards {
			s.rec.Error("order")
		}
		if !s.gotFirst {
			s.gotFirst = true
			s.rec.FirstEvent(now.Sub(s.start))
		}
		s.rec.Event(now, u.Timestamp, u.Timestamp.Before(sent))
		if Terminal(u.Status) {
			return endFinished
		}
	}
}

func dialReason(err error) string {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	return "connect"
}

func retryAfter(v string) (time.Duration, bool) {
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, false
	}
	return time.Duration(n) * time.Second, true
}

// Sleep waits d, or less if ctx ends first; it reports whether ctx is still live.
func Sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// NewClient returns the client every stream of a process shares: one
// transport, HTTP/1.1 (one TCP connection per stream, as browsers' EventSource
// over HTTP/1.1), no compression, small write buffers. sources, if any, are
// local addresses to dial from in turn: each source address has its own
// ~28k ephemeral ports towards one server address.
func NewClient(connectTimeout time.Duration, sources []net.IP, tlsConfig *tls.Config) *http.Client {
	dialers := []*net.Dialer{{Timeout: connectTimeout, KeepAlive: -1}}
	if len(sources) > 0 {
		dialers = dialers[:0]
		for _, ip := range sources {
			dialers = append(dialers, &net.Dialer{
				Timeout: connectTimeout, KeepAlive: -1,
				LocalAddr: &net.TCPAddr{IP: ip},
			})
		}
	}
	var next atomic.Uint64
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			d := dialers[(next.Add(1)-1)%uint64(len(dialers))]
			return d.DialContext(ctx, network, addr)
		},
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       30 * time.Second,
		TLSHandshakeTimeout:   connectTimeout,
		ResponseHeaderTimeout: connectTimeout,
		DisableCompression:    true,
		WriteBufferSize:       1 << 10,
		ReadBufferSize:        4 << 10,
	}
	if tlsConfig != nil {
		tr.TLSClientConfig = tlsConfig.Clone()
	}
	return &http.Client{
		Transport: tr,
		// An event stream that redirects is a misconfigured target: say so.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
