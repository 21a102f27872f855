package httpapi

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"
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
type requestLine struct {
	logger                        *slog.Logger
	m                             *metrics
	method, path, pattern, remote string
	start                         time.Time
}

// write is apart from logRequests so that the log call's arguments stay
// out of the frames left on the stack under a stream kept in its handler
// (TestIdleInHandlerStreamStackStaysSmall).
func (l *requestLine) write(status int, bytes int64) {
	if status == 0 {
		status = http.StatusOK
	}
	// The mux sets r.Pattern on the request it routed: a bounded label.
	l.m.request(l.pattern, status)
	// Attrs, not key-value pairs: no value is boxed into an interface.
	l.logger.LogAttrs(context.Background(), slog.LevelInfo, "request",
		slog.String("method", l.method), slog.String("path", l.path), slog.Int("status", status),
		slog.Int64("bytes", bytes), slog.Duration("duration", time.Since(l.start).Round(time.Microsecond)),
		slog.String("remote", l.remote))
}

// logRequests writes one line per request when it ends (for a stream: when
// the stream ends), never one per event.
func logRequests(logger *slog.Logger, m *metrics, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rw := &recordingWriter{ResponseWriter: w, line: &requestLine{
			logger: logger, m: m, method: r.Method, path: r.URL.Path,
			remote: r.RemoteAddr, start: time.Now()}}
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
			return detachedLine{line: rw.line, status: rw.status, bytes: rw.bytes}
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
	status int
	bytes  int64
}

// write writes the line with more bytes written since, and status if it
// is not 0 (the status the handler wrote otherwise; 200 if none).
func (d detachedLine) write(status int, more int64) {
	if d.line == nil {
		return
	}
	if status == 0 {
		status = d.status
	}
	d.line.write(status, d.bytes+more)
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
