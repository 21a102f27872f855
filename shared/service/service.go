// Package service opens what the settings choose, for every deployment:
// the broker (in-process, Redis or Redis Cluster) and, with METRICS on, the
// metrics registry the core serves. The local server and the Lambda
// functions start here, so that the choice is made in one place; each then
// wraps the core's handler its own way (the ingest function calls its
// publish path instead).
package service

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/orderstream/orderstream/shared/broker"
	"github.com/orderstream/orderstream/shared/config"
	"github.com/orderstream/orderstream/shared/httpapi"
)

// Service is what the settings chose, opened.
type Service struct {
	// Broker is the broker the settings name; Close closes it.
	Broker broker.Broker
	// Kind names it for the logs: memory, redis or redis-cluster.
	Kind string
	// HTTP is the settings' core configuration with the metrics registry
	// (with the Go runtime and process collectors) when METRICS is on.
	HTTP httpapi.Config
	// Conns is about how many connections (descriptors) the broker may
	// hold at most, for a server that budgets its descriptors: none in
	// process; for Redis, go-redis's pool (10 per core by default, per
	// node) and the feed's subscriber connection, per node (a cluster
	// counted as three masters: more nodes hold more).
	Conns int
}

// The broker kinds.
const (
	Memory       = "memory"
	Redis        = "redis"
	RedisCluster = "redis-cluster"
)

// Open opens the broker s names and, with METRICS on, makes a new metrics
// registry (nothing is global). The Redis broker keeps dialling in the
// background when Redis is unreachable (see broker.NewRedis), so Open fails
// only on what no wait would cure.
func Open(ctx context.Context, logger *slog.Logger, s config.Settings) (*Service, error) {
	svc := &Service{HTTP: s.HTTP}
	bs := s.Broker
	switch {
	case bs.RedisURL == "":
		svc.Kind, svc.Broker = Memory, broker.NewMemory(bs.Options)
	default:
		svc.Kind = Redis
		if bs.RedisCluster {
			svc.Kind = RedisCluster
		}
		r, err := broker.NewRedis(ctx, broker.RedisConfig{
			URL:          bs.RedisURL,
			Cluster:      bs.RedisCluster,
			WaitReplicas: bs.RedisWaitReplicas,
			KeyPrefix:    bs.RedisKeyPrefix,
			Options:      bs.Options,
			Logger:       logger,
		})
		if err != nil {
			return nil, fmt.Errorf("open broker: %w", err)
		}
		svc.Broker = r
		svc.Conns = 10*runtime.GOMAXPROCS(0) + 2
		if bs.RedisCluster {
			svc.Conns *= 3
		}
	}
	if s.Metrics {
		reg := prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		svc.HTTP.Metrics = reg
	}
	return svc, nil
}

// Close closes the broker.
func (s *Service) Close() error { return s.Broker.Close() }
