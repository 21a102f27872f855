package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestStreamsInHandlers runs the stream tests again with streams kept in
// their handlers (as off Linux, or where no registry could be made): every
// stream behaviour holds both ways.
func TestStreamsInHandlers(t *testing.T) {
	streamsInHandlers = true
	t.Cleanup(func() { streamsInHandlers = false })
	for _, tt := range []struct {
		name string
		fn   func(*testing.T)
	}{
		{"StreamHeadersRetryAndFirstEvent", TestStreamHeadersRetryAndFirstEvent},
		{"StreamStartsWithRetryField", TestStreamStartsWithRetryField},
		{"HistoryLiveAndTerminalEnd", TestHistoryLiveAndTerminalEnd},
		{"ResumeFromEveryEventID", TestResumeFromEveryEventID},
		{"ManySubscribersEachGetEveryEvent", TestManySubscribersEachGetEveryEvent},
		{"Heartbeats", TestHeartbeats},
		{"ShutdownEndsStreams", TestShutdownEndsStreams},
		{"StreamCyclesLeaveNoGoroutines", TestStreamCyclesLeaveNoGoroutines},
	} {
		t.Run(tt.name, tt.fn)
	}
}

// openRaw opens a stream on a plain connection and reads its head and
// retry: field, with no goroutine on the client's side.
func openRaw(t *testing.T, addr, path string) (net.Conn, *http.Response) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(conn, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n")
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("stream head: %v", err)
	}
	if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "retry:") {
		t.Fatalf("stream starts with %q, %v; want retry:", line, err)
	}
	return conn, res
}

// TestIdleStreamsHoldNoGoroutines: on the local server a live stream is a
// registered socket, answered with Connection: close and a body that is
// plain SSE (no chunking); a thousand idle streams add no more than a few
// goroutines, not one or two each.
func TestIdleStreamsHoldNoGoroutines(t *testing.T) {
	s := startServer(t, nil)
	addr := strings.TrimPrefix(s.URL, "http://")
	id := newID()
	publish(t, s.URL, id, "Created")
	warm, res := openRaw(t, addr, "/orders/"+id+"/stream")
	if !res.Close || len(res.TransferEncoding) != 0 {
		t.Fatalf("Connection: close %v, Transfer-Encoding %v; want a body ended by the close, unchunked", res.Close, res.TransferEncoding)
	}
	warm.Close()
	baseline := settledGoroutines()
	const n = 1000
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range n {
		c, _ := openRaw(t, addr, "/orders/"+newID()+"/stream")
		conns = append(conns, c)
	}
	if got := settledGoroutines(); got > baseline+10 {
		t.Fatalf("goroutines: %d before, %d with %d idle streams open; want a small constant more", baseline, got, n)
	}
	// They are live: one of them still gets its order's events.
	last := newID()
	c, _ := openRaw(t, addr, "/orders/"+last+"/stream")
	conns = append(conns, c)
	u := publish(t, s.URL, last, "Created")
	buf := make([]byte, 4096)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := ""
	for !strings.Contains(got, u.OrderID) {
		k, err := c.Read(buf)
		if err != nil {
			t.Fatalf("a registered stream among %d: %v after %q", n, err, got)
		}
		got += string(buf[:k])
	}
}
