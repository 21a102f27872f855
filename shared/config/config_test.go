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
		{"every error at once", map[string]string{"HEARTBEAT_INTERVAL": "x", "ORDER_RETENTION": "y"}, nil, "ORDER_RETENTION"},
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
