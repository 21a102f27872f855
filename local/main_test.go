package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderstream/orderstream/shared/sse"
)

// These tests run the real server through run() on a loopback port and talk
// to it over HTTP, reading streams with the sse decoder, as a client would.

// server is one run() of the local server.
type server struct {
	URL    string
	cancel context.CancelFunc // starts the shutdown (SIGTERM), without waiting
	stop   func() error       // cancels run's context and returns what run returned
	log    *logLines          // what it logged so far
}

// logLines collects a server's log lines.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, line)
}

func (l *logLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// count returns how many lines contain every one of parts.
func (l *logLines) count(parts ...string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
lines:
	for _, line := range l.lines {
		for _, p := range parts {
			if !strings.Contains(line, p) {
				continue lines
			}
		}
		n++
	}
	return n
}

// skipShort skips a system test under -short (the fast inner loop, make
// test-fast), saying what it needs; make test runs it, and never skips it.
func skipShort(t *testing.T, what string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("system test (%s): skipped by -short; make test runs it", what)
	}
}

// testEnv is the environment tests run the server with: env, on a free
// loopback port unless env names one (to restart a server on the same
// port), the address written to addrFile, and no shutdown drain unless env
// asks for one, so that stopping a server takes no SHUTDOWN_DRAIN.
func testEnv(env map[string]string, addrFile string) map[string]string {
	out := map[string]string{"ADDR": "127.0.0.1:0", "ADDR_FILE": addrFile, "SHUTDOWN_DRAIN": "0s"}
	for k, v := range env {
		out[k] = v
	}
	return out
}

// waitAddrFile waits until the server writes its address to path, or
// exited is closed.
func waitAddrFile(t *testing.T, path string, exited <-chan struct{}) string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if b, err := os.ReadFile(path); err == nil {
			return strings.TrimSpace(string(b))
		}
		select {
		case <-exited:
			t.Fatal("the server exited before listening")
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the server did not start listening")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startServer runs the server with testEnv(env) and waits until /healthz
// answers.
func startServer(t *testing.T, env map[string]string) *server {
	t.Helper()
	addrFile := filepath.Join(t.TempDir(), "addr")
	env = testEnv(env, addrFile)
	log := &logLines{}
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	exited := make(chan struct{})
	go func() {
		err := run(ctx, []string{"orderstream"}, func(k string) string { return env[k] }, pw)
		pw.Close()
		done <- err
		close(exited)
	}()
	go func() {
		// Pass the log on to the test output.
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			log.add(sc.Text())
			if testing.Verbose() {
				fmt.Fprintln(os.Stderr, sc.Text())
			}
		}
		io.Copy(io.Discard, pr)
	}()
	s := &server{log: log, cancel: cancel, stop: func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(20 * time.Second):
			return fmt.Errorf("run did not return 20s after its context was cancelled")
		}
	}}
	s.URL = "http://" + waitAddrFile(t, addrFile, exited)
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			if err := s.stop(); err != nil {
				t.Errorf("run: %v", err)
			}
		}
	})
	orig := s.stop
	s.stop = func() error { stopped = true; return orig() }
	res := get(t, s.URL+"/healthz")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("healthz: %d", res.StatusCode)
	}
	return s
}

func get(t *testing.T, url string) *http.Response {
	t.Helper()
	return do(t, http.MethodGet, url, nil, "")
}

// do sends a request and reads the whole body into the response (Body is
// replaced by a reader over it), so callers can't leak connections.
func do(t *testing.T, method, url string, header http.Header, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body == "" {
		req.Body = nil
	}
	for k, v := range header {
		req.Header[k] = v
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	b, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	res.Body = io.NopCloser(strings.NewReader(string(b)))
	return res
}

func bodyOf(res *http.Response) string {
	b, _ := io.ReadAll(res.Body)
	return string(b)
}

var jsonHeader = http.Header{"Content-Type": {"application/json"}}

type update struct {
	OrderID   string    `json:"orderId"`
	Status    string    `json:"status"`
	Timestamp time.Time `json:"timestamp"`
}

func publish(t *testing.T, base, id, status string) update {
	t.Helper()
	res := do(t, http.MethodPost, base+"/orders/"+id+"/events", jsonHeader, `{"status":"`+status+`"}`)
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("publish %s: %d %s", status, res.StatusCode, bodyOf(res))
	}
	var u update
	if err := json.NewDecoder(res.Body).Decode(&u); err != nil {
		t.Fatal(err)
	}
	return u
}

// stream is an open event stream.
type stream struct {
	res      *http.Response
	dec      *sse.Decoder
	cancel   context.CancelFunc
	mu       sync.Mutex
	comments []string
}

// openStream starts GET /orders/{id}/stream with the given headers.
func openStream(t *testing.T, url string, header http.Header) *stream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("open stream: %v", err)
	}
	s := &stream{res: res, dec: sse.NewDecoder(res.Body), cancel: cancel}
	s.dec.OnComment = func(c string) {
		s.mu.Lock()
		s.comments = append(s.comments, c)
		s.mu.Unlock()
	}
	t.Cleanup(s.close)
	return s
}

func (s *stream) close() {
	s.cancel()
	s.res.Body.Close()
}

func (s *stream) keepAlives() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.comments {
		if c == "keep-alive" {
			n++
		}
	}
	return n
}

// event is one decoded order-update event.
type event struct {
	ID     string
	Update update
}

// next reads the next event, failing the test if none comes within 10s.
func (s *stream) next(t *testing.T) event {
	t.Helper()
	ev, err := s.nextOrErr(10 * time.Second)
	if err != nil {
		t.Fatalf("reading the stream: %v", err)
	}
	return ev
}

func (s *stream) nextOrErr(timeout time.Duration) (event, error) {
	type result struct {
		m   sse.Message
		err error
	}
	ch := make(chan result, 1)
	go func() {
		m, err := s.dec.Next()
		ch <- result{m, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return event{}, r.err
		}
		if r.m.Event != "order-update" {
			return event{}, fmt.Errorf("event type %q, want order-update", r.m.Event)
		}
		var u update
		if err := json.Unmarshal([]byte(r.m.Data), &u); err != nil {
			return event{}, fmt.Errorf("data %q: %w", r.m.Data, err)
		}
		return event{ID: r.m.ID, Update: u}, nil
	case <-time.After(timeout):
		s.close() // unblocks the reader goroutine
		<-ch
		return event{}, fmt.Errorf("no event within %v", timeout)
	}
}

// expectEnd reads until the stream ends and fails if an event comes first.
func (s *stream) expectEnd(t *testing.T) {
	t.Helper()
	ev, err := s.nextOrErr(10 * time.Second)
	if err == nil {
		t.Fatalf("want the stream to end, got event %s %s", ev.ID, ev.Update.Status)
	}
	if err != io.EOF {
		t.Fatalf("want a clean end of stream (EOF), got %v", err)
	}
}

func statusesOf(evs []event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.Update.Status
	}
	return out
}

var happyPath = []string{"Created", "PaymentConfirmed", "Packed", "Shipped", "OutForDelivery", "Delivered"}

func newID() string { return uuid.NewString() }
