package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func startRaw(t *testing.T, shape string) string { return startFaulty(t, shape, "") }

func startFaulty(t *testing.T, shape, fault string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	srv := newRawServer()
	srv.fault = fault
	srv.shape = shape
	go func() { done <- srv.serve(ctx, ln, 50*time.Millisecond) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return "http://" + ln.Addr().String()
}

func TestRoundAgainstRawServer(t *testing.T) {
	for _, shape := range shapes {
		t.Run(shape, func(t *testing.T) { testRound(t, startRaw(t, shape)) })
	}
}

func testRound(t *testing.T, base string) {
	srcs := []net.IP{net.IPv4(127, 0, 0, 1)}
	for _, interval := range []string{"0s", "5ms"} {
		r, err := runRound(context.Background(), base, os.Getpid(), 60, 6, interval, srcs)
		if err != nil {
			t.Fatal(err)
		}
		if r.delivered != 60*perOrder || r.expected != r.delivered || len(r.lat) != r.delivered {
			t.Errorf("interval %s: delivered %d of %d, %d latencies", interval, r.delivered, r.expected, len(r.lat))
		}
		if r.ended != 60 {
			t.Errorf("interval %s: the server ended %d of 60 streams after their terminal event", interval, r.ended)
		}
		if r.connectTime <= 0 || r.rssKiB <= 0 {
			t.Errorf("interval %s: connect time %v, RSS %d KiB", interval, r.connectTime, r.rssKiB)
		}
		if r.gaps+r.duplicates+r.errs != 0 {
			t.Errorf("interval %s: gaps %d duplicates %d errors %d", interval, r.gaps, r.duplicates, r.errs)
		}
		if r.connectCPU+r.fanOutCPU <= 0 {
			t.Errorf("interval %s: no CPU time measured", interval)
		}
		if r.window() <= 0 {
			t.Errorf("interval %s: window %v", interval, r.window())
		}
	}
}

// TestFaultsAreSeen: the faults the smoke run uses to prove that the k6
// thresholds can fail are seen by the same checks the k6 extension uses.
func TestFaultsAreSeen(t *testing.T) {
	for _, shape := range shapes {
		t.Run(shape, func(t *testing.T) { testFaults(t, shape) })
	}
}

func testFaults(t *testing.T, shape string) {
	srcs := []net.IP{net.IPv4(127, 0, 0, 1)}
	for _, fault := range []string{faultGap, faultDuplicate} {
		r, err := runRound(context.Background(), startFaulty(t, shape, fault), 0, 20, 2, "0s", srcs)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case fault == faultGap && (r.gaps != 20 || r.delivered != 20*(perOrder-1)):
			t.Errorf("gap: %d gaps, %d delivered; want 20 and %d", r.gaps, r.delivered, 20*(perOrder-1))
		// The client reads on after Delivered to the end, so it sees that
		// copy too.
		case fault == faultDuplicate && (r.duplicates != 20*perOrder || r.delivered != 20*perOrder):
			t.Errorf("duplicate: %d duplicates, %d delivered; want %d and %d", r.duplicates, r.delivered, 20*perOrder, 20*perOrder)
		}
	}
}

func TestHoldAgainstRawServer(t *testing.T) {
	for _, shape := range shapes {
		t.Run(shape, func(t *testing.T) { testHold(t, startRaw(t, shape)) })
	}
}

func testHold(t *testing.T, base string) {
	held, heartbeats, mem, err := holdStreams(context.Background(), base, os.Getpid(), 20, 2, 2, 200*time.Millisecond, []net.IP{net.IPv4(127, 0, 0, 1)})
	if err != nil || held != 20 || heartbeats < 20 {
		t.Fatalf("held %d, %d heartbeats, %v; want 20, >= 20, nil", held, heartbeats, err)
	}
	if len(mem) != 3 || mem[0].Streams != 0 || mem[2].Streams != 20 || mem[2].RSSKiB <= 0 {
		t.Errorf("memory points %+v; want 0, 10 and 20 streams with RSS", mem)
	}
}

func TestPercentiles(t *testing.T) {
	v := make([]float64, 100)
	for i := range v {
		v[99-i] = float64(i + 1)
	}
	if p := percentiles(v); p != [4]float64{51, 96, 100, 100} {
		t.Errorf("percentiles = %v", p)
	}
}

func TestServeRejectsUnknownShape(t *testing.T) {
	for _, args := range [][]string{{"-shape", "threads"}, {"-shape", ""}, {"-fault", "late"}} {
		if err := serve(args); err == nil {
			t.Errorf("serve %q: no error", args)
		}
	}
}

// TestQueuedSubCutsAStalledReader: in the goroutine and writev shapes a
// client that never reads fills its kernel buffers, then its queue; the next
// send cuts it instead of waiting, so the publisher never blocks on it.
func TestQueuedSubCutsAStalledReader(t *testing.T) {
	for _, batch := range []bool{false, true} {
		t.Run(map[bool]string{false: shapeGoroutine, true: shapeWritev}[batch], func(t *testing.T) {
			testQueuedSubCutsAStalledReader(t, batch)
		})
	}
}

// tcpPair is a connected pair of loopback TCP connections, closed with the test.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	return client, server
}

func testQueuedSubCutsAStalledReader(t *testing.T, batch bool) {
	_, server := tcpPair(t) // the client never reads
	q := newQueuedSub(server, batch).start()
	frame := make([]byte, 64<<10)
	deadline := time.Now().Add(30 * time.Second)
	for q.send(frame) {
		if time.Now().After(deadline) {
			t.Fatal("a reader that never reads was never cut")
		}
	}
	if !q.dead() || q.send(keepAlive) {
		t.Error("a cut stream still takes frames")
	}
	// The stream's goroutine has gone: its connection is closed.
	if _, err := server.Write([]byte("x")); err == nil {
		t.Error("the cut stream's connection is still open")
	}
}

// TestWritevWritesQueuedFramesAtOnce: frames queued while a stream's
// goroutine was away go out in one writev in the writev shape, one write
// each in the goroutine shape; either way in order, then the end.
func TestWritevWritesQueuedFramesAtOnce(t *testing.T) {
	for _, tc := range []struct {
		batch  bool
		writes int64
	}{{false, 10}, {true, 1}} {
		client, server := tcpPair(t)
		// Queued before the goroutine starts: it finds all of them at once.
		q := newQueuedSub(server, tc.batch)
		var want []byte
		for i := range 10 {
			f := fmt.Appendf(nil, "id: %d\ndata: x\n\n", i)
			want = append(want, f...)
			if !q.send(f) {
				t.Fatalf("send %d refused", i)
			}
		}
		q.end()
		q.start()
		_ = client.SetReadDeadline(time.Now().Add(30 * time.Second))
		got, err := io.ReadAll(client) // to the end: the stream was closed after its frames
		if err != nil {
			t.Fatalf("batch %v: %v", tc.batch, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("batch %v: read %q, want %q", tc.batch, got, want)
		}
		if n := q.writes.Load(); n != tc.writes {
			t.Errorf("batch %v: %d write calls for 10 queued frames, want %d", tc.batch, n, tc.writes)
		}
	}
}

// TestBenchWritesRounds: bench's JSON for a raw server named by -raw-name
// holds every round and the figures the table is made of; a server that
// loses events fails the run and still writes them.
func TestBenchWritesRounds(t *testing.T) {
	out := filepath.Join(t.TempDir(), "rounds.json")
	args := []string{"-raw", startRaw(t, shapeWritev), "-raw-name", "raw-writev", "-raw-pid", strconv.Itoa(os.Getpid()),
		"-n", "30", "-k", "3", "-rounds", "3", "-interval", "1ms", "-sources", "1", "-json", out}
	if err := bench(args); err != nil {
		t.Fatal(err)
	}
	var got map[string]summary
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	s, ok := got["raw-writev"]
	if !ok || len(got) != 1 {
		t.Fatalf("summaries %v, want only raw-writev", slices.Collect(maps.Keys(got)))
	}
	if s.Rounds != 3 || len(s.PerRound) != 3 || s.Delivered != 3*30*perOrder || s.Ended != 90 || s.Errors+s.Gaps+s.Duplicates != 0 {
		t.Errorf("summary %+v", s)
	}
	if s.PerSecond <= 0 || s.P99 <= 0 || s.ConnectP50 <= 0 || s.ConnectMax < s.ConnectP50 || s.RSSStartKiB <= 0 || s.RSSAfterKiB <= 0 || s.RSSPeakKiB <= 0 {
		t.Errorf("figures missing: %+v", s)
	}
	for i, r := range s.PerRound {
		if r.ConnectMS <= 0 || r.Delivered != 30*perOrder || r.Ended != 30 || r.RSSKiB <= 0 {
			t.Errorf("round %d: %+v", i+1, r)
		}
	}
	if s.Box.LoadBefore == "" || s.Box.Cores < 1 || s.Box.ClientCPUs < 1 {
		t.Errorf("box %+v", s.Box)
	}

	// A server that drops Packed fails the run, which still writes its JSON.
	args = []string{"-raw", startFaulty(t, shapeLoop, faultGap), "-n", "10", "-k", "1", "-rounds", "1", "-sources", "1", "-json", out}
	if err := bench(args); err == nil || !strings.Contains(err.Error(), "10 gaps") {
		t.Errorf("a server that loses events: %v, want an error naming 10 gaps", err)
	}
	if b, err := os.ReadFile(out); err != nil || !strings.Contains(string(b), `"gaps": 10`) {
		t.Errorf("JSON of the failed run: %v\n%s", err, b)
	}
}

func TestBenchRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-raw", "http://127.0.0.1:1", "-interval", "soon"},
		{"-raw", "http://127.0.0.1:1", "-interval", "-1s"},
		{"-raw", "http://127.0.0.1:1", "-raw-name", "orderstream"},
		{"-raw", "http://127.0.0.1:1", "-n", "2", "-k", "3"},
		{"-n", "10"},
	} {
		if err := bench(args); err == nil {
			t.Errorf("bench %q: no error", args)
		}
	}
}
