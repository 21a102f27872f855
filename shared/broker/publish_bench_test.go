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
	"github.com/orderstream/orderstream/shared/broker/brokertest"
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
				m := broker.NewMemory(brokertest.Options())
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
				pub := openRedis(b, broker.RedisConfig{URL: srv.URL()})
				sub := openRedis(b, broker.RedisConfig{URL: srv.URL()})
				benchPublishToReceive(b, pub, sub, n)
			})
		}
	})
	// The same on a Redis Cluster (three masters, a replica each, on this
	// machine), and with each publish waiting for a replica (WAIT 1): what
	// REDIS_WAIT_REPLICAS=1 costs.
	b.Run("RedisCluster", func(b *testing.B) {
		cluster := redistest.StartCluster(b)
		for _, wait := range []int{0, 1} {
			for _, n := range []int{1, 1000} {
				b.Run(fmt.Sprintf("wait=%d/subscribers=%d", wait, n), func(b *testing.B) {
					pub := openRedis(b, broker.RedisConfig{URL: cluster.URL(), Cluster: true, WaitReplicas: wait})
					sub := openRedis(b, broker.RedisConfig{URL: cluster.URL(), Cluster: true})
					benchPublishToReceive(b, pub, sub, n)
				})
			}
		}
	})
}

// BenchmarkPublishThroughput publishes whole lifecycles of fresh orders
// from many goroutines at once (GOMAXPROCS x 16): publishes per second on
// one Redis node against a cluster of three masters. On one small machine
// the cluster's six processes share its cores with the benchmark, so the
// figure shows the client and protocol cost more than the cluster's
// capacity, which grows with the masters' machines.
//
//	go test -run='^$' -bench=PublishThroughput ./shared/broker/
func BenchmarkPublishThroughput(b *testing.B) {
	b.Run("Redis", func(b *testing.B) {
		benchPublishThroughput(b, openRedis(b, broker.RedisConfig{URL: redistest.Start(b).URL()}))
	})
	b.Run("RedisCluster", func(b *testing.B) {
		benchPublishThroughput(b, openRedis(b, broker.RedisConfig{URL: redistest.StartCluster(b).URL(), Cluster: true}))
	})
}

func benchPublishThroughput(b *testing.B, pub broker.Broker) {
	ctx := context.Background()
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		id, next := uuid.New(), 0
		for pb.Next() {
			if _, err := pub.Publish(ctx, id, broker.PublishRequest{Status: lifecycle[next]}); err != nil {
				b.Error(err)
				return
			}
			if next++; next == len(lifecycle) {
				id, next = uuid.New(), 0
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "publishes/s")
}

func openRedis(b *testing.B, cfg broker.RedisConfig) *broker.Redis {
	b.Helper()
	cfg.KeyPrefix = "bench:"
	cfg.Options = brokertest.Options()
	r, err := broker.NewRedis(context.Background(), cfg)
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
