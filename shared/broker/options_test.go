package broker

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// testOptions are the required Options with values for this package's
// tests (brokertest.Options, for the others, cannot be imported here): long
// enough that nothing expires unless a test says so, and each different,
// so that a test can tell which one a key's expiry came from.
func testOptions() Options {
	return Options{Retention: time.Hour, IdleExpiry: 10 * time.Hour}
}

// withTestOptions fills o's missing required values from testOptions, for
// the helpers that open a broker with what a test set and nothing else.
func withTestOptions(o Options) Options {
	def := testOptions()
	if o.Retention == 0 {
		o.Retention = def.Retention
	}
	if o.IdleExpiry == 0 {
		o.IdleExpiry = def.IdleExpiry
	}
	return o
}

// TestRequiredOptions: neither broker fills in a default of the settings'
// own (those are shared/config's): NewMemory panics and NewRedis fails,
// before dialling anything, naming every missing value at once.
func TestRequiredOptions(t *testing.T) {
	for _, tc := range []struct {
		name   string
		opts   Options
		prefix string
		want   []string // in the message; empty: accepted
	}{
		{"all set", testOptions(), "p:", nil},
		{"only the tuning knob set", Options{SubscriberBuffer: 4}, "p:", []string{"Retention must be positive, got 0s", "IdleExpiry must be positive, got 0s"}},
		{"no retention", Options{IdleExpiry: time.Hour}, "p:", []string{"Retention must be positive"}},
		{"negative idle expiry", Options{Retention: time.Hour, IdleExpiry: -time.Second}, "p:", []string{"IdleExpiry must be positive, got -1s"}},
		{"no key prefix", testOptions(), "", []string{"KeyPrefix is empty"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.prefix != "" { // the in-process broker has no keys
				msg := memoryPanic(tc.opts)
				if len(tc.want) == 0 && msg != "" {
					t.Errorf("NewMemory panicked: %s", msg)
				}
				for _, w := range tc.want {
					if !strings.HasPrefix(msg, "broker.NewMemory: ") || !strings.Contains(msg, w) {
						t.Errorf("NewMemory panic %q, want it to say %q", msg, w)
					}
				}
			}
			// Port 1 refuses at once: a valid cfg comes up anyway (the
			// broker keeps dialling); an invalid one fails before that.
			r, err := NewRedis(context.Background(), RedisConfig{URL: "redis://127.0.0.1:1", KeyPrefix: tc.prefix, Options: tc.opts, Timeout: 100 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
			if err == nil {
				r.Close()
			}
			if len(tc.want) == 0 && err != nil {
				t.Errorf("NewRedis: %v", err)
			}
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("NewRedis error %v, want it to say %q", err, w)
				}
			}
		})
	}
}

// memoryPanic opens and closes an in-process broker with opts and returns
// what NewMemory panicked with, "" if it did not.
func memoryPanic(opts Options) (msg string) {
	defer func() {
		if v := recover(); v != nil {
			msg = fmt.Sprint(v)
		}
	}()
	NewMemory(opts).Close()
	return ""
}
