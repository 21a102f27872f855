// Package xsse is the k6 extension k6/x/sse: many Server-Sent Events
// subscribers per VU, each served by a goroutine, parsed with the service's
// own sse.Decoder, with the metrics the orderstream load suite needs.
//
// From JavaScript:
//
//	import sse from "k6/x/sse";
//	const h = sse.open([url1, url2], { count: 200, spread: 10000 });
//	const stats = await h.finished(60000); // all ended, or 60 s passed
//	h.close();
//
// The streams never touch the VU's JavaScript runtime: they push their
// samples straight into k6's metrics pipeline from their own goroutines, so
// one VU holds hundreds of streams while its event loop stays free, and only
// the promise of finished() comes back to it.
package xsse

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/grafana/sobek"
	"go.k6.io/k6/js/common"
	"go.k6.io/k6/js/modules"
	"go.k6.io/k6/js/promises"
	"go.k6.io/k6/metrics"

	"github.com/orderstream/orderstream/loadtest/ssestream"
)

func init() {
	modules.Register("k6/x/sse", New())
}

// RootModule is shared by every VU of the k6 process: it holds the shared
// HTTP clients and the process-wide counters.
type RootModule struct {
	mu      sync.Mutex
	clients map[string]*http.Client
	global  counters
	reasons sync.Map // error reason -> *atomic.Int64, for stats().errorsByReason
	open    atomic.Int64
	peak    atomic.Int64
	// The delivery window: the earliest server timestamp of a live event and
	// the latest receipt, in Unix nanoseconds.
	firstPublished atomic.Int64
	lastReceived   atomic.Int64
}

// New returns the root module.
func New() *RootModule {
	r := &RootModule{clients: make(map[string]*http.Client)}
	r.firstPublished.Store(math.MaxInt64)
	return r
}

var _ modules.Module = (*RootModule)(nil)

// counters are what the summary and stats() report.
type counters struct {
	opened, events, replayed, heartbeats, reconnects,
	errors, gaps, duplicates, completed atomic.Int64
}

func (c *counters) export() map[string]any {
	return map[string]any{
		"opened":     c.opened.Load(),
		"events":     c.events.Load(),
		"replayed":   c.replayed.Load(),
		"heartbeats": c.heartbeats.Load(),
		"reconnects": c.reconnects.Load(),
		"errors":     c.errors.Load(),
		"gaps":       c.gaps.Load(),
		"duplicates": c.duplicates.Load(),
		"completed":  c.completed.Load(),
	}
}

type sseMetrics struct {
	open, peak, connecting, firstEvent, events, replayed, latency, heartbeats,
	reconnects, errors, gaps, duplicates, completed, reconnectTime *metrics.Metric
}

// NewModuleInstance registers the metrics (idempotent) for each VU.
func (r *RootModule) NewModuleInstance(vu modules.VU) modules.Instance {
	mi := &ModuleInstance{root: r, vu: vu}
	if env := vu.InitEnv(); env != nil {
		reg := env.Registry
		m := func(name string, t metrics.MetricType, vt ...metrics.ValueType) *metrics.Metric {
			return reg.MustNewMetric(name, t, vt...)
		}
		mi.m = sseMetrics{
			open:       m("sse_connections_open", metrics.Gauge),
			peak:       m("sse_connections_peak", metrics.Gauge),
			connecting: m("sse_connecting", metrics.Trend, metrics.Time),
			firstEvent: m("sse_time_to_first_event", metrics.Trend, metrics.Time),
			events:     m("sse_events", metrics.Counter),
			replayed:   m("sse_events_replayed", metrics.Counter),
			latency:    m("sse_event_latency", metrics.Trend, metrics.Time),
			heartbeats: m("sse_heartbeats", metrics.Counter),
			reconnects: m("sse_reconnects", metrics.Counter),
			// From a stream's early end to its next 200: retry: wait included.
			reconnectTime: m("sse_reconnect_time", metrics.Trend, metrics.Time),
			errors:        m("sse_errors", metrics.Counter),
			gaps:          m("sse_gaps", metrics.Counter),
			duplicates:    m("sse_duplicates", metrics.Counter),
			completed:     m("sse_streams_completed", metrics.Counter),
		}
	}
	return mi
}

// ModuleInstance is one VU's view of the module.
type ModuleInstance struct {
	root *RootModule
	vu   modules.VU
	m    sseMetrics
}

// Exports names what JavaScript sees: sse.open and sse.stats.
func (mi *ModuleInstance) Exports() modules.Exports {
	return modules.Exports{Named: map[string]any{
		"open":  mi.Open,
		"stats": mi.Stats,
	}}
}

// Stats returns the process-wide counters: every VU's streams together.
// deliveriesPerSecond is live events over the window from the first live
// event's server timestamp to the last receipt.
func (mi *ModuleInstance) Stats() map[string]any {
	r := mi.root
	out := r.global.export()
	out["open"] = r.open.Load()
	out["peak"] = r.peak.Load()
	byReason := map[string]any{}
	r.reasons.Range(func(k, v any) bool {
		byReason[k.(string)] = v.(*atomic.Int64).Load()
		return true
	})
	out["errorsByReason"] = byReason
	live := r.global.events.Load() - r.global.replayed.Load()
	first, last := r.firstPublished.Load(), r.lastReceived.Load()
	out["deliveriesPerSecond"] = 0.0
	out["windowSeconds"] = 0.0
	if live > 0 && last > first {
		window := time.Duration(last - first).Seconds()
		out["windowSeconds"] = window
		out["deliveriesPerSecond"] = float64(live) / window
	}
	return out
}

// Open starts opts.count streams over urls (a string or an array; stream i
// uses urls[i % len(urls)]) and returns their Handle at once.
func (mi *ModuleInstance) Open(urlsArg sobek.Value, optsArg sobek.Value) *Handle {
	rt := mi.vu.Runtime()
	state := mi.vu.State()
	if state == nil {
		common.Throw(rt, errors.New("sse.open can only be called from VU code, not the init context"))
	}
	urls, err := parseURLs(urlsArg)
	if err != nil {
		common.Throw(rt, err)
	}
	o, err := parseOptions(optsArg)
	if err != nil {
		common.Throw(rt, err)
	}

	ctx, cancel := context.WithCancel(mi.vu.Context())
	tm := state.Tags.GetCurrentValues()
	tags := tm.Tags
	for k, v := range o.tags {
		tags = tags.With(k, v)
	}
	h := &Handle{
		mi: mi, ctx: ctx, cancel: cancel,
		samples: state.Samples, tags: tags, meta: tm.Metadata,
		done: make(chan struct{}),
	}
	h.remaining.Store(int64(o.count))
	// Zero samples make every metric appear in the summary, so that
	// thresholds such as count==0 judge something even in a clean run.
	now := time.Now()
	for _, m := range []*metrics.Metric{mi.m.errors, mi.m.gaps, mi.m.duplicates, mi.m.reconnects, mi.m.events, mi.m.replayed, mi.m.heartbeats, mi.m.completed} {
		h.push(m, h.tags, 0, now)
	}

	client := mi.root.client(o.connectTimeout, o.sources, state.TLSConfig)
	offset := rand.Float64()
	for i := range o.count {
		url := urls[i%len(urls)]
		start := time.Duration(float64(o.spread) * (float64(i) + offset) / float64(o.count))
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			defer h.streamDone()
			if ssestream.Sleep(ctx, start) {
				ssestream.Run(ctx, client, url, &o.stream, (*handleRecorder)(h))
			}
		}()
	}
	return h
}

func (r *RootModule) client(timeout time.Duration, sources []net.IP, tlsConfig *tls.Config) *http.Client {
	key := fmt.Sprint(timeout, sources)
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.clients[key]
	if !ok {
		c = ssestream.NewClient(timeout, sources, tlsConfig)
		r.clients[key] = c
	}
	return c
}

// Handle is what sse.open returns: close(), finished(ms), stats().
type Handle struct {
	mi      *ModuleInstance
	ctx     context.Context
	cancel  context.CancelFunc
	samples chan<- metrics.SampleContainer
	tags    *metrics.TagSet
	meta    map[string]string

	wg        sync.WaitGroup
	remaining atomic.Int64
	done      chan struct{} // closed when every stream has ended for good
	c         counters
	open      atomic.Int64
}

func (h *Handle) streamDone() {
	if h.remaining.Add(-1) == 0 {
		close(h.done)
	}
}

// Close ends every stream of the handle and waits for their goroutines.
func (h *Handle) Close() {
	h.cancel()
	h.wg.Wait()
	// The streams' own samples stop with their context, so the gauges would
	// keep their last values: settle them here, on the VU's context. Peaks
	// pushed from racing goroutines may also have arrived out of order, and
	// a gauge is judged by its last value.
	now, root := time.Now(), h.mi.root
	for _, s := range []struct {
		m *metrics.Metric
		v int64
	}{{h.mi.m.open, root.open.Load()}, {h.mi.m.peak, root.peak.Load()}} {
		metrics.PushIfNotDone(h.mi.vu.Context(), h.samples, metrics.Sample{
			TimeSeries: metrics.TimeSeries{Metric: s.m, Tags: h.tags},
			Time:       now, Metadata: h.meta, Value: float64(s.v),
		})
	}
}

// Finished returns a promise that resolves with the handle's stats when
// every stream has ended for good (terminal event, 204, no reconnect), or
// after timeoutMs (0: no limit), or when the iteration ends. The streams
// keep running after a timeout: call close() to end them.
func (h *Handle) Finished(timeoutMs sobek.Value) *sobek.Promise {
	var limit time.Duration
	if !common.IsNullish(timeoutMs) {
		if ms := timeoutMs.ToFloat(); ms > 0 {
			limit = time.Duration(ms * float64(time.Millisecond))
		}
	}
	p, resolve, _ := promises.New(h.mi.vu)
	go func() {
		var timeout <-chan time.Time
		if limit > 0 {
			t := time.NewTimer(limit)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-h.done:
		case <-timeout:
		case <-h.ctx.Done():
		}
		resolve(h.Stats())
	}()
	return p
}

// Stats returns this handle's counters and how many of its streams are open.
func (h *Handle) Stats() map[string]any {
	out := h.c.export()
	out["open"] = h.open.Load()
	out["remaining"] = h.remaining.Load()
	return out
}

func (h *Handle) push(m *metrics.Metric, tags *metrics.TagSet, v float64, t time.Time) {
	metrics.PushIfNotDone(h.ctx, h.samples, metrics.Sample{
		TimeSeries: metrics.TimeSeries{Metric: m, Tags: tags},
		Time:       t, Metadata: h.meta, Value: v,
	})
}

// handleRecorder turns what streams observe into k6 samples and counters.
type handleRecorder Handle

var _ ssestream.Recorder = (*handleRecorder)(nil)

func (r *handleRecorder) h() *Handle        { return (*Handle)(r) }
func (r *handleRecorder) root() *RootModule { return r.mi.root }
func (r *handleRecorder) m() *sseMetrics    { return &r.mi.m }
func (r *handleRecorder) global() *counters { return &r.mi.root.global }

func (r *handleRecorder) Connecting(d time.Duration) {
	r.h().push(r.m().connecting, r.tags, metrics.D(d), time.Now())
}

func (r *handleRecorder) Open(delta int) {
	root := r.root()
	n := root.open.Add(int64(delta))
	r.h().open.Add(int64(delta))
	now := time.Now()
	r.h().push(r.m().open, r.tags, float64(n), now)
	if delta > 0 {
		r.c.opened.Add(1)
		r.global().opened.Add(1)
		for p := root.peak.Load(); n > p; p = root.peak.Load() {
			if root.peak.CompareAndSwap(p, n) {
				r.h().push(r.m().peak, r.tags, float64(n), now)
				break
			}
		}
	}
}

func (r *handleRecorder) FirstEvent(d time.Duration) {
	r.h().push(r.m().firstEvent, r.tags, metrics.D(d), time.Now())
}

func (r *handleRecorder) Event(received, published time.Time, replayed bool) {
	r.c.events.Add(1)
	r.global().events.Add(1)
	samples := []metrics.Sample{{
		TimeSeries: metrics.TimeSeries{Metric: r.m().events, Tags: r.tags},
		Time:       received, Metadata: r.meta, Value: 1,
	}}
	if replayed {
		r.c.replayed.Add(1)
		r.global().replayed.Add(1)
		samples = append(samples, metrics.Sample{
			TimeSeries: metrics.TimeSeries{Metric: r.m().replayed, Tags: r.tags},
			Time:       received, Metadata: r.meta, Value: 1,
		})
	} else {
		root := r.root()
		pub, rec := published.UnixNano(), received.UnixNano()
		for p := root.firstPublished.Load(); pub < p && !root.firstPublished.CompareAndSwap(p, pub); p = root.firstPublished.Load() {
		}
		for p := root.lastReceived.Load(); rec > p && !root.lastReceived.CompareAndSwap(p, rec); p = root.lastReceived.Load() {
		}
		samples = append(samples, metrics.Sample{
			TimeSeries: metrics.TimeSeries{Metric: r.m().latency, Tags: r.tags},
			Time:       received, Metadata: r.meta, Value: metrics.D(received.Sub(published)),
		})
	}
	metrics.PushIfNotDone(r.ctx, r.samples, metrics.Samples(samples))
}

func (r *handleRecorder) Heartbeat() {
	r.c.heartbeats.Add(1)
	r.global().heartbeats.Add(1)
	r.h().push(r.m().heartbeats, r.tags, 1, time.Now())
}

func (r *handleRecorder) Reconnect() {
	r.c.reconnects.Add(1)
	r.global().reconnects.Add(1)
	r.h().push(r.m().reconnects, r.tags, 1, time.Now())
}

func (r *handleRecorder) Resumed(d time.Duration) {
	r.h().push(r.m().reconnectTime, r.tags, metrics.D(d), time.Now())
}

func (r *handleRecorder) Error(reason string) {
	r.c.errors.Add(1)
	r.global().errors.Add(1)
	n, _ := r.root().reasons.LoadOrStore(reason, new(atomic.Int64))
	n.(*atomic.Int64).Add(1)
	r.h().push(r.m().errors, r.tags.With("reason", reason), 1, time.Now())
}

func (r *handleRecorder) Gaps(n int) {
	r.c.gaps.Add(int64(n))
	r.global().gaps.Add(int64(n))
	r.h().push(r.m().gaps, r.tags, float64(n), time.Now())
}

func (r *handleRecorder) Duplicate() {
	r.c.duplicates.Add(1)
	r.global().duplicates.Add(1)
	r.h().push(r.m().duplicates, r.tags, 1, time.Now())
}

func (r *handleRecorder) Completed() {
	r.c.completed.Add(1)
	r.global().completed.Add(1)
	r.h().push(r.m().completed, r.tags, 1, time.Now())
}

// parseURLs accepts a string or an array of strings.
func parseURLs(v sobek.Value) ([]string, error) {
	if common.IsNullish(v) {
		return nil, errors.New("sse.open needs a URL or an array of URLs")
	}
	var urls []string
	switch x := v.Export().(type) {
	case string:
		urls = []string{x}
	case []any:
		for _, u := range x {
			s, ok := u.(string)
			if !ok {
				return nil, fmt.Errorf("sse.open: URL %v is not a string", u)
			}
			urls = append(urls, s)
		}
	default:
		return nil, fmt.Errorf("sse.open: want a URL or an array of URLs, got %T", x)
	}
	if len(urls) == 0 {
		return nil, errors.New("sse.open: empty array of URLs")
	}
	for _, u := range urls {
		if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			return nil, fmt.Errorf("sse.open: %q is not an http(s) URL", u)
		}
	}
	return urls, nil
}
