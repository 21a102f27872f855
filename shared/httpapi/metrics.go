package httpapi

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the service's Prometheus series. A nil *metrics counts
// nothing, so handlers call it unconditionally and a server without
// Config.Metrics pays one nil check per call.
type metrics struct {
	reg             *prometheus.Registry
	requests        *prometheus.CounterVec
	streamsOpen     prometheus.Gauge
	streamsRejected *prometheus.CounterVec
	published       prometheus.Counter
	delivered       prometheus.Counter
	dropped         *prometheus.CounterVec
	latency         prometheus.Histogram
	brokerErrors    *prometheus.CounterVec
	authFailures    *prometheus.CounterVec
}

// newMetrics registers the service's series on reg (nil: no metrics). A
// second server on the same registry shares the first one's series.
func newMetrics(reg *prometheus.Registry) *metrics {
	if reg == nil {
		return nil
	}
	m := &metrics{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orderstream_http_requests_total",
			Help: "HTTP requests answered, by route pattern and status code.",
		}, []string{"route", "code"}),
		streamsOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "orderstream_streams_open",
			Help: "Event streams open on this instance.",
		}),
		streamsRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orderstream_streams_rejected_total",
			Help: "Stream requests refused by a limit: instance, client or order.",
		}, []string{"limit"}),
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orderstream_events_published_total",
			Help: "Events accepted from publish and simulate requests on this instance.",
		}),
		delivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orderstream_events_delivered_total",
			Help: "Events written to streams (history replays included).",
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orderstream_slow_subscribers_dropped_total",
			Help: "Streams ended because of their client: it could not keep up (buffer: the broker's buffer filled; write_timeout: a write waited too long, or too much waited), sent too much after its request (too_much_input), or stopped answering at all (vanished).",
		}, []string{"reason"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "orderstream_publish_to_deliver_seconds",
			Help:    "From the broker accepting an event to its live delivery to a stream (history replays excluded).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		brokerErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orderstream_broker_errors_total",
			Help: "Broker failures (not refusals such as 404 or 409), by operation.",
		}, []string{"op"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orderstream_auth_failures_total",
			Help: "Requests refused by authentication (401) or authorization (403).",
		}, []string{"code"}),
	}
	m.requests = register(reg, m.requests)
	m.streamsOpen = register(reg, m.streamsOpen)
	m.streamsRejected = register(reg, m.streamsRejected)
	m.published = register(reg, m.published)
	m.delivered = register(reg, m.delivered)
	m.dropped = register(reg, m.dropped)
	m.latency = register(reg, m.latency)
	m.brokerErrors = register(reg, m.brokerErrors)
	m.authFailures = register(reg, m.authFailures)
	return m
}

// register adds c to reg, or returns the collector already registered there
// under the same name (two servers sharing one registry).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic("httpapi: register metric: " + err.Error()) // our own names; only a programming error gets here
	}
	return c
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

func (m *metrics) request(route string, code int) {
	if m == nil {
		return
	}
	if route == "" {
		route = "unmatched" // bounded: never the raw path
	}
	m.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
}

func (m *metrics) streamOpened() {
	if m != nil {
		m.streamsOpen.Inc()
	}
}

func (m *metrics) streamClosed() {
	if m != nil {
		m.streamsOpen.Dec()
	}
}

func (m *metrics) streamRejected(limit string) {
	if m != nil {
		m.streamsRejected.WithLabelValues(limit).Inc()
	}
}

func (m *metrics) eventPublished() {
	if m != nil {
		m.published.Inc()
	}
}

// eventDelivered counts an event written to a stream; live events also
// record how long after the broker accepted them they went out.
func (m *metrics) eventDelivered(accepted time.Time, live bool) {
	if m == nil {
		return
	}
	m.delivered.Inc()
	if live && !accepted.IsZero() {
		// The broker's clock (Redis) and ours may differ slightly: never
		// record a negative latency.
		m.latency.Observe(max(time.Since(accepted), 0).Seconds())
	}
}

// eventsDelivered is eventDelivered for one live event handed to n streams
// at once.
func (m *metrics) eventsDelivered(accepted time.Time, n int) {
	if m == nil || n <= 0 {
		return
	}
	m.delivered.Add(float64(n))
	if !accepted.IsZero() {
		lat := max(time.Since(accepted), 0).Seconds()
		for range n { // each stream's delivery is one observation, as in a handler
			m.latency.Observe(lat)
		}
	}
}

func (m *metrics) subscriberDropped(reason string) {
	if m != nil {
		m.dropped.WithLabelValues(reason).Inc()
	}
}

func (m *metrics) brokerError(op string) {
	if m != nil {
		m.brokerErrors.WithLabelValues(op).Inc()
	}
}

func (m *metrics) authFailed(code int) {
	if m != nil {
		m.authFailures.WithLabelValues(strconv.Itoa(code)).Inc()
	}
}
