package config

import (
	"flag"
	"strings"
	"testing"
	"time"
)

func TestFromEnv(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		check   func(Config) bool
		wantErr string
	}{
		{"defaults", nil, func(c Config) bool { return c == Default() }, ""},
		{"all set", map[string]string{
			"REDIS_URL": "redis://localhost:6379", "REDIS_KEY_PREFIX": "shop1:",
			"HEARTBEAT_INTERVAL": "5s", "RETRY_INTERVAL": "1500ms", "ORDER_RETENTION": "1h",
			"STREAM_WRITE_TIMEOUT": "2s", "MAX_STREAM_DURATION": "10m",
		}, func(c Config) bool {
			return c.RedisURL == "redis://localhost:6379" && c.RedisKeyPrefix == "shop1:" &&
				c.HeartbeatInterval == 5*time.Second && c.RetryInterval == 1500*time.Millisecond &&
				c.OrderRetention == time.Hour && c.WriteTimeout == 2*time.Second && c.MaxStreamDuration == 10*time.Minute
		}, ""},
		{"not a duration", map[string]string{"HEARTBEAT_INTERVAL": "15"}, nil, "HEARTBEAT_INTERVAL"},
		{"zero heartbeat", map[string]string{"HEARTBEAT_INTERVAL": "0s"}, nil, "HEARTBEAT_INTERVAL must be positive"},
		{"sub-millisecond retry", map[string]string{"RETRY_INTERVAL": "10us"}, nil, "RETRY_INTERVAL"},
		{"negative max stream", map[string]string{"MAX_STREAM_DURATION": "-1s"}, nil, "MAX_STREAM_DURATION"},
		{"cluster", map[string]string{
			"REDIS_URL": "redis://:pw@10.0.0.1:7000?addr=10.0.0.2:7000&addr=10.0.0.3:7000", "REDIS_CLUSTER": "true", "REDIS_WAIT_REPLICAS": "1",
		}, func(c Config) bool { return c.RedisCluster && c.RedisWaitReplicas == 1 }, ""},
		{"cluster without a URL", map[string]string{"REDIS_CLUSTER": "true"}, nil, "need REDIS_URL"},
		{"wait without a URL", map[string]string{"REDIS_WAIT_REPLICAS": "1"}, nil, "need REDIS_URL"},
		{"negative wait", map[string]string{"REDIS_URL": "redis://h:6379", "REDIS_WAIT_REPLICAS": "-1"}, nil, "REDIS_WAIT_REPLICAS must not be negative"},
		{"cluster flag not a boolean", map[string]string{"REDIS_URL": "redis://h:6379", "REDIS_CLUSTER": "maybe"}, nil, "REDIS_CLUSTER"},
		{"bad URL", map[string]string{"REDIS_URL": "http://h:6379"}, nil, "REDIS_URL"},
		{"bad cluster seed", map[string]string{"REDIS_URL": "redis://h:6379?colour=blue", "REDIS_CLUSTER": "true"}, nil, "REDIS_URL"},
		{"every error at once", map[string]string{"HEARTBEAT_INTERVAL": "x", "ORDER_RETENTION": "y"}, nil, "ORDER_RETENTION"},
		// SHUTDOWN_DRAIN, RETRY_JITTER and ORDER_IDLE_EXPIRY.
		{"restart settings default", nil, func(c Config) bool {
			return c.ShutdownDrain == 10*time.Second && c.RetryJitter == 0 && c.HTTP(nil).RetryJitter == 0 &&
				c.OrderIdleExpiry == 30*24*time.Hour
		}, ""},
		{"restart settings set", map[string]string{"SHUTDOWN_DRAIN": "30s", "RETRY_JITTER": "2s", "ORDER_IDLE_EXPIRY": "168h"}, func(c Config) bool {
			return c.ShutdownDrain == 30*time.Second && c.HTTP(nil).RetryJitter == 2*time.Second && c.OrderIdleExpiry == 168*time.Hour
		}, ""},
		{"no drain", map[string]string{"SHUTDOWN_DRAIN": "0s"}, func(c Config) bool { return c.ShutdownDrain == 0 }, ""},
		{"drain not a duration", map[string]string{"SHUTDOWN_DRAIN": "10"}, nil, "SHUTDOWN_DRAIN"},
		{"negative drain", map[string]string{"SHUTDOWN_DRAIN": "-1s"}, nil, "SHUTDOWN_DRAIN must not be negative"},
		{"negative jitter", map[string]string{"RETRY_JITTER": "-5ms"}, nil, "RETRY_JITTER must not be negative"},
		{"jitter not a duration", map[string]string{"RETRY_JITTER": "lots"}, nil, "RETRY_JITTER"},
		{"idle expiry under retention", map[string]string{"ORDER_IDLE_EXPIRY": "1h", "ORDER_RETENTION": "2h"}, nil, "ORDER_IDLE_EXPIRY (1h0m0s) must be at least ORDER_RETENTION"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := FromEnv(func(k string) string { return tt.env[k] })
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want an error naming %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !tt.check(c) {
				t.Fatalf("got %+v, %v", c, err)
			}
		})
	}
}

func TestFlagsOverrideEnv(t *testing.T) {
	c, err := FromEnv(func(k string) string { return map[string]string{"HEARTBEAT_INTERVAL": "5s", "RETRY_INTERVAL": "2s"}[k] })
	if err != nil {
		t.Fatal(err)
	}
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	c.RegisterFlags(fs)
	if err := fs.Parse([]string{"-heartbeat", "1s"}); err != nil {
		t.Fatal(err)
	}
	if c.HeartbeatInterval != time.Second || c.RetryInterval != 2*time.Second {
		t.Fatalf("heartbeat %v (want the flag's 1s), retry %v (want the env's 2s)", c.HeartbeatInterval, c.RetryInterval)
	}
}

// TestHardening covers the settings of docs/security.md: each is off by
// default, on with its variable, and a bad value is an error naming it.
func TestHardening(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		check   func(Config) bool
		wantErr string
	}{
		{"metrics on", map[string]string{"METRICS": "true"}, func(c Config) bool { return c.Metrics }, ""},
		{"metrics off", map[string]string{"METRICS": "0"}, func(c Config) bool { return !c.Metrics }, ""},
		{"metrics not a boolean", map[string]string{"METRICS": "yes please"}, nil, "METRICS"},
		{"limits", map[string]string{
			"MAX_STREAMS": "10000", "MAX_STREAMS_PER_CLIENT": "20", "MAX_SUBSCRIBERS_PER_ORDER": "500",
			"TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.1", "READ_HEADER_TIMEOUT": "5s", "IDLE_TIMEOUT": "30s",
		}, func(c Config) bool {
			h := c.HTTP(nil)
			return h.MaxStreams == 10000 && h.MaxStreamsPerClient == 20 && h.MaxSubscribersPerOrder == 500 &&
				len(h.TrustedProxies) == 2 && c.ReadHeaderTimeout == 5*time.Second && c.IdleTimeout == 30*time.Second
		}, ""},
		{"limit not a number", map[string]string{"MAX_STREAMS": "lots"}, nil, "MAX_STREAMS"},
		{"negative limit", map[string]string{"MAX_STREAMS_PER_CLIENT": "-1"}, nil, "MAX_STREAMS_PER_CLIENT must not be negative"},
		{"bad proxy", map[string]string{"TRUSTED_PROXIES": "10.0.0.0/33"}, nil, "TRUSTED_PROXIES"},
		{"zero header timeout", map[string]string{"READ_HEADER_TIMEOUT": "0s"}, nil, "READ_HEADER_TIMEOUT must be positive"},
		{"cors", map[string]string{"CORS_ALLOWED_ORIGINS": "https://shop.example, http://localhost:3000"}, func(c Config) bool {
			o := c.HTTP(nil).CORSAllowedOrigins
			return len(o) == 2 && o[0] == "https://shop.example" && o[1] == "http://localhost:3000"
		}, ""},
		{"cors origin with a path", map[string]string{"CORS_ALLOWED_ORIGINS": "https://shop.example/app"}, nil, "CORS_ALLOWED_ORIGINS"},
		{"auth with a secret", map[string]string{"AUTH_JWT_SECRET": strings.Repeat("s", 32), "AUTH_JWT_ISSUER": "https://shop.example"},
			func(c Config) bool {
				a := c.HTTP(nil).Auth
				return a.Enabled() && string(a.Secret) == strings.Repeat("s", 32) && a.Issuer == "https://shop.example" && a.Cookie == "orderstream_token"
			}, ""},
		{"auth secret too short", map[string]string{"AUTH_JWT_SECRET": "hunter2"}, nil, "at least 32"},
		{"auth key not PEM", map[string]string{"AUTH_JWT_PUBLIC_KEY": "ssh-rsa AAAA"}, nil, "AUTH_JWT_"},
		{"auth key file missing", map[string]string{"AUTH_JWT_PUBLIC_KEY_FILE": "/nonexistent/key.pem"}, nil, "read public key"},
		{"auth secret and key", map[string]string{"AUTH_JWT_SECRET": strings.Repeat("s", 32), "AUTH_JWT_PUBLIC_KEY_FILE": "/k.pem"}, nil, "not both"},
		{"auth cookie name", map[string]string{"AUTH_COOKIE": "a b"}, nil, "AUTH_COOKIE"},
		{"auth with a JWKS", map[string]string{"AUTH_JWKS_URL": "https://idp.example/.well-known/jwks.json", "AUTH_JWT_ISSUER": "https://idp.example/"},
			func(c Config) bool {
				a := c.HTTP(nil).Auth
				return a.Enabled() && a.JWKSURL == "https://idp.example/.well-known/jwks.json" && a.Issuer == "https://idp.example/"
			}, ""},
		{"auth JWKS without issuer", map[string]string{"AUTH_JWKS_URL": "https://idp.example/jwks"}, nil, "AUTH_JWT_ISSUER"},
		{"auth JWKS in the clear", map[string]string{"AUTH_JWKS_URL": "http://idp.example/jwks", "AUTH_JWT_ISSUER": "x"}, nil, "must be https"},
		{"auth JWKS and a secret", map[string]string{"AUTH_JWKS_URL": "https://idp.example/jwks", "AUTH_JWT_ISSUER": "x", "AUTH_JWT_SECRET": strings.Repeat("s", 32)}, nil, "not both"},
		{"zero idle timeout", map[string]string{"IDLE_TIMEOUT": "0s"}, nil, "IDLE_TIMEOUT must be positive"},
		{"flush padding", map[string]string{"FLUSH_PADDING": "2048"}, func(c Config) bool { return c.HTTP(nil).FlushPadding == 2048 }, ""},
		{"flush padding off by default", nil, func(c Config) bool { return c.HTTP(nil).FlushPadding == 0 }, ""},
		{"negative flush padding", map[string]string{"FLUSH_PADDING": "-1"}, nil, "FLUSH_PADDING must not be negative"},
		{"huge flush padding", map[string]string{"FLUSH_PADDING": "1000000"}, nil, "FLUSH_PADDING must be at most"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := FromEnv(func(k string) string { return tt.env[k] })
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want an error naming %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !tt.check(c) {
				t.Fatalf("got %+v, %v", c, err)
			}
		})
	}
}

func TestHTTPDefaultsAddNothing(t *testing.T) {
	h := Default().HTTP(nil)
	if h.Metrics != nil || h.Auth.Enabled() || h.MaxStreams != 0 || h.MaxStreamsPerClient != 0 || h.MaxSubscribersPerOrder != 0 || h.TrustedProxies != nil || h.CORSAllowedOrigins != nil {
		t.Fatalf("defaults turn on: %+v", h)
	}
	c := Default()
	c.Metrics = true
	if c.HTTP(nil).Metrics == c.HTTP(nil).Metrics {
		t.Fatal("two HTTP() calls share a metrics registry")
	}
}

// TestSecretsHaveNoFlags: a secret on a command line is visible to every
// user of the machine (ps), so it comes from the environment only.
func TestSecretsHaveNoFlags(t *testing.T) {
	c := Default()
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	c.RegisterFlags(fs)
	fs.VisitAll(func(f *flag.Flag) {
		if strings.Contains(f.Name, "secret") || f.Name == "auth-public-key" {
			t.Errorf("flag -%s carries a secret", f.Name)
		}
	})
	for _, name := range []string{"metrics", "max-streams", "max-streams-per-client", "max-subscribers-per-order", "trusted-proxies", "cors-origins", "auth-public-key-file", "auth-issuer", "auth-audience", "auth-cookie", "read-header-timeout", "idle-timeout"} {
		if fs.Lookup(name) == nil {
			t.Errorf("no flag -%s", name)
		}
	}
}
