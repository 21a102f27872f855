package httpapi

import (
	"testing"
	"time"
)

func TestRetryJitter(t *testing.T) {
	for _, tc := range []struct {
		name             string
		interval, jitter time.Duration
		distinct         bool // several values should come out of 200 draws
	}{
		{"unset: exactly the interval", 3 * time.Second, 0, false},
		{"two seconds of jitter", 3 * time.Second, 2 * time.Second, true},
		{"under a millisecond rounds to the interval", 3 * time.Second, 500 * time.Microsecond, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{RetryInterval: tc.interval, RetryJitter: tc.jitter}
			seen := map[time.Duration]bool{}
			for range 200 {
				got := cfg.retry()
				if got < tc.interval || got >= tc.interval+max(tc.jitter, time.Millisecond) || got%time.Millisecond != 0 {
					t.Fatalf("retry = %v, want whole milliseconds in [%v, %v+%v)", got, tc.interval, tc.interval, tc.jitter)
				}
				seen[got] = true
			}
			if tc.distinct && len(seen) < 10 {
				t.Fatalf("200 draws gave %d distinct values: not spread", len(seen))
			}
			if !tc.distinct && len(seen) != 1 {
				t.Fatalf("want one value, got %v", seen)
			}
		})
	}
}
