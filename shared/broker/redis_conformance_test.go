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
	brokertest.Run(t, conformingRedis(redistest.Start(t).URL(), false))
}

// TestRedisClusterConformance runs the suite on a Redis Cluster of three
// masters with a replica each: keys, script and sharded pub/sub in each
// order's slot, the feed with one connection per master.
func TestRedisClusterConformance(t *testing.T) {
	brokertest.Run(t, conformingRedis(redistest.StartCluster(t).URL(), true))
}

// conformingRedis opens brokers on one Redis or cluster, each in a keyspace of
// its own.
func conformingRedis(url string, cluster bool) brokertest.Open {
	var n atomic.Int64
	return func(t *testing.T, opts broker.Options) broker.Broker {
		b, err := broker.NewRedis(context.Background(), broker.RedisConfig{
			URL:       url,
			Cluster:   cluster,
			KeyPrefix: fmt.Sprintf("conformance-%d:", n.Add(1)),
			Options:   opts,
		})
		if err != nil {
			t.Fatalf("NewRedis: %v", err)
		}
		return b
	}
}
