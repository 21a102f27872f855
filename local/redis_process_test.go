package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/orderstream/orderstream/shared/broker/redistest"
)

// These tests run the server as separate processes sharing one real
// redis-server, as a deployment of several instances does: the test binary
// re-executes itself as the server (see TestMain), so no build step is needed
// and killing an instance is killing a process.

// serveEnv, when set in the environment, makes the test binary run the server
// instead of the tests.
const serveEnv = "ORDERSTREAM_TEST_SERVE"

// nofileEnv, when set with serveEnv, is the open-file limit (soft and
// hard) the server process runs under, set before it starts, as prlimit
// would: Go raises only the soft limit to the hard one by itself.
const nofileEnv = "ORDERSTREAM_TEST_NOFILE"

func TestMain(m *testing.M) {
	if os.Getenv(serveEnv) == "1" {
		if v := os.Getenv(nofileEnv); v != "" {
			if err := setOpenFileLimit(v); err != nil {
				fmt.Fprintln(os.Stderr, "set the open-file limit:", err)
				os.Exit(2)
			}
		}
		main()
		os.Exit(0)
	}
	os.Exit(runCheckingAPIDoc(m))
}

// process is the server running as a child process.
type process struct {
	URL  string
	cmd  *exec.Cmd
	done chan struct{}
	log  *logLines // what it logged so far
}

// startProcess starts the server as a child process with testEnv(env),
// under the command in prefix if any (ip netns exec NAME), and waits until
// it listens.
func startProcess(t *testing.T, env map[string]string, prefix ...string) *process {
	t.Helper()
	addrFile := filepath.Join(t.TempDir(), "addr")
	cmd := exec.Command(os.Args[0])
	if len(prefix) > 0 {
		cmd = exec.Command(prefix[0], append(prefix[1:], os.Args[0])...)
	}
	cmd.Env = append(os.Environ(), serveEnv+"=1")
	for k, v := range testEnv(env, addrFile) {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start server process: %v", err)
	}
	p := &process{cmd: cmd, done: make(chan struct{}), log: &logLines{}}
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.log.add(sc.Text())
			if testing.Verbose() {
				fmt.Fprintln(os.Stderr, "server:", sc.Text())
			}
		}
		cmd.Wait()
	}()
	t.Cleanup(p.kill)
	p.URL = "http://" + waitAddrFile(t, addrFile, p.done)
	return p
}

// kill ends the process with SIGKILL, as a crash or a scaled-in instance
// would: nothing runs on its way out. Its open connections are reset by the
// kernel.
func (p *process) kill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// publishRetrying publishes, retrying while the broker answers 503 (Redis is
// restarting); any other answer but 201 fails the test.
func publishRetrying(t *testing.T, base, id, status string) update {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		res := do(t, http.MethodPost, base+"/orders/"+id+"/events", jsonHeader, `{"status":"`+status+`"}`)
		switch {
		case res.StatusCode == http.StatusCreated:
			var u update
			if err := json.NewDecoder(res.Body).Decode(&u); err != nil {
				t.Fatal(err)
			}
			return u
		case res.StatusCode == http.StatusServiceUnavailable && time.Now().Before(deadline):
			if res.Header.Get("Retry-After") == "" {
				t.Fatalf("503 without Retry-After: %s", bodyOf(res))
			}
			time.Sleep(100 * time.Millisecond)
		default:
			t.Fatalf("publish %s: %d %s", status, res.StatusCode, bodyOf(res))
		}
	}
}

func TestRedisInstancesShareOrdersAcrossProcesses(t *testing.T) {
	srv := redistest.Start(t)
	env := map[string]string{"REDIS_URL": srv.URL(), "HEARTBEAT_INTERVAL": "200ms"}
	a, b := startProcess(t, env), startProcess(t, env)
	id := newID()

	// Subscribe on A, publish on B.
	onA := openStream(t, a.URL+"/orders/"+id+"/stream", nil)
	var got []event
	for _, s := range happyPath[:2] {
		publish(t, b.URL, id, s)
		got = append(got, onA.next(t))
	}
	if want := happyPath[:2]; strings.Join(statusesOf(got), ",") != strings.Join(want, ",") {
		t.Fatalf("on A: %v, want %v", statusesOf(got), want)
	}

	// Kill A's process; the order goes on meanwhile on B.
	a.kill()
	if _, err := onA.nextOrErr(5 * time.Second); err == nil {
		t.Fatal("A's stream delivered an event after A was killed")
	}
	for _, s := range happyPath[2:4] {
		publish(t, b.URL, id, s)
	}

	// Resume on B with the last id A delivered: exactly the missing events,
	// then live ones, then the end.
	last := got[len(got)-1].ID
	onB := openStream(t, b.URL+"/orders/"+id+"/stream", http.Header{"Last-Event-ID": {last}})
	var resumed []event
	for range happyPath[2:4] {
		resumed = append(resumed, onB.next(t))
	}
	for _, s := range happyPath[4:] {
		publish(t, b.URL, id, s)
		resumed = append(resumed, onB.next(t))
	}
	onB.expectEnd(t)
	all := append(got, resumed...)
	if strings.Join(statusesOf(all), ",") != strings.Join(happyPath, ",") {
		t.Fatalf("A then B delivered %v, want %v", statusesOf(all), happyPath)
	}
	for i := 1; i < len(all); i++ {
		if all[i].ID == all[i-1].ID {
			t.Fatalf("duplicate id %s", all[i].ID)
		}
	}
	// Every instance answers the same latest status.
	res := get(t, b.URL+"/orders/"+id)
	if res.StatusCode != http.StatusOK || !strings.Contains(bodyOf(res), `"Delivered"`) {
		t.Fatalf("GET on B after the end: %d", res.StatusCode)
	}
}

func TestRedisRacingPublishersAcrossProcesses(t *testing.T) {
	srv := redistest.Start(t)
	env := map[string]string{"REDIS_URL": srv.URL()}
	procs := []*process{startProcess(t, env), startProcess(t, env)}
	// In each round no candidate may follow another, so exactly one wins.
	rounds := [][]string{{"Created"}, {"Packed"}, {"Shipped", "Cancelled"}, {"OutForDelivery"}, {"Delivered", "Cancelled"}}
	for range 10 {
		id := newID()
		for _, candidates := range rounds {
			var mu sync.Mutex
			codes := map[int]int{}
			winner := ""
			var wg sync.WaitGroup
			for i := range 8 {
				p, status := procs[i%len(procs)], candidates[(i/2)%len(candidates)]
				wg.Go(func() {
					req, _ := http.NewRequest(http.MethodPost, p.URL+"/orders/"+id+"/events", strings.NewReader(`{"status":"`+status+`"}`))
					req.Header.Set("Content-Type", "application/json")
					res, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Errorf("publish: %v", err)
						return
					}
					res.Body.Close()
					mu.Lock()
					defer mu.Unlock()
					codes[res.StatusCode]++
					if res.StatusCode == http.StatusCreated {
						winner = status
					}
				})
			}
			wg.Wait()
			if codes[http.StatusCreated] != 1 || codes[http.StatusCreated]+codes[http.StatusConflict] != 8 {
				t.Fatalf("round %v: answers %v, want one 201 and seven 409", candidates, codes)
			}
			if winner == "Delivered" || winner == "Cancelled" {
				break
			}
		}
	}
}

// TestRedisRestartMidStream restarts redis-server (with an append-only file)
// while streams are open on two instances and publishes go on: the streams
// keep their heartbeats through the outage, publishes get 503 with
// Retry-After meanwhile, and every acknowledged event arrives exactly once,
// in order, on both instances.
func TestRedisRestartMidStream(t *testing.T) {
	srv := redistest.Start(t, redistest.AppendOnly("always"))
	env := map[string]string{"REDIS_URL": srv.URL(), "HEARTBEAT_INTERVAL": "100ms"}
	a, b := startProcess(t, env), startProcess(t, env)
	id := newID()
	onA := openStream(t, a.URL+"/orders/"+id+"/stream", nil)
	onB := openStream(t, b.URL+"/orders/"+id+"/stream", nil)

	// Read both streams all along, so that heartbeats are seen as they come.
	evA, evB := readAll(onA), readAll(onB)
	publish(t, a.URL, id, happyPath[0])
	publish(t, b.URL, id, happyPath[1])

	srv.Stop()
	// Down: publishing is refused with 503 + Retry-After, health says 503,
	// and the open streams still get heartbeats.
	res := do(t, http.MethodPost, a.URL+"/orders/"+id+"/events", jsonHeader, `{"status":"Packed"}`)
	if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" {
		t.Fatalf("publish while Redis is down: %d Retry-After=%q %s", res.StatusCode, res.Header.Get("Retry-After"), bodyOf(res))
	}
	if ct := res.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("publish while Redis is down: Content-Type %q", ct)
	}
	if res := get(t, b.URL+"/healthz"); res.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("healthz while Redis is down: %d", res.StatusCode)
	}
	for name, s := range map[string]*stream{"A": onA, "B": onB} {
		beats := s.keepAlives()
		waitFor(t, "a heartbeat on "+name+" while Redis is down", func() bool { return s.keepAlives() > beats })
	}

	srv.Restart()
	for _, s := range happyPath[2:] {
		publishRetrying(t, a.URL, id, s)
	}
	for name, ch := range map[string]<-chan event{"A": evA, "B": evB} {
		var got []event
		for ev := range ch { // closed when the stream ends
			got = append(got, ev)
		}
		if strings.Join(statusesOf(got), ",") != strings.Join(happyPath, ",") {
			t.Fatalf("on %s across the restart: %v, want %v", name, statusesOf(got), happyPath)
		}
	}

	// The history survived the restart.
	full := openStream(t, b.URL+"/orders/"+id+"/stream", nil)
	var hist []event
	for range happyPath {
		hist = append(hist, full.next(t))
	}
	full.expectEnd(t)
	if strings.Join(statusesOf(hist), ",") != strings.Join(happyPath, ",") {
		t.Fatalf("history after the restart: %v", statusesOf(hist))
	}
}

// readAll reads s in the background until it ends, cleanly or not (or 30s
// pass), and sends its events on the returned channel, which it then closes.
func readAll(s *stream) <-chan event {
	ch := make(chan event, 16)
	go func() {
		defer close(ch)
		for {
			ev, err := s.nextOrErr(30 * time.Second)
			if err != nil {
				return
			}
			ch <- ev
		}
	}()
	return ch
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("gave up waiting for %s", what)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
