package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/orderstream/orderstream/shared/sockets/netnstest"
)

// setOpenFileLimit sets the process's open-file limit, soft and hard, to
// v (for the server process of TestOpenFileLimitIsABudget).
func setOpenFileLimit(v string) error {
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return err
	}
	return syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: n, Max: n})
}

// streamAnswer is how the server answered one stream request.
type streamAnswer struct {
	status     int
	retryAfter bool
	closes     bool // Connection: close
	conn       net.Conn
	err        error
}

// askStream opens a stream on a connection of its own and reads the
// answer's head (for a 200, the retry: line too), within wait.
func askStream(addr, path string, wait time.Duration) streamAnswer {
	conn, err := net.DialTimeout("tcp", addr, wait)
	if err != nil {
		return streamAnswer{err: err}
	}
	conn.SetDeadline(time.Now().Add(wait))
	if _, err := io.WriteString(conn, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		conn.Close()
		return streamAnswer{err: err}
	}
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		return streamAnswer{err: fmt.Errorf("no answer: %w", err)}
	}
	a := streamAnswer{status: res.StatusCode, retryAfter: res.Header.Get("Retry-After") != "", closes: res.Close}
	if res.StatusCode != http.StatusOK {
		io.Copy(io.Discard, res.Body)
		conn.Close()
		return a
	}
	if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "retry:") {
		conn.Close()
		return streamAnswer{err: fmt.Errorf("stream starts with %q, %v", line, err)}
	}
	conn.SetDeadline(time.Time{})
	a.conn = conn
	return a
}

// TestOpenFileLimitIsABudget: under a low open-file limit, more streams
// than it allows, opened at once, are each answered within seconds: 200,
// or 503 with Retry-After and the connection closed (a refusal holds no
// descriptor), never nothing. /healthz and publishes are answered
// meanwhile, and new streams are served once others leave. The startup
// log says the cap and where it came from. (Before the budget: 75 of 320
// got no answer at all, and /healthz none within 2 s.)
func TestOpenFileLimitIsABudget(t *testing.T) {
	skipShort(t, "a server process under an open-file limit of 256")
	const files, streams = 256, 320
	p := startProcess(t, map[string]string{nofileEnv: strconv.Itoa(files)})
	addr := strings.TrimPrefix(p.URL, "http://")
	if n := p.log.count("listening", "max_streams=", "open-file limit "+strconv.Itoa(files)); n != 1 {
		t.Fatalf("the startup log does not say the cap and that it comes from the open-file limit:\n%s", p.log)
	}
	id := newID()
	path := "/orders/" + id + "/stream"
	answers := make([]streamAnswer, streams)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range answers {
		wg.Go(func() { answers[i] = askStream(addr, path, 30*time.Second) })
	}
	// Meanwhile, the server still answers its health check and publishes.
	var others sync.WaitGroup
	var healthz, published atomic.Int32
	others.Go(func() {
		client := &http.Client{Timeout: 30 * time.Second}
		for range 5 {
			if res, err := client.Get(p.URL + "/healthz"); err == nil {
				res.Body.Close()
				if res.StatusCode == http.StatusOK {
					healthz.Add(1)
				}
			}
			res, err := client.Post(p.URL+"/orders/"+newID()+"/events", "application/json", strings.NewReader(`{"status":"Created"}`))
			if err == nil {
				res.Body.Close()
				if res.StatusCode == http.StatusCreated {
					published.Add(1)
				}
			}
		}
	})
	wg.Wait()
	storm := time.Since(start)
	others.Wait()
	var served []net.Conn
	refused := 0
	for i, a := range answers {
		switch {
		case a.err != nil:
			t.Errorf("stream %d: %v", i, a.err)
		case a.status == http.StatusOK:
			served = append(served, a.conn)
		case a.status == http.StatusServiceUnavailable && a.retryAfter && a.closes:
			refused++
		default:
			t.Errorf("stream %d: %d (Retry-After %v, Connection: close %v), want 200, or 503 with Retry-After that closes the connection", i, a.status, a.retryAfter, a.closes)
		}
	}
	defer func() {
		for _, c := range served {
			c.Close()
		}
	}()
	backoffs := p.log.count("Accept error")
	t.Logf("%d streams under an open-file limit of %d: %d served, %d refused, in %v; accept backed off %d times; %d/5 health checks and %d/5 publishes answered meanwhile",
		streams, files, len(served), refused, storm.Round(time.Millisecond), backoffs, healthz.Load(), published.Load())
	if len(served) == 0 || refused == 0 || len(served) >= files {
		t.Fatalf("%d served and %d refused, want some of each and fewer served than the %d files", len(served), refused, files)
	}
	if healthz.Load() != 5 || published.Load() != 5 {
		t.Fatalf("%d/5 health checks and %d/5 publishes answered during the storm", healthz.Load(), published.Load())
	}
	if t.Failed() {
		return
	}
	// At the cap, the rest of the server still has room.
	if res := get(t, p.URL+"/healthz"); res.StatusCode != http.StatusOK {
		t.Fatalf("/healthz at the cap: %d", res.StatusCode)
	}
	// The served streams are live: they get the order's events.
	publish(t, p.URL, id, "Created")
	for _, c := range served[:10] {
		c.SetReadDeadline(time.Now().Add(15 * time.Second))
		buf := make([]byte, 1024)
		got := ""
		for !strings.Contains(got, `"Created"`) {
			n, err := c.Read(buf)
			if err != nil {
				t.Fatalf("a served stream: %v after %q", err, got)
			}
			got += string(buf[:n])
		}
	}
	// Once some leave, new streams are served.
	for _, c := range served[:20] {
		c.Close()
	}
	served = served[20:]
	for range 10 {
		var a streamAnswer
		waitFor(t, "a new stream to be served once others left", func() bool {
			a = askStream(addr, path, 10*time.Second)
			return a.status == http.StatusOK
		})
		served = append(served, a.conn)
	}
}

// TestUnreadClientBytesStillGetTheEnd: a client that keeps sending bytes
// the server does not read (up to what a stream reads and drops) still
// reads the terminal event and a clean EOF: the server shuts its write side
// down and reads on until the client's EOF, where closing with the
// client's bytes unread would reset the connection and could drop the
// last frames on their way.
func TestUnreadClientBytesStillGetTheEnd(t *testing.T) {
	s := startServer(t, nil)
	addr := strings.TrimPrefix(s.URL, "http://")
	for round := range 5 {
		id := newID()
		conn, _ := openRaw(t, addr, "/orders/"+id+"/stream")
		stop := make(chan struct{})
		talked := make(chan struct{})
		go func() {
			defer close(talked)
			junk := bytes.Repeat([]byte("x"), 256)
			for range 160 { // 40 KiB in all: under what a stream reads and drops
				select {
				case <-stop:
					return
				default:
				}
				if _, err := conn.Write(junk); err != nil {
					return
				}
				time.Sleep(200 * time.Microsecond)
			}
		}()
		for _, st := range happyPath {
			publish(t, s.URL, id, st)
		}
		conn.SetReadDeadline(time.Now().Add(15 * time.Second))
		body, err := io.ReadAll(conn)
		close(stop)
		<-talked
		conn.Close()
		if err != nil {
			t.Fatalf("round %d: read %q, then %v; want the terminal event and a clean EOF", round, body[max(0, len(body)-60):], err)
		}
		if !bytes.Contains(body, []byte(`"Delivered"`)) || !bytes.HasSuffix(body, []byte("\n\n")) {
			t.Fatalf("round %d: the stream ended without its terminal event: ...%q", round, body[max(0, len(body)-60):])
		}
	}
}

// A client that vanishes (its network gone: no FIN, no RST) is let go
// within about STREAM_PEER_TIMEOUT, through the local server's setting,
// where the kernel alone would hold it for minutes. The server runs in a
// network namespace of its own, the client in another, joined by a veth
// pair; the client vanishes when its end of the pair goes down, and the
// server's log line for the stream, written when it ends, says when.
func TestVanishedClientEndsWithinPeerTimeout(t *testing.T) {
	skipShort(t, "network namespaces")
	netnstest.Usable(t)
	const peerTimeout = 2 * time.Second
	// Generous: the kernel checks at its timers' pace, and the box is
	// shared; without the timeout it takes minutes.
	const within = peerTimeout + 15*time.Second
	for _, tc := range []struct {
		name, setting, heartbeat string
	}{
		{"idle", "2s", "1h"},
		{"heartbeats", "2s", "200ms"},
		{"idle, kernel's own", "0", "1h"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			n := netnstest.NewPair(t)
			p := startProcess(t, map[string]string{"ADDR": netnstest.ServerIP.String() + ":0", "STREAM_PEER_TIMEOUT": tc.setting, "HEARTBEAT_INTERVAL": tc.heartbeat},
				"ip", "netns", "exec", n.Server)
			path := "/orders/" + newID() + "/stream"
			var conn net.Conn
			netnstest.In(t, n.Client, func() (err error) {
				conn, err = net.DialTimeout("tcp", strings.TrimPrefix(p.URL, "http://"), 10*time.Second)
				return err
			})
			defer conn.Close()
			io.WriteString(conn, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n")
			conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			if res, err := http.ReadResponse(bufio.NewReader(conn), nil); err != nil || res.StatusCode != http.StatusOK {
				t.Fatalf("stream: %v %v", res, err)
			}
			time.Sleep(100 * time.Millisecond)
			n.ClientDown(t)
			down := time.Now()
			ended := func() bool { return p.log.count("path="+path, "status=200") == 1 }
			if tc.setting == "0" {
				time.Sleep(3 * peerTimeout)
				if ended() {
					t.Fatalf("the stream ended %v after its client vanished, with no peer timeout", time.Since(down))
				}
				return
			}
			for !ended() {
				if time.Since(down) > within {
					t.Fatalf("the stream still open %v after its client vanished (STREAM_PEER_TIMEOUT %s)", time.Since(down), tc.setting)
				}
				time.Sleep(50 * time.Millisecond)
			}
			t.Logf("let go %v after the client's link went down (STREAM_PEER_TIMEOUT %s)", time.Since(down).Round(time.Millisecond), tc.setting)
		})
	}
}
