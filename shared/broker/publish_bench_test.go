package broker_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderstream/orderstream/shared/broker"
	"github.com/orderstream/orderstream/shared/broker/redistest"
	"github.com/orderstream/orderstream/shared/order"
)

// BenchmarkPublishToReceive measures the time from calling Publish to each
// subscriber holding the event: n subscribers watch a fresh order, which is
// published through its whole life, one status at a time, each publish
// waiting until every subscriber has it. An op is one publish; p50-µs and
// p99-µs are over every delivery.
//
//	go test -run='^$' -bench=PublishToReceive ./shared/broker/
func BenchmarkPublishToReceive(b *testing.B) {
	b.Run("Memory", func(b *testing.B) {
		for _, n := range []int{1, 1000} {
			b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) {
				m := broker.NewMemory(broker.Options{})
				defer m.Close()
				benchPublishToReceive(b, m, m, n)
			})
		}
	})
	b.Run("Redis", func(b *testing.B) {
		srv := redistest.Start(b)
		for _, n := range []int{1, 1000} {
			b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) {
				// Published on one instance, received on another, as behind
				// a load balancer.
				pub := openRedis(b, srv)
				sub := openRedis(b, srv)
				benchPublishToReceive(b, pub, sub, n)
			})
		}
	})
}

func openRedis(b *testing.B, srv *redistest.Server) *broker.Redis {
	b.Helper()
	r, err := broker.NewRedis(context.Background(), broker.RedisConfig{URL: srv.URL(), KeyPrefix: "bench:"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.Close() })
	return r
}

var lifecycle = []order.Status{order.Created, order.PaymentConfirmed, order.Packed, order.Shipped, order.OutForDelivery, order.Delivered}

func benchPublishToReceive(b *testing.B, pub, sub broker.Broker, n int) {
	ctx := context.Background()
	var published atomic.Int64 // UnixNano of the publish under way
	var latencies []time.Duration
	var mu sync.Mutex
	b.ResetTimer()
	b.StopTimer()
	for i := 0; i < b.N; {
		id := uuid.New()
		var received sync.WaitGroup // one Done per delivery of the event under way
		var readers sync.WaitGroup
		subs := make([]*broker.Subscription, n)
		for j := range subs {
			s, err := sub.Subscribe(ctx, id, broker.EventID{})
			if err != nil {
				b.Fatal(err)
			}
			subs[j] = s
			readers.Go(func() {
				own := make([]time.Duration, 0, len(lifecycle))
				for range s.Events() {
					own = append(own, time.Duration(time.Now().UnixNano()-published.Load()))
					received.Done()
				}
				mu.Lock()
				latencies = append(latencies, own...)
				mu.Unlock()
			})
		}
		b.StartTimer()
		for _, status := range lifecycle {
			if i == b.N {
				break
			}
			received.Add(n)
			published.Store(time.Now().UnixNano())
			if _, err := pub.Publish(ctx, id, broker.PublishRequest{Status: status}); err != nil {
				b.Fatal(err)
			}
			received.Wait()
			i++
		}
		b.StopTimer()
		for _, s := range subs {
			s.Close()
		}
		readers.Wait()
	}
	if len(latencies) == 0 {
		return
	}
	slices.Sort(latencies)
	pct := func(p float64) float64 {
		return float64(latencies[int(p*float64(len(latencies)-1))].Nanoseconds()) / 1e3
	}
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
	b.ReportMetric(float64(len(latencies))/b.Elapsed().Seconds(), "deliveries/s")
}
