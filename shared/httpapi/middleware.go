package httpapi

import (
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

// logRequests writes one line per request when it ends (for a stream: when
// the stream ends), never one per event.
func logRequests(logger *slog.Logger, m *metrics, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rw := &recordingWriter{ResponseWriter: w}
		next.ServeHTTP(rw, r)
		logRequest(logger, m, r, rw, start)
	})
}

// logRequest is apart from logRequests, and never inlined, so that the log
// call's arguments are not in the frame that stays on the stack under every
// open stream (see handleStream).
//
//go:noinline
func logRequest(logger *slog.Logger, m *metrics, r *http.Request, rw *recordingWriter, start time.Time) {
	status := rw.status
	if status == 0 {
		status = http.StatusOK
	}
	// The mux sets r.Pattern on the request it routed: a bounded label.
	m.request(r.Pattern, status)
	logger.Info("request",
		"method", r.Method, "path", r.URL.Path, "status", status,
		"bytes", rw.bytes, "duration", time.Since(start).Round(time.Microsecond),
		"remote", r.RemoteAddr)
}

// recoverPanics turns a panic into a 500 problem (or, once a stream has
// started, a clean end of the stream) instead of a dead process: on Lambda a
// panic would kill the instance mid-stream.
func recoverPanics(logger *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rw := &recordingWriter{ResponseWriter: w}
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
