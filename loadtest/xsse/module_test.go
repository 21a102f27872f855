package xsse

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.k6.io/k6/js/modulestest"
	"go.k6.io/k6/lib"
	"go.k6.io/k6/metrics"
)

// completeOrder streams an order's whole life to every subscriber.
func completeOrder(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/event-stream")
	fmt.Fprint(w, "retry: 3000\n\n: keep-alive\n\n")
	for i, s := range []string{"Created", "PaymentConfirmed", "Packed", "Shipped", "OutForDelivery", "Delivered"} {
		fmt.Fprintf(w, "id: %d-0\nevent: order-update\ndata: {\"orderId\":\"x\",\"status\":%q,\"timestamp\":%q}\n\n",
			i+1, s, time.Now().UTC().Format(time.RFC3339Nano))
		w.(http.Flusher).Flush()
	}
}

// TestOpenFromJavaScript drives the module as a VU does: open from JS, the
// promise of finished() resolved on the event loop, samples in k6's channel.
func TestOpenFromJavaScript(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(completeOrder))
	defer srv.Close()

	rt := modulestest.NewRuntime(t)
	registry := rt.VU.InitEnvField.Registry
	mi := New().NewModuleInstance(rt.VU)
	if err := rt.VU.RuntimeField.Set("sse", mi.Exports().Named); err != nil {
		t.Fatal(err)
	}
	samples := make(chan metrics.SampleContainer, 1000)
	rt.MoveToVUContext(&lib.State{
		Samples:        samples,
		Tags:           lib.NewVUStateTags(registry.RootTagSet()),
		BuiltinMetrics: rt.BuiltinMetrics,
	})

	_, err := rt.RunOnEventLoop(fmt.Sprintf(`
		const h = sse.open(["%[1]s/orders/a/stream", "%[1]s/orders/b/stream"], {count: 4, expectSequence: true});
		h.finished(5000).then((s) => { globalThis.result = s; h.close(); globalThis.global = sse.stats(); });
	`, srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	result := rt.VU.RuntimeField.Get("result").Export().(map[string]any)
	global := rt.VU.RuntimeField.Get("global").Export().(map[string]any)
	if result["completed"] != int64(4) || result["events"] != int64(24) || result["gaps"] != int64(0) ||
		result["errors"] != int64(0) || result["open"] != int64(0) || result["remaining"] != int64(0) {
		t.Errorf("handle stats = %v", result)
	}
	if reasons, ok := global["errorsByReason"].(map[string]any); !ok || len(reasons) != 0 {
		t.Errorf("errorsByReason = %v, want an empty object", global["errorsByReason"])
	}
	if global["peak"].(int64) < 1 || global["deliveriesPerSecond"].(float64) <= 0 {
		t.Errorf("module stats = %v", global)
	}

	close(samples)
	sums := map[string]float64{}
	counts := map[string]int{}
	last := map[string]float64{}
	for c := range samples {
		for _, s := range c.GetSamples() {
			sums[s.Metric.Name] += s.Value
			counts[s.Metric.Name]++
			last[s.Metric.Name] = s.Value
		}
	}
	if sums["sse_events"] != 24 || counts["sse_event_latency"] != 24 || sums["sse_streams_completed"] != 4 ||
		counts["sse_connecting"] != 4 || counts["sse_time_to_first_event"] != 4 || sums["sse_heartbeats"] != 4 {
		t.Errorf("sums %v counts %v", sums, counts)
	}
	if last["sse_connections_open"] != 0 || last["sse_connections_peak"] != float64(global["peak"].(int64)) {
		t.Errorf("last gauge values %v", last)
	}
	for _, m := range []string{"sse_errors", "sse_gaps", "sse_duplicates", "sse_reconnects"} {
		if counts[m] == 0 || sums[m] != 0 {
			t.Errorf("%s: %d samples summing to %v, want zero samples only", m, counts[m], sums[m])
		}
	}
}
