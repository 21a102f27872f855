package service

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderstream/orderstream/shared/broker"
	"github.com/orderstream/orderstream/shared/broker/redistest"
	"github.com/orderstream/orderstream/shared/config"
	"github.com/orderstream/orderstream/shared/order"
)

func settings(t *testing.T, env map[string]string) config.Settings {
	t.Helper()
	s, err := config.FromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func open(t *testing.T, env map[string]string) *Service {
	t.Helper()
	svc, err := Open(context.Background(), slog.New(slog.DiscardHandler), settings(t, env))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	return svc
}

// TestOpenMemory: without REDIS_URL the in-process broker, with the
// settings' retention (a finished order is forgotten after it).
func TestOpenMemory(t *testing.T) {
	svc := open(t, map[string]string{"ORDER_RETENTION": "50ms", "ORDER_IDLE_EXPIRY": "1h"})
	if svc.Kind != Memory {
		t.Fatalf("kind %q, want %q", svc.Kind, Memory)
	}
	if _, ok := svc.Broker.(*broker.Memory); !ok {
		t.Fatalf("broker %T, want the in-process one", svc.Broker)
	}
	id := uuid.New()
	if _, err := svc.Broker.Publish(context.Background(), id, broker.PublishRequest{Status: order.Delivered}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := svc.Broker.Latest(context.Background(), id)
		if errors.Is(err, broker.ErrNotFound) {
			break // ORDER_RETENTION reached the broker
		}
		if time.Now().After(deadline) {
			t.Fatalf("a finished order is still there long after ORDER_RETENTION: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestOpenRedis: REDIS_URL opens the Redis broker on a real redis-server,
// with the settings' key prefix.
func TestOpenRedis(t *testing.T) {
	srv := redistest.Start(t)
	svc := open(t, map[string]string{"REDIS_URL": srv.URL(), "REDIS_KEY_PREFIX": "shop7:"})
	if svc.Kind != Redis {
		t.Fatalf("kind %q, want %q", svc.Kind, Redis)
	}
	if _, ok := svc.Broker.(*broker.Redis); !ok {
		t.Fatalf("broker %T, want Redis", svc.Broker)
	}
	if _, err := svc.Broker.Publish(context.Background(), uuid.New(), broker.PublishRequest{Status: order.Created}); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		key, err := srv.Command("RANDOMKEY")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(key, "shop7:") {
			t.Fatalf("key %q: want every key under REDIS_KEY_PREFIX shop7:", key)
		}
	}
}

// TestOpenRedisCluster: REDIS_CLUSTER makes REDIS_URL a cluster seed. The
// broker comes up while the seed is unreachable (it keeps dialling), so no
// cluster is needed to see which kind was opened.
func TestOpenRedisCluster(t *testing.T) {
	svc := open(t, map[string]string{"REDIS_URL": "redis://127.0.0.1:1", "REDIS_CLUSTER": "true"})
	if svc.Kind != RedisCluster {
		t.Fatalf("kind %q, want %q", svc.Kind, RedisCluster)
	}
	if _, ok := svc.Broker.(*broker.Redis); !ok {
		t.Fatalf("broker %T, want Redis", svc.Broker)
	}
}

// TestMetrics: off by default; on, each Open has a registry of its own
// with the runtime's series, so that nothing is global.
func TestMetrics(t *testing.T) {
	if svc := open(t, nil); svc.HTTP.Metrics != nil {
		t.Fatal("metrics on by default")
	}
	a, b := open(t, map[string]string{"METRICS": "true"}), open(t, map[string]string{"METRICS": "true"})
	if a.HTTP.Metrics == nil || a.HTTP.Metrics == b.HTTP.Metrics {
		t.Fatalf("registries %p and %p: want one each", a.HTTP.Metrics, b.HTTP.Metrics)
	}
	families, err := a.HTTP.Metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range families {
		names = append(names, f.GetName())
	}
	if !strings.Contains(strings.Join(names, " "), "go_goroutines") {
		t.Fatalf("no Go runtime series among %v", names)
	}
}
