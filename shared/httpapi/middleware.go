package httpapi

import (
	"context"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/google/uuid"
)

// recordingWriter remembers the status for the request log. Unwrap lets
// http.ResponseController reach the real writer's Flush and deadlines.
type recordingWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
	// line is set on logRequests' writer only: what its log line needs, so
	// that a stream that leaves its handler can write the line when it ends.
	line     *requestLine
	detached bool // a stream left the handler: the line is its to write
}

func (w *recordingWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *recordingWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *recordingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// requestLine is one request's log line, minus what only its end knows.
// A stream that leaves its handler keeps it until the stream closes, so it
// is kept small (80 bytes, against 112 with the logger and metrics apart
// and a time.Time): what every line of a server shares is one pointer, and
// the start is a monotonic offset.
type requestLine struct {
	out                           *lineOut
	method, path, pattern, remote string
	start                         time.Duration // since epoch, on the monotonic clock
}

// lineOut is where a server's request lines go: one per logRequests.
type lineOut struct {
	logger *slog.Logger
	m      *metrics
}

// epoch is the monotonic origin of requestLine.start: time.Since(epoch)
// reads the monotonic clock, as time.Since(start) would.
var epoch = time.Now()

// write is apart from logRequests so that the log call's arguments stay
// out of the frames left on the stack under a stream kept in its handler
// (TestIdleInHandlerStreamStackStaysSmall).
func (l *requestLine) write(status int, bytes int64) {
	if status == 0 {
		status = http.StatusOK
	}
	// The mux sets r.Pattern on the request it routed: a bounded label.
	l.out.m.request(l.pattern, status)
	// Attrs, not key-value pairs: no value is boxed into an interface.
	l.out.logger.LogAttrs(context.Background(), slog.LevelInfo, "request",
		slog.String("method", l.method), slog.String("path", l.path), slog.Int("status", status),
		slog.Int64("bytes", bytes), slog.Duration("duration", (time.Since(epoch)-l.start).Round(time.Microsecond)),
		slog.String("remote", l.remote))
}

// logRequests writes one line per request when it ends (for a stream: when
// the stream ends), never one per event.
func logRequests(logger *slog.Logger, m *metrics, next http.Handler) http.Handler {
	out := &lineOut{logger: logger, m: m}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rw := &recordingWriter{ResponseWriter: w, line: &requestLine{
			out: out, method: knownMethod(r.Method), path: r.URL.Path,
			remote: r.RemoteAddr, start: time.Since(epoch)}}
		next.ServeHTTP(rw, r)
		if !rw.detached {
			rw.line.pattern = r.Pattern
			rw.line.write(rw.status, rw.bytes)
		}
	})
}

// detachLine tells logRequests that the stream writing to w goes on after
// its handler returns, and returns what writing the request's log line
// when it ends takes (detachedLine.write): no closure, so a stream that
// leaves its handler keeps no more than these. The zero detachedLine
// writes nothing (no logRequests in the chain).
func detachLine(w http.ResponseWriter, r *http.Request) detachedLine {
	for {
		if rw, ok := w.(*recordingWriter); ok && rw.line != nil {
			rw.detached = true
			rw.line.pattern = r.Pattern
			return detachedLine{line: rw.line, status: int32(rw.status), bytes: rw.bytes}
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return detachedLine{}
		}
		w = u.Unwrap()
	}
}

// detachedLine is a request's log line taken over from its handler, with
// the status and bytes written before.
type detachedLine struct {
	line   *requestLine
	status int32
	// orderPath: the line's path is its stream's, /orders/{id}/stream with
	// the id as the order's String, dropped until the line is written
	// (forgetPath).
	orderPath bool
	bytes     int64
}

// forgetPath drops the line's path while the stream lives if it is the
// path of order's stream as the core's route spells it: write rebuilds it,
// the same bytes. The path is a piece of the request line net/http read
// (64 bytes for a stream's), which an idle stream would otherwise keep.
func (d *detachedLine) forgetPath(order uuid.UUID) {
	if d.line == nil {
		return
	}
	var b [64]byte
	if p := appendStreamPath(b[:0], order); string(p) == d.line.path {
		d.line.path, d.orderPath = "", true
	}
}

// appendStreamPath appends the path of order's stream, as the core's route
// spells it with the order's canonical id.
func appendStreamPath(b []byte, order uuid.UUID) []byte {
	b = append(b, "/orders/"...)
	var id [36]byte
	hex.Encode(id[0:8], order[0:4])
	id[8] = '-'
	hex.Encode(id[9:13], order[4:6])
	id[13] = '-'
	hex.Encode(id[14:18], order[6:8])
	id[18] = '-'
	hex.Encode(id[19:23], order[8:10])
	id[23] = '-'
	hex.Encode(id[24:], order[10:])
	b = append(b, id[:]...)
	return append(b, "/stream"...)
}

// write writes the line with more bytes written since, and status if it
// is not 0 (the status the handler wrote otherwise; 200 if none), for the
// stream of order.
func (d detachedLine) write(status int, more int64, order uuid.UUID) {
	if d.line == nil {
		return
	}
	if status == 0 {
		status = int(d.status)
	}
	if d.orderPath {
		d.line.path = string(appendStreamPath(nil, order))
	}
	d.line.write(status, d.bytes+more)
}

// knownMethod is method as a constant where it is a standard one: a
// request's Method is a piece of the request line net/http read, which a
// log line kept for the life of a stream would otherwise keep.
func knownMethod(method string) string {
	for _, m := range [...]string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
		http.MethodPatch, http.MethodDelete, http.MethodOptions} {
		if method == m {
			return m
		}
	}
	return method
}

// recoverPanics turns a panic into a 500 problem (or, once a stream has
// started, a clean end of the stream) instead of a dead process: on Lambda a
// panic would kill the instance mid-stream.
func recoverPanics(logger *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rw, ok := w.(*recordingWriter) // logRequests' (NewServer puts it outside): one per request is enough
		if !ok {
			rw = &recordingWriter{ResponseWriter: w}
		}
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler { //nolint:errorlint // sentinel compared as net/http does
				panic(v)
			}
			logger.Error("panic serving request", "method", r.Method, "path", r.URL.Path,
				"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			if rw.status == 0 {
				writeProblem(rw, r, http.StatusInternalServerError, "internal error")
			}
		}()
		next.ServeHTTP(rw, r)
	})
}
