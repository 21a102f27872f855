package httpapi

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderstream/orderstream/shared/broker"
	"github.com/orderstream/orderstream/shared/broker/brokertest"
	"github.com/orderstream/orderstream/shared/order"
)

var lifecycle = []order.Status{order.Created, order.PaymentConfirmed, order.Packed, order.Shipped, order.OutForDelivery, order.Delivered}

// discardWriter is a ResponseWriter that keeps nothing; ready is signalled
// by the first write (the retry: field), which comes after Subscribe.
type discardWriter struct {
	header http.Header
	ready  func()
	once   sync.Once
}

func (w *discardWriter) Header() http.Header { return w.header }
func (w *discardWriter) WriteHeader(int)     {}
func (w *discardWriter) Write(p []byte) (int, error) {
	w.once.Do(w.ready)
	return len(p), nil
}

// BenchmarkFanout measures the core's fan-out: one order, N subscribers
// (the real stream handler, writing into memory), a whole order lifecycle
// published. deliveries/s counts events written to subscribers.
func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("subs=%d", n), func(b *testing.B) {
			br := broker.NewMemory(brokertest.Options())
			defer br.Close()
			h := NewServer(slog.New(slog.NewTextHandler(io.Discard, nil)), br, testConfig(Config{}))
			var elapsed time.Duration
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				id := uuid.New()
				var ready, done sync.WaitGroup
				ready.Add(n)
				for range n {
					w := &discardWriter{header: http.Header{}, ready: ready.Done}
					req := httptest.NewRequest("GET", "/orders/"+id.String()+"/stream", nil)
					done.Go(func() { h.ServeHTTP(w, req) })
				}
				ready.Wait()
				b.StartTimer()
				start := time.Now()
				for _, s := range lifecycle {
					if _, err := br.Publish(context.Background(), id, broker.PublishRequest{Status: s}); err != nil {
						b.Fatal(err)
					}
				}
				done.Wait() // every handler wrote Delivered and returned
				elapsed += time.Since(start)
			}
			b.ReportMetric(float64(n*len(lifecycle)*b.N)/elapsed.Seconds(), "deliveries/s")
		})
	}
}
