// Package config reads the settings every deployment shares from the
// environment (names and defaults as in shared/CONTRACT.md) and opens the
// broker they choose.
package config

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"time"

	"github.com/orderstream/orderstream/shared/broker"
	"github.com/orderstream/orderstream/shared/httpapi"
)

// Config is the service's configuration.
type Config struct {
	RedisURL          string        // REDIS_URL; empty: the in-process broker
	RedisKeyPrefix    string        // REDIS_KEY_PREFIX
	HeartbeatInterval time.Duration // HEARTBEAT_INTERVAL
	RetryInterval     time.Duration // RETRY_INTERVAL
	OrderRetention    time.Duration // ORDER_RETENTION
	WriteTimeout      time.Duration // STREAM_WRITE_TIMEOUT: a client stuck this long is cut off
	MaxStreamDuration time.Duration // MAX_STREAM_DURATION: 0 never (Lambda sets it)
}

// Default is the contract's defaults.
func Default() Config {
	return Config{
		RedisKeyPrefix:    "orderstream:",
		HeartbeatInterval: 15 * time.Second,
		RetryInterval:     3 * time.Second,
		OrderRetention:    24 * time.Hour,
		WriteTimeout:      10 * time.Second,
	}
}

// FromEnv returns the defaults overridden by the environment.
func FromEnv(getenv func(string) string) (Config, error) {
	c := Default()
	if v := getenv("REDIS_URL"); v != "" {
		c.RedisURL = v
	}
	if v := getenv("REDIS_KEY_PREFIX"); v != "" {
		c.RedisKeyPrefix = v
	}
	var errs []error
	for _, d := range c.durations() {
		v := getenv(d.env)
		if v == "" {
			continue
		}
		parsed, err := time.ParseDuration(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: not a Go duration such as 15s", d.env, v))
			continue
		}
		*d.dst = parsed
	}
	if err := errors.Join(errs...); err != nil {
		return Config{}, err
	}
	return c, c.Validate()
}

type durationSetting struct {
	env, flag, usage string
	dst              *time.Duration
}

func (c *Config) durations() []durationSetting {
	return []durationSetting{
		{"HEARTBEAT_INTERVAL", "heartbeat", "keep-alive comment interval on idle streams", &c.HeartbeatInterval},
		{"RETRY_INTERVAL", "retry", "reconnection delay sent to clients (retry:)", &c.RetryInterval},
		{"ORDER_RETENTION", "retention", "how long a finished order stays readable", &c.OrderRetention},
		{"STREAM_WRITE_TIMEOUT", "write-timeout", "how long a write to a stuck client may block before it is cut off", &c.WriteTimeout},
		{"MAX_STREAM_DURATION", "max-stream", "end each stream after this long; clients resume (0: never)", &c.MaxStreamDuration},
	}
}

// RegisterFlags adds a flag for every setting, defaulting to c's current
// values, so that flags override the environment.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.RedisURL, "redis-url", c.RedisURL, "Redis/Valkey URL (redis:// or rediss://); empty: in-process broker")
	fs.StringVar(&c.RedisKeyPrefix, "redis-key-prefix", c.RedisKeyPrefix, "prefix of every Redis key")
	for _, d := range c.durations() {
		fs.DurationVar(d.dst, d.flag, *d.dst, d.usage+" ($"+d.env+")")
	}
}

// Validate reports settings that would make the service misbehave.
func (c Config) Validate() error {
	var errs []error
	positive := func(name string, d time.Duration) {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive, got %v", name, d))
		}
	}
	positive("HEARTBEAT_INTERVAL", c.HeartbeatInterval)
	positive("ORDER_RETENTION", c.OrderRetention)
	positive("STREAM_WRITE_TIMEOUT", c.WriteTimeout)
	if c.RetryInterval < time.Millisecond {
		errs = append(errs, fmt.Errorf("RETRY_INTERVAL must be at least 1ms, got %v", c.RetryInterval))
	}
	if c.MaxStreamDuration < 0 {
		errs = append(errs, fmt.Errorf("MAX_STREAM_DURATION must not be negative, got %v", c.MaxStreamDuration))
	}
	return errors.Join(errs...)
}

// HTTP returns the stream settings for httpapi.NewServer; done ends every
// stream when closed.
func (c Config) HTTP(done <-chan struct{}) httpapi.Config {
	return httpapi.Config{
		HeartbeatInterval: c.HeartbeatInterval,
		RetryInterval:     c.RetryInterval,
		WriteTimeout:      c.WriteTimeout,
		MaxStreamDuration: c.MaxStreamDuration,
		Done:              done,
	}
}

// OpenBroker opens the broker the configuration names.
func (c Config) OpenBroker(ctx context.Context, logger *slog.Logger) (broker.Broker, error) {
	opts := broker.Options{Retention: c.OrderRetention}
	if c.RedisURL == "" {
		return broker.NewMemory(opts), nil
	}
	r, err := broker.NewRedis(ctx, broker.RedisConfig{
		URL:       c.RedisURL,
		KeyPrefix: c.RedisKeyPrefix,
		Options:   opts,
		Logger:    logger,
	})
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return r, nil
}
