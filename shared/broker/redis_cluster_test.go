package broker

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderstream/orderstream/shared/broker/redistest"
	"github.com/orderstream/orderstream/shared/order"
)

// These tests run on a real Redis Cluster (three masters, a replica each);
// the conformance suite runs on one too (redis_conformance_test.go).

func newClusterRedis(t *testing.T, c *redistest.Cluster, cfg RedisConfig) *Redis {
	t.Helper()
	cfg.URL, cfg.Cluster = c.URL(), true
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if cfg.KeyPrefix == "" {
		cfg.KeyPrefix = "test:" + t.Name() + ":"
	}
	cfg.Options = withTestOptions(cfg.Options)
	r, err := NewRedis(context.Background(), cfg)
	if err != nil {
		t.Fatalf("NewRedis: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// TestRedisClusterSpreadsOrders: orders land on every master, the feed has
// one connection per master (not per order), and each subscriber gets its
// order's events over the connection of the order's master.
func TestRedisClusterSpreadsOrders(t *testing.T) {
	cluster := redistest.StartCluster(t, redistest.Password("pw"))
	a := newClusterRedis(t, cluster, RedisConfig{})
	b := newClusterRedis(t, cluster, RedisConfig{KeyPrefix: "test:" + t.Name() + ":"})
	const orders = 60
	ids := make([]uuid.UUID, orders)
	subs := make([]*Subscription, orders)
	for i := range ids {
		ids[i] = uuid.New()
		subs[i] = mustSubscribe(t, a, ids[i], EventID{})
	}
	want := make([][]Event, orders)
	for i, id := range ids {
		for _, s := range happy[:2] {
			want[i] = append(want[i], mustPublish(t, b, id, s))
		}
	}
	for i, sub := range subs {
		same(t, "order "+ids[i].String(), receive(t, sub, 2), want[i])
	}

	masters, err := cluster.Masters()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range masters {
		n, err := m.Command("DBSIZE")
		if err != nil {
			t.Fatal(err)
		}
		if keys, _ := strconv.Atoi(n); keys == 0 {
			t.Errorf("master %s holds no key of %d orders", m.Addr(), orders)
		}
	}
	a.mu.Lock()
	conns := len(a.conns)
	for addr, c := range a.conns {
		if c.state != feedUp || !c.sharded {
			t.Errorf("feed connection to %s: state %v, sharded %v", addr, c.state, c.sharded)
		}
	}
	a.mu.Unlock()
	if conns != len(masters) {
		t.Fatalf("%d feed connections for %d orders on %d masters, want one per master", conns, orders, len(masters))
	}
	if err := a.Ping(context.Background()); err != nil {
		t.Fatalf("ping: %v", err)
	}
}

// TestRedisWaitReplicas: with WaitReplicas a publish is acknowledged once a
// replica has it; when none can have it, it is ErrUnavailable, and the
// publisher's retry with the same key answers the same event once one can.
func TestRedisWaitReplicas(t *testing.T) {
	ctx := context.Background()
	t.Run("no replica", func(t *testing.T) {
		srv := redistest.Start(t)
		r := newTestRedis(t, srv, RedisConfig{WaitReplicas: 1, Timeout: 400 * time.Millisecond})
		_, err := r.Publish(ctx, uuid.New(), PublishRequest{Status: order.Created, IdempotencyKey: "k"})
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("publish with no replica to wait for: %v, want ErrUnavailable", err)
		}
		var te *order.TransitionError
		id := uuid.New()
		mustPublish(t, newTestRedis(t, srv, RedisConfig{KeyPrefix: r.prefix}), id, order.Shipped)
		if _, err := r.Publish(ctx, id, PublishRequest{Status: order.Created}); !errors.As(err, &te) {
			t.Fatalf("a refusal waits for nothing: %v, want a TransitionError", err)
		}
	})
	t.Run("cluster", func(t *testing.T) {
		cluster := redistest.StartCluster(t)
		r := newClusterRedis(t, cluster, RedisConfig{WaitReplicas: 1})
		id := uuid.New()
		first, err := r.Publish(ctx, id, PublishRequest{Status: order.Created, IdempotencyKey: "c"})
		if err != nil {
			t.Fatalf("publish with replicas: %v", err)
		}
		// The replica of the order's master goes: nothing can be acknowledged.
		node, err := r.cluster.MasterForKey(ctx, r.streamKey(id))
		if err != nil {
			t.Fatal(err)
		}
		var master *redistest.Server
		for _, s := range cluster.Nodes {
			if s.Addr() == node.Options().Addr {
				master = s
			}
		}
		replica := cluster.ReplicaOf(master)
		replica.Stop()
		_, err = r.Publish(ctx, id, PublishRequest{Status: order.Packed, IdempotencyKey: "p"})
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("publish while the replica is down: %v, want ErrUnavailable", err)
		}
		replica.Restart()
		cluster.WaitHealthy()
		packed, err := r.Publish(ctx, id, PublishRequest{Status: order.Packed, IdempotencyKey: "p"})
		if err != nil {
			t.Fatalf("retry once the replica is back: %v", err)
		}
		again, err := r.Publish(ctx, id, PublishRequest{Status: order.Created, IdempotencyKey: "c"})
		if err != nil {
			t.Fatal(err)
		}
		same(t, "retry of the first", []Event{again}, []Event{first})
		hist, err := r.history(ctx, id, EventID{})
		if err != nil {
			t.Fatal(err)
		}
		same(t, "history", hist, []Event{first, packed})
	})
}
