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
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/orderstream/orderstream/shared/broker"
	"github.com/orderstream/orderstream/shared/httpapi"
)

// Config is the service's configuration.
type Config struct {
	RedisURL          string        // REDIS_URL; empty: the in-process broker
	RedisKeyPrefix    string        // REDIS_KEY_PREFIX
	RedisCluster      bool          // REDIS_CLUSTER: REDIS_URL names a seed node of a Redis Cluster
	RedisWaitReplicas int           // REDIS_WAIT_REPLICAS: replicas a publish waits for (WAIT); 0: none
	HeartbeatInterval time.Duration // HEARTBEAT_INTERVAL
	RetryInterval     time.Duration // RETRY_INTERVAL
	OrderRetention    time.Duration // ORDER_RETENTION
	WriteTimeout      time.Duration // STREAM_WRITE_TIMEOUT: a client stuck this long is cut off
	MaxStreamDuration time.Duration // MAX_STREAM_DURATION: 0 never (Lambda sets it)

	// Hardening (docs/security.md). Everything is off by default; the strings
	// stay strings here (parsed in Validate and HTTP) so Config stays comparable.

	Metrics bool // METRICS: serve GET /metrics (Prometheus text format)

	MaxStreams             int    // MAX_STREAMS: per instance, 503 beyond; 0 no limit
	MaxStreamsPerClient    int    // MAX_STREAMS_PER_CLIENT: per client address, 429 beyond; 0 no limit
	MaxSubscribersPerOrder int    // MAX_SUBSCRIBERS_PER_ORDER: per order and instance, 503 beyond; 0 no limit
	TrustedProxies         string // TRUSTED_PROXIES: CIDRs whose X-Forwarded-For is believed

	CORSAllowedOrigins string // CORS_ALLOWED_ORIGINS: comma-separated origins, or *

	// Authentication: on when a key is set (one of the first three).
	AuthJWTSecret        string // AUTH_JWT_SECRET: HS256 shared secret (environment only)
	AuthJWTPublicKey     string // AUTH_JWT_PUBLIC_KEY: RS256/ES256 public key, PEM (environment only)
	AuthJWTPublicKeyFile string // AUTH_JWT_PUBLIC_KEY_FILE: or the file that holds it
	AuthJWKSURL          string // AUTH_JWKS_URL: or an identity provider's rotating keys (needs AUTH_JWT_ISSUER)
	AuthJWTIssuer        string // AUTH_JWT_ISSUER: required iss, if set
	AuthJWTAudience      string // AUTH_JWT_AUDIENCE: required aud, if set
	AuthCookie           string // AUTH_COOKIE: cookie a subscriber token may come in

	FlushPadding int // FLUSH_PADDING: bytes of SSE comment after each stream write; 0 off

	// The local server's own http.Server (Lambda has none): slowloris guards.
	ReadHeaderTimeout time.Duration // READ_HEADER_TIMEOUT
	IdleTimeout       time.Duration // IDLE_TIMEOUT: keep-alive connections between requests

	// Restarts and reconnect storms (deploy/nginx/README.md).
	ShutdownDrain   time.Duration // SHUTDOWN_DRAIN: streams end spread over this long at shutdown (local server)
	RetryJitter     time.Duration // RETRY_JITTER: 0 (unset): retry: is exactly RETRY_INTERVAL
	OrderIdleExpiry time.Duration // ORDER_IDLE_EXPIRY: an unfinished order is forgotten this long after its last event
}

// MaxFlushPadding bounds FLUSH_PADDING. The largest size reported to make a
// function URL pass chunks on is about 100 KB; 256 KiB after every write
// would spend Lambda's 2 MB/s streaming rate (past the first 6 MB) on 8
// writes a second.
const MaxFlushPadding = 256 << 10

// Default is the contract's defaults.
func Default() Config {
	return Config{
		RedisKeyPrefix:    "orderstream:",
		HeartbeatInterval: 15 * time.Second,
		RetryInterval:     3 * time.Second,
		OrderRetention:    24 * time.Hour,
		WriteTimeout:      10 * time.Second,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		AuthCookie:        httpapi.DefaultAuthCookie,
		ShutdownDrain:     10 * time.Second,
		OrderIdleExpiry:   30 * 24 * time.Hour,
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
	for _, s := range c.strings() {
		if v := getenv(s.env); v != "" {
			*s.dst = v
		}
	}
	var errs []error
	for _, s := range c.ints() {
		v := getenv(s.env)
		if v == "" {
			continue
		}
		parsed, err := strconv.Atoi(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: not a whole number", s.env, v))
			continue
		}
		*s.dst = parsed
	}
	for _, s := range c.bools() {
		v := getenv(s.env)
		if v == "" {
			continue
		}
		parsed, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: not a boolean such as true or false", s.env, v))
			continue
		}
		*s.dst = parsed
	}
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
		{"READ_HEADER_TIMEOUT", "read-header-timeout", "how long a client may take to send its request headers (local server)", &c.ReadHeaderTimeout},
		{"IDLE_TIMEOUT", "idle-timeout", "how long an idle keep-alive connection stays open (local server)", &c.IdleTimeout},
		{"SHUTDOWN_DRAIN", "shutdown-drain", "at shutdown, end open streams spread over this long (0: at once)", &c.ShutdownDrain},
		{"RETRY_JITTER", "retry-jitter", "spread each stream's retry: over [RETRY_INTERVAL, RETRY_INTERVAL+this) (0: exactly RETRY_INTERVAL)", &c.RetryJitter},
		{"ORDER_IDLE_EXPIRY", "idle-expiry", "forget an unfinished order this long after its last event", &c.OrderIdleExpiry},
	}
}

type intSetting struct {
	env, flag, usage string
	dst              *int
}

func (c *Config) ints() []intSetting {
	return []intSetting{
		{"MAX_STREAMS", "max-streams", "streams open on this instance, 503 beyond (0: no limit)", &c.MaxStreams},
		{"MAX_STREAMS_PER_CLIENT", "max-streams-per-client", "streams one client address holds open, 429 beyond (0: no limit)", &c.MaxStreamsPerClient},
		{"MAX_SUBSCRIBERS_PER_ORDER", "max-subscribers-per-order", "streams open on one order on this instance, 503 beyond (0: no limit)", &c.MaxSubscribersPerOrder},
		{"REDIS_WAIT_REPLICAS", "redis-wait-replicas", "a publish answers 201 only once this many Redis replicas have it, 503 otherwise (0: once the master has it)", &c.RedisWaitReplicas},
		{"FLUSH_PADDING", "flush-padding", "bytes of SSE comment sent after each event and heartbeat, for front ends that hold small chunks (0: off)", &c.FlushPadding},
	}
}

type stringSetting struct {
	env, flag, usage string // flag "": environment only (a secret on a command line is visible to every user)
	dst              *string
}

// strings are the settings beyond the contract's own REDIS_* pair.
func (c *Config) strings() []stringSetting {
	return []stringSetting{
		{"TRUSTED_PROXIES", "trusted-proxies", "comma-separated CIDRs of proxies whose X-Forwarded-For is believed", &c.TrustedProxies},
		{"CORS_ALLOWED_ORIGINS", "cors-origins", "comma-separated origins (https://shop.example) whose pages may call the API, or * (no cookies)", &c.CORSAllowedOrigins},
		{"AUTH_JWT_SECRET", "", "", &c.AuthJWTSecret},
		{"AUTH_JWT_PUBLIC_KEY", "", "", &c.AuthJWTPublicKey},
		{"AUTH_JWT_PUBLIC_KEY_FILE", "auth-public-key-file", "PEM file of the RS256/ES256 public key that signs tokens; turns auth on", &c.AuthJWTPublicKeyFile},
		{"AUTH_JWKS_URL", "auth-jwks-url", "an identity provider's JWKS URL (https) whose rotating keys sign tokens; turns auth on, needs AUTH_JWT_ISSUER", &c.AuthJWKSURL},
		{"AUTH_JWT_ISSUER", "auth-issuer", "the iss every token must carry (empty: not checked)", &c.AuthJWTIssuer},
		{"AUTH_JWT_AUDIENCE", "auth-audience", "the aud every token must name (empty: not checked)", &c.AuthJWTAudience},
		{"AUTH_COOKIE", "auth-cookie", "the cookie a subscriber token may come in", &c.AuthCookie},
	}
}

type boolSetting struct {
	env, flag, usage string
	dst              *bool
}

func (c *Config) bools() []boolSetting {
	return []boolSetting{
		{"METRICS", "metrics", "serve Prometheus metrics at GET /metrics", &c.Metrics},
		{"REDIS_CLUSTER", "redis-cluster", "REDIS_URL names a seed node of a Redis Cluster (more seeds as addr=host:port query parameters)", &c.RedisCluster},
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
	for _, s := range c.bools() {
		fs.BoolVar(s.dst, s.flag, *s.dst, s.usage+" ($"+s.env+")")
	}
	for _, s := range c.ints() {
		fs.IntVar(s.dst, s.flag, *s.dst, s.usage+" ($"+s.env+")")
	}
	for _, s := range c.strings() {
		if s.flag != "" {
			fs.StringVar(s.dst, s.flag, *s.dst, s.usage+" ($"+s.env+")")
		}
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
	positive("READ_HEADER_TIMEOUT", c.ReadHeaderTimeout)
	positive("IDLE_TIMEOUT", c.IdleTimeout)
	for _, s := range c.ints() {
		if *s.dst < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative, got %d", s.env, *s.dst))
		}
	}
	if _, err := httpapi.ParseTrustedProxies(c.TrustedProxies); err != nil {
		errs = append(errs, fmt.Errorf("TRUSTED_PROXIES=%q: %w (want CIDRs such as 10.0.0.0/8, comma-separated)", c.TrustedProxies, err))
	}
	if _, err := httpapi.ParseOrigins(c.CORSAllowedOrigins); err != nil {
		errs = append(errs, fmt.Errorf("CORS_ALLOWED_ORIGINS: %w", err))
	}
	if err := c.auth().Validate(); err != nil {
		errs = append(errs, fmt.Errorf("AUTH_JWT_*: %w", err))
	}
	if (&http.Cookie{Name: c.AuthCookie, Value: "x"}).Valid() != nil {
		errs = append(errs, fmt.Errorf("AUTH_COOKIE=%q is not a cookie name", c.AuthCookie))
	}
	if c.FlushPadding > MaxFlushPadding {
		errs = append(errs, fmt.Errorf("FLUSH_PADDING must be at most %d bytes, got %d", MaxFlushPadding, c.FlushPadding))
	}
	if c.RetryInterval < time.Millisecond {
		errs = append(errs, fmt.Errorf("RETRY_INTERVAL must be at least 1ms, got %v", c.RetryInterval))
	}
	if err := c.validateRedis(); err != nil {
		errs = append(errs, err)
	}
	if c.MaxStreamDuration < 0 {
		errs = append(errs, fmt.Errorf("MAX_STREAM_DURATION must not be negative, got %v", c.MaxStreamDuration))
	}
	errs = append(errs, c.validateRestarts()...)
	return errors.Join(errs...)
}

// validateRedis checks REDIS_URL in the form REDIS_CLUSTER says, and that the
// Redis-only settings come with a Redis.
func (c Config) validateRedis() error {
	if c.RedisURL == "" {
		if c.RedisCluster || c.RedisWaitReplicas > 0 {
			return errors.New("REDIS_CLUSTER and REDIS_WAIT_REPLICAS need REDIS_URL")
		}
		return nil
	}
	if err := broker.CheckRedisURL(c.RedisURL, c.RedisCluster); err != nil {
		return fmt.Errorf("REDIS_URL (REDIS_CLUSTER=%t): %w", c.RedisCluster, err)
	}
	return nil
}

// validateRestarts checks the settings for restarts and reconnect storms.
func (c Config) validateRestarts() []error {
	var errs []error
	for _, d := range []struct {
		env string
		v   time.Duration
	}{{"SHUTDOWN_DRAIN", c.ShutdownDrain}, {"RETRY_JITTER", c.RetryJitter}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative, got %v", d.env, d.v))
		}
	}
	// The Redis broker keeps an unfinished order at least as long as a
	// finished one; say so rather than quietly stretch a shorter setting.
	if c.OrderIdleExpiry < c.OrderRetention {
		errs = append(errs, fmt.Errorf("ORDER_IDLE_EXPIRY (%v) must be at least ORDER_RETENTION (%v)", c.OrderIdleExpiry, c.OrderRetention))
	}
	return errs
}

// HTTP returns the settings for httpapi.NewServer; done ends every stream
// when closed. Call it on a configuration that passed Validate. Each call
// makes a new metrics registry (with the Go runtime and process collectors),
// so that nothing is global.
func (c Config) HTTP(done <-chan struct{}) httpapi.Config {
	h := httpapi.Config{
		HeartbeatInterval: c.HeartbeatInterval,
		RetryInterval:     c.RetryInterval,
		RetryJitter:       c.RetryJitter,
		WriteTimeout:      c.WriteTimeout,
		MaxStreamDuration: c.MaxStreamDuration,
		Done:              done,

		MaxStreams:             c.MaxStreams,
		MaxStreamsPerClient:    c.MaxStreamsPerClient,
		MaxSubscribersPerOrder: c.MaxSubscribersPerOrder,
		FlushPadding:           c.FlushPadding,
	}
	// Validate reported errors; a bad list here means none (fail closed).
	h.TrustedProxies, _ = httpapi.ParseTrustedProxies(c.TrustedProxies)
	h.CORSAllowedOrigins, _ = httpapi.ParseOrigins(c.CORSAllowedOrigins)
	h.Auth = c.auth()
	if c.Metrics {
		h.Metrics = prometheus.NewRegistry()
		h.Metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	return h
}

// auth is the authentication settings; a key that can't be used makes
// NewServer refuse every protected request (fail closed).
func (c Config) auth() httpapi.AuthConfig {
	a := httpapi.AuthConfig{
		PublicKeyFile: c.AuthJWTPublicKeyFile,
		JWKSURL:       c.AuthJWKSURL,
		Issuer:        c.AuthJWTIssuer,
		Audience:      c.AuthJWTAudience,
		Cookie:        c.AuthCookie,
	}
	if c.AuthJWTSecret != "" {
		a.Secret = []byte(c.AuthJWTSecret)
	}
	if c.AuthJWTPublicKey != "" {
		a.PublicKeyPEM = []byte(c.AuthJWTPublicKey)
	}
	return a
}

// OpenBroker opens the broker the configuration names.
func (c Config) OpenBroker(ctx context.Context, logger *slog.Logger) (broker.Broker, error) {
	opts := broker.Options{Retention: c.OrderRetention, IdleExpiry: c.OrderIdleExpiry}
	if c.RedisURL == "" {
		return broker.NewMemory(opts), nil
	}
	r, err := broker.NewRedis(ctx, broker.RedisConfig{
		URL:          c.RedisURL,
		Cluster:      c.RedisCluster,
		WaitReplicas: c.RedisWaitReplicas,
		KeyPrefix:    c.RedisKeyPrefix,
		Options:      opts,
		Logger:       logger,
	})
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return r, nil
}
