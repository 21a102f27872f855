//go:build clusterfaults

package broker

// Fault runs on a real Redis Cluster, too slow for every `make test`: run
// them with `make test-cluster-faults` (go test -tags clusterfaults).

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderstream/orderstream/shared/broker/redistest"
)

// faultDeadline bounds a whole fault run: failover takes a few seconds with
// the clusters' 2 s node timeout, more on a loaded machine.
const faultDeadline = 90 * time.Second

// faultRun publishes every order's whole life slowly from pub, each status
// with an idempotency key, retrying on ErrUnavailable as an HTTP client
// retries on 503, while sub's subscriptions (opened first) watch. fault runs
// once the first statuses are in. Afterwards each subscription must have
// delivered exactly the acknowledged events, once each and in order, and
// each order's stored history must hold them all.
func faultRun(t *testing.T, pub, sub *Redis, orders int, fault func()) {
	ctx := context.Background()
	ids := make([]uuid.UUID, orders)
	subs := make([]*Subscription, orders)
	for i := range ids {
		ids[i] = uuid.New()
		subs[i] = mustSubscribe(t, sub, ids[i], EventID{})
	}
	acked := make([][]Event, orders)
	unavailable := make([]int, orders)
	started := make(chan struct{}, orders)
	deadline := time.Now().Add(faultDeadline)
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() {
			for n, s := range happy {
				if n == 2 {
					started <- struct{}{}
				}
				for {
					ev, err := pub.Publish(ctx, id, PublishRequest{Status: s, IdempotencyKey: fmt.Sprintf("%s-%v", id, s)})
					if err == nil {
						acked[i] = append(acked[i], ev)
						break
					}
					if !errors.Is(err, ErrUnavailable) || time.Now().After(deadline) {
						t.Errorf("order %d: publish %v: %v (only ErrUnavailable, a 503, may answer during a fault)", i, s, err)
						return
					}
					unavailable[i]++
					time.Sleep(100 * time.Millisecond)
				}
				time.Sleep(300 * time.Millisecond)
			}
		})
	}
	for range orders {
		<-started
	}
	fault()
	wg.Wait()
	if t.Failed() {
		return
	}
	total := 0
	for i := range ids {
		total += unavailable[i]
		got := receive(t, subs[i], len(acked[i]))
		same(t, fmt.Sprintf("order %d live", i), got, acked[i])
		if err := waitEnd(t, subs[i]); err != nil {
			t.Fatalf("order %d: subscription ended with %v", i, err)
		}
		hist, err := pub.history(ctx, ids[i], EventID{})
		if err != nil {
			t.Fatal(err)
		}
		same(t, fmt.Sprintf("order %d stored", i), hist, acked[i])
	}
	t.Logf("%d orders, %d publishes answered ErrUnavailable (503) and were retried; %d events reached the subscriber from the stream",
		orders, total, sub.recovered.Load())
}

// masterOf returns the node that is the master of id's slot now.
func masterOf(t *testing.T, c *redistest.Cluster, r *Redis, id uuid.UUID) *redistest.Server {
	t.Helper()
	node, err := r.cluster.MasterForKey(context.Background(), r.streamKey(id))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range c.Nodes {
		if s.Addr() == node.Options().Addr {
			return s
		}
	}
	t.Fatalf("no node at %s", node.Options().Addr)
	return nil
}

// TestRedisClusterFailover SIGKILLs a master while orders on every shard are
// published and watched, with WaitReplicas 1: its replica is promoted, the
// killed node comes back as the new master's replica, and no acknowledged
// event is lost, duplicated or reordered.
func TestRedisClusterFailover(t *testing.T) {
	cluster := redistest.StartCluster(t)
	pub := newClusterRedis(t, cluster, RedisConfig{WaitReplicas: 1})
	sub := newClusterRedis(t, cluster, RedisConfig{KeyPrefix: pub.prefix})
	faultRun(t, pub, sub, 12, func() {
		masters, err := cluster.Masters()
		if err != nil {
			t.Fatal(err)
		}
		victim := masters[0]
		replica := cluster.ReplicaOf(victim)
		start := time.Now()
		victim.Kill()
		// A shard down is not the instance down: Ping (/healthz) stays
		// healthy while the other masters answer.
		for _, r := range []*Redis{pub, sub} {
			if err := r.Ping(context.Background()); err != nil {
				t.Errorf("ping with one master down: %v", err)
			}
		}
		// The replica is promoted after the node timeout; until the killed
		// node rejoins as its replica, WAIT 1 cannot be met on that shard.
		for {
			if replica.IsMaster() {
				break
			}
			if time.Since(start) > faultDeadline/2 {
				t.Fatalf("replica %s not promoted within %v", replica.Addr(), faultDeadline/2)
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Logf("replica %s promoted %v after the kill", replica.Addr(), time.Since(start).Round(time.Millisecond))
		victim.Restart()
		cluster.WaitHealthy()
		t.Logf("killed node back as a replica %v after the kill", time.Since(start).Round(time.Millisecond))
	})
}

// TestRedisClusterReshard moves slots between masters (redis-cli --cluster
// reshard) while orders are published and watched: Redis ends the moved
// channels' subscriptions, the feed follows them to their new master, and
// nothing is lost or duplicated.
func TestRedisClusterReshard(t *testing.T) {
	cluster := redistest.StartCluster(t)
	pub := newClusterRedis(t, cluster, RedisConfig{})
	sub := newClusterRedis(t, cluster, RedisConfig{KeyPrefix: pub.prefix})
	faultRun(t, pub, sub, 24, func() {
		masters, err := cluster.Masters()
		if err != nil {
			t.Fatal(err)
		}
		for _, hop := range [][2]*redistest.Server{{masters[0], masters[1]}, {masters[1], masters[2]}} {
			for attempt := 1; ; attempt++ {
				out, err := cluster.CLI("--cluster", "reshard", hop[0].Addr(),
					"--cluster-from", cluster.ID(hop[0]), "--cluster-to", cluster.ID(hop[1]),
					"--cluster-slots", "3000", "--cluster-yes")
				if err == nil {
					break
				}
				// redis-cli refuses to start while the nodes do not agree on
				// the configuration yet (just after the previous hop).
				if !strings.Contains(out, "fix your cluster problems") || attempt == 40 {
					t.Fatalf("reshard: %v\n%s", err, out)
				}
				time.Sleep(250 * time.Millisecond)
			}
		}
	})
}
