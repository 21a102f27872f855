package broker_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/orderstream/orderstream/shared/broker"
	"github.com/orderstream/orderstream/shared/broker/brokertest"
	"github.com/orderstream/orderstream/shared/broker/redistest"
)

func TestRedisConformance(t *testing.T) {
	srv := redistest.Start(t)
	var n atomic.Int64
	brokertest.Run(t, func(t *testing.T, opts broker.Options) broker.Broker {
		b, err := broker.NewRedis(context.Background(), broker.RedisConfig{
			URL:       srv.URL(),
			KeyPrefix: fmt.Sprintf("conformance-%d:", n.Add(1)), // a fresh keyspace per subtest
			Options:   opts,
		})
		if err != nil {
			t.Fatalf("NewRedis: %v", err)
		}
		return b
	})
}

// TestRedisClusterConformance runs the suite on a Redis Cluster of three
// masters with a replica each: keys, script and sharded pub/sub in each
// order's slot, the feed with one connection per master.
func TestRedisClusterConformance(t *testing.T) {
	cluster := redistest.StartCluster(t)
	var n atomic.Int64
	brokertest.Run(t, func(t *testing.T, opts broker.Options) broker.Broker {
		b, err := broker.NewRedis(context.Background(), broker.RedisConfig{
			URL:       cluster.URL(),
			Cluster:   true,
			KeyPrefix: fmt.Sprintf("conformance-%d:", n.Add(1)),
			Options:   opts,
		})
		if err != nil {
			t.Fatalf("NewRedis: %v", err)
		}
		return b
	})
}
