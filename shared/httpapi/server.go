// Package httpapi serves the orderstream contract over HTTP: publish,
// simulate, read and stream an order's updates. It knows nothing of where it
// runs: the local server and the Lambda functions all wrap NewServer.
package httpapi

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"path"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderstream/orderstream/shared/broker"
)

// Config tunes the server. The first three fields are required (NewServer
// panics without them: the defaults are the settings', shared/config);
// everything else is off when zero.
type Config struct {
	HeartbeatInterval time.Duration // keep-alive comment when idle; positive
	RetryInterval     time.Duration // the retry: sent to clients; at least 1ms
	// RetryJitter, when positive, spreads each stream's retry: over
	// [RetryInterval, RetryInterval+RetryJitter), so that the clients of an
	// instance that goes away do not all come back in the same instant.
	RetryJitter time.Duration
	// WriteTimeout is how long one write to a stream may block before its
	// client counts as gone; positive.
	WriteTimeout time.Duration
	// MaxStreamDuration ends a stream after this long (0: never). Lambda
	// bills until a stream ends and never learns that a client left, so it
	// caps its streams; the client resumes from its last event id.
	MaxStreamDuration time.Duration
	// HistoryOnly answers a stream request with the history and ends it at
	// once: a bounded replay for transports that buffer the whole response
	// (API Gateway through the buffered adapter). Clients poll with their
	// Last-Event-ID.
	HistoryOnly bool
	// ShuttingDown, when set, is asked by /healthz: once it reports true,
	// /healthz answers 503 so that balancers send new work elsewhere, while
	// what is open here is still served. How streams end meanwhile is the
	// caller's (it cancels their requests' contexts, or a Detacher ends them).
	ShuttingDown func() bool

	// Everything below is off when zero, and then the server behaves exactly
	// as the contract says with nothing added.

	// Metrics, when set, gets the service's series and is served at GET
	// /metrics in Prometheus's text format. It is the caller's registry, so
	// that nothing is global and tests can read it.
	Metrics *prometheus.Registry

	// MaxStreams caps the streams open on this instance: beyond it, 503
	// with Retry-After.
	MaxStreams int
	// MaxStreamsPerClient caps the streams one client address (an IPv4
	// address or an IPv6 /64) holds open on this instance: beyond it, 429
	// with Retry-After. See TrustedProxies for what the address is.
	MaxStreamsPerClient int
	// MaxSubscribersPerOrder caps one order's open streams on this
	// instance: beyond it, 503 with Retry-After.
	MaxSubscribersPerOrder int
	// TrustedProxies are the peers whose X-Forwarded-For is believed when
	// telling clients apart. Empty: the connection's peer address, always.
	TrustedProxies []netip.Prefix

	// CORSAllowedOrigins are the browser origins (as ParseOrigins returns
	// them, or "*" for any origin without cookies) whose pages may call the
	// API. Empty: no CORS headers, and preflights are refused (405).
	CORSAllowedOrigins []string

	// Auth, when set, requires bearer tokens (JWT) that it verifies:
	// ScopePublish to publish and simulate, an orders claim naming the
	// order to read or stream it, ScopeMetrics for /metrics. The page and
	// /healthz stay open.
	Auth *Verifier

	// FlushPadding, when positive, follows every write to a stream (each
	// event, heartbeat and the opening retry:) with an SSE comment block of
	// this many bytes, which every decoder ignores: a front end that holds
	// small chunks until more bytes follow (reported of Lambda function URLs)
	// then passes each one on at once. See functions/README.md for its cost.
	FlushPadding int
	padding      []byte // the block, made once by NewServer
}

// check reports a required value that is missing: a caller's mistake, not
// a user's (shared/config reports theirs).
func (c *Config) check() error {
	var errs []error
	if c.HeartbeatInterval <= 0 {
		errs = append(errs, fmt.Errorf("HeartbeatInterval must be positive, got %v", c.HeartbeatInterval))
	}
	if c.RetryInterval < time.Millisecond {
		errs = append(errs, fmt.Errorf("RetryInterval must be at least 1ms, got %v", c.RetryInterval))
	}
	if c.WriteTimeout <= 0 {
		errs = append(errs, fmt.Errorf("WriteTimeout must be positive, got %v", c.WriteTimeout))
	}
	return errors.Join(errs...)
}

// retry is the retry: one stream sends, in whole milliseconds.
func (c *Config) retry() time.Duration {
	d := c.RetryInterval
	if c.RetryJitter > 0 {
		d += rand.N(c.RetryJitter)
	}
	return d.Truncate(time.Millisecond)
}

// NewServer returns the handler for the whole API. It panics on a Config
// without its required values, as http.ServeMux does on a bad pattern.
func NewServer(logger *slog.Logger, b broker.Broker, cfg Config) http.Handler {
	if err := cfg.check(); err != nil {
		panic("httpapi.NewServer: " + err.Error())
	}
	cfg.padding = paddingBlock(cfg.FlushPadding)
	m := newMetrics(cfg.Metrics)
	mux := http.NewServeMux()
	addRoutes(mux, logger, b, cfg, m, newStreamLimits(cfg), authFromConfig(logger, cfg.Auth, m))
	var h http.Handler = problemRouting{mux}
	// CORS goes before routing: a preflight is answered whatever the path,
	// and every answer, problems included, carries its headers.
	h = newCORS(cfg.CORSAllowedOrigins).wrap(h)
	h = recoverPanics(logger, h)
	h = logRequests(logger, m, h)
	return h
}

// problemRouting lets the mux route, but says its own 404 and 405 answers
// (plain text there) as problem+json, keeping the mux's Allow header.
type problemRouting struct{ mux *http.ServeMux }

func (p problemRouting) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p.answeredUnrouted(w, r) {
		return
	}
	p.mux.ServeHTTP(w, r)
}

// answeredUnrouted answers a request no route takes, as a problem, and
// reports whether it did. It is apart from ServeHTTP to keep ServeHTTP's
// frame small: it stays on the stack under every stream kept in its
// handler (TestIdleInHandlerStreamStackStaysSmall).
func (p problemRouting) answeredUnrouted(w http.ResponseWriter, r *http.Request) bool {
	// The mux would redirect a path with dot segments or doubled slashes to
	// its clean form; no path of this API has them, so say so instead.
	if clean := path.Clean(r.URL.Path); clean != r.URL.Path && clean+"/" != r.URL.Path {
		writeProblem(w, r, http.StatusNotFound, "no such path: "+r.URL.Path)
		return true
	}
	h, pattern := p.mux.Handler(r)
	if pattern != "" {
		return false
	}
	// No route matched: ask the mux what it would answer, and say it our way.
	rec := &headerRecorder{header: http.Header{}}
	h.ServeHTTP(rec, r)
	switch rec.status {
	case http.StatusMethodNotAllowed:
		w.Header().Set("Allow", rec.header.Get("Allow"))
		writeProblem(w, r, http.StatusMethodNotAllowed, r.Method+" is not allowed here; allowed: "+rec.header.Get("Allow"))
	default:
		writeProblem(w, r, http.StatusNotFound, "no such path: "+r.URL.Path)
	}
	return true
}

// headerRecorder captures the status and headers of the mux's fallback
// handlers and drops their plain-text bodies.
type headerRecorder struct {
	header http.Header
	status int
}

func (h *headerRecorder) Header() http.Header { return h.header }
func (h *headerRecorder) WriteHeader(status int) {
	if h.status == 0 {
		h.status = status
	}
}
func (h *headerRecorder) Write(b []byte) (int, error) {
	h.WriteHeader(http.StatusOK)
	return len(b), nil
}
