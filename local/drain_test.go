package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// streamEnd is how one stream ended: when, how, and the retry: it was sent.
type streamEnd struct {
	at    time.Time
	err   error
	retry time.Duration
}

// readToEnd reads st until it ends and reports how on out.
func readToEnd(st *stream, out chan<- streamEnd) {
	for {
		if _, err := st.dec.Next(); err != nil {
			retry, _ := st.dec.Retry()
			out <- streamEnd{time.Now(), err, retry}
			return
		}
	}
}

// TestShutdownDrain runs the whole shutdown through run(): from the context's
// cancel (SIGTERM) /healthz is 503, open streams end cleanly spread over
// SHUTDOWN_DRAIN, one opened meanwhile is served and ended the same way, a
// simulation in flight completes, run returns and nothing is left running.
func TestShutdownDrain(t *testing.T) {
	const drain = 3 * time.Second
	baseline := settledGoroutines()
	s := startServer(t, map[string]string{
		"SHUTDOWN_DRAIN": drain.String(), "HEARTBEAT_INTERVAL": "1h",
		"RETRY_INTERVAL": "2s", "RETRY_JITTER": "1s",
	})
	id := newID()
	publish(t, s.URL, id, "Created")
	ended := make(chan streamEnd, 32)
	const n = 20
	for range n {
		st := openStream(t, s.URL+"/orders/"+id+"/stream", nil)
		st.next(t)
		go readToEnd(st, ended)
	}

	// A simulation that outlasts the drain window.
	simulated := newID()
	type simResult struct {
		status    int
		published int
		err       error
	}
	simDone := make(chan simResult, 1)
	go func() {
		res, err := http.Post(s.URL+"/orders/"+simulated+"/simulate?interval=1s", "", nil)
		if err != nil {
			simDone <- simResult{err: err}
			return
		}
		defer res.Body.Close()
		var body struct{ Published int }
		err = json.NewDecoder(res.Body).Decode(&body)
		simDone <- simResult{res.StatusCode, body.Published, err}
	}()
	waitForStatus(t, "the simulation's first status", s.URL+"/orders/"+simulated, http.StatusOK)

	begun := time.Now()
	s.cancel() // SIGTERM
	// 503 while the server still listens: the drain has begun, not ended.
	waitForStatus(t, "/healthz failing", s.URL+"/healthz", http.StatusServiceUnavailable)

	// Opened during the drain: served, then ended the same way.
	late := openStream(t, s.URL+"/orders/"+id+"/stream", nil)
	if ev := late.next(t); ev.Update.Status != "Created" {
		t.Fatalf("the late stream got %s first", ev.Update.Status)
	}
	go readToEnd(late, ended)
	if res := get(t, s.URL+"/healthz"); res.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("/healthz later in the drain: %d, want 503", res.StatusCode)
	}

	var offsets []time.Duration
	retries := map[time.Duration]bool{}
	for range n + 1 {
		var e streamEnd
		select {
		case e = <-ended:
		case <-time.After(drain + 20*time.Second):
			t.Fatal("a stream outlived the drain by 20s")
		}
		if e.err != io.EOF {
			t.Fatalf("a stream ended with %v, want a clean end", e.err)
		}
		if e.retry < 2*time.Second || e.retry >= 3*time.Second {
			t.Errorf("retry: %v, want in [2s, 3s)", e.retry)
		}
		retries[e.retry] = true
		offsets = append(offsets, e.at.Sub(begun))
	}
	slices.Sort(offsets)
	if spread := offsets[n] - offsets[0]; spread < drain/10 {
		t.Fatalf("the streams ended within %v of one another in a %v drain: %v", spread, drain, offsets)
	}
	if len(retries) < 2 {
		t.Errorf("every stream got the same retry: %v", retries)
	}

	sim := <-simDone
	if sim.err != nil || sim.status != http.StatusOK || sim.published != 6 {
		t.Fatalf("the simulation in flight: %d, published %d, %v; want 200 and all 6", sim.status, sim.published, sim.err)
	}
	if err := s.stop(); err != nil {
		t.Fatalf("run: %v", err)
	}
	if _, err := net.DialTimeout("tcp", strings.TrimPrefix(s.URL, "http://"), time.Second); err == nil {
		t.Fatal("the server still accepts connections after it stopped")
	}
	http.DefaultClient.CloseIdleConnections()
	deadline := time.Now().Add(10 * time.Second)
	for n := settledGoroutines(); n > baseline+5; n = settledGoroutines() {
		if time.Now().After(deadline) {
			t.Fatalf("goroutines: %d before the server, %d after it stopped", baseline, n)
		}
	}
}

// waitForStatus polls url until it answers want.
func waitForStatus(t *testing.T, what, url string, want int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		res, err := http.Get(url)
		if err == nil {
			res.Body.Close()
			if res.StatusCode == want {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: %s did not answer %d within 15s", what, url, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
