package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/orderstream/orderstream/shared/sse"
)

// The raw server speaks just enough HTTP/1.1 for the same clients (k6's
// scripts, bench) to use it as they use orderstream:
//
//	GET  /orders/{id}/stream              the frames so far, then live ones
//	POST /orders/{id}/simulate?interval=  Created..Delivered, one per interval
//	GET  /healthz
//
// What it leaves out is everything orderstream does besides moving bytes: no
// broker, no validation, no net/http, no chunked encoding, no flush per
// frame. It comes in three forms (-shape), because which one is fastest
// depends on the box (cores, connections) and on the load (one event at a
// time, or bursts), and orderstream is measured against the best of them:
//
//   - loop: a frame is one write(2) per connection, from the publishing
//     goroutine, straight down the list of subscribers; no goroutine per
//     stream.
//   - goroutine: each connection has a goroutine and a channel of frames;
//     the publisher only queues, and the connections' goroutines write in
//     parallel (a full queue cuts the stream, as a slow subscriber).
//   - writev: the goroutine form, but a connection's goroutine takes every
//     frame queued for it when it wakes and writes them in one writev(2)
//     (net.Buffers): a burst costs a syscall per socket, not per frame, as
//     orderstream's writers do.
//
// Each is as close to the box's limit as a fan-out of its shape gets, so
// orderstream's figures over the best of them say how much of the box the
// service uses well.
func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address (loopback only unless you mean it)")
	heartbeat := fs.Duration("heartbeat", 15*time.Second, "keep-alive comment interval")
	addrFile := fs.String("addr-file", os.Getenv("ADDR_FILE"), "once listening, write the address to this file, as orderstream's -addr-file ($ADDR_FILE)")
	fault := fs.String("fault", "", "misbehave on purpose, to show that the suite's thresholds fail: "+
		"gap (live subscribers miss Packed) or duplicate (live subscribers get every frame twice)")
	shape := fs.String("shape", shapeLoop, "how frames reach the sockets: loop (one writing loop, no goroutine per stream), "+
		"goroutine (a goroutine and a channel per connection) or writev (the same, writing every queued frame in one writev)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *fault != "" && *fault != faultGap && *fault != faultDuplicate {
		return fmt.Errorf("-fault %q: want gap or duplicate", *fault)
	}
	if !slices.Contains(shapes, *shape) {
		return fmt.Errorf("-shape %q: want one of %s", *shape, strings.Join(shapes, ", "))
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	fmt.Printf("level=INFO msg=listening addr=%s broker=raw shape=%s\n", ln.Addr(), *shape)
	if *addrFile != "" {
		if err := writeAddrFile(*addrFile, ln.Addr().String()); err != nil {
			ln.Close()
			return fmt.Errorf("addr file: %w", err)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv := newRawServer()
	srv.fault = *fault
	srv.shape = *shape
	return srv.serve(ctx, ln, *heartbeat)
}

// The faults a raw server can be told to commit.
const (
	faultGap       = "gap"
	faultDuplicate = "duplicate"
)

// The shapes of a raw server's fan-out (see serve).
const (
	shapeLoop      = "loop"
	shapeGoroutine = "goroutine"
	shapeWritev    = "writev"
)

var shapes = []string{shapeLoop, shapeGoroutine, shapeWritev}

func newRawServer() *rawServer { return &rawServer{orders: make(map[string]*rawOrder)} }

// serve accepts until ctx ends.
func (s *rawServer) serve(ctx context.Context, ln net.Listener, heartbeat time.Duration) error {
	go s.heartbeats(ctx, heartbeat)
	go func() { <-ctx.Done(); ln.Close() }()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		go s.handle(c)
	}
}

type rawServer struct {
	mu     sync.Mutex
	orders map[string]*rawOrder
	fault  string // "", faultGap or faultDuplicate
	shape  string // shapeLoop (the zero value's), shapeGoroutine or shapeWritev
}

type rawOrder struct {
	mu      sync.Mutex
	subs    []rawStream
	history [][]byte
	done    bool
}

// rawStream is one subscriber's connection in either shape. send hands it a
// frame in order (false once the stream is dead); end closes it after what
// it was sent; dead says whether it may be pruned.
type rawStream interface {
	send(b []byte) bool
	end()
	dead() bool
}

func (s *rawServer) newStream(c net.Conn) rawStream {
	switch s.shape {
	case shapeGoroutine:
		return newQueuedSub(c, false).start()
	case shapeWritev:
		return newQueuedSub(c, true).start()
	}
	return &rawSub{conn: c}
}

// rawSub is one stream of the loop shape: the connection and a lock so that
// a heartbeat and a frame never interleave.
type rawSub struct {
	mu     sync.Mutex
	conn   net.Conn
	closed bool
}

const writeTimeout = 10 * time.Second

func (s *rawSub) send(b []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	_ = s.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := s.conn.Write(b); err != nil {
		s.closed = true
		s.conn.Close()
		return false
	}
	return true
}

func (s *rawSub) end() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.conn.Close()
}

func (s *rawSub) dead() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// queuedSub is one stream of the goroutine and writev shapes: its goroutine
// writes what the channel brings, so a publisher never waits on a socket. A
// nil frame means "close once what is queued is written".
type queuedSub struct {
	conn    net.Conn
	frames  chan []byte
	quit    chan struct{} // closed by cut: the goroutine stops at once
	cutOnce sync.Once
	gone    atomic.Bool
	// batch: take every frame queued when the goroutine wakes and write
	// them in one writev (the writev shape); else one write per frame.
	batch bool
	// writes counts the write or writev calls made, so that a test can
	// tell the two shapes apart.
	writes atomic.Int64
}

// queueFrames is how many frames a stream may have waiting: more than a
// round of statuses plus heartbeats, few enough that a stalled reader is cut
// rather than buffered without end.
const queueFrames = 64

func newQueuedSub(c net.Conn, batch bool) *queuedSub {
	return &queuedSub{conn: c, frames: make(chan []byte, queueFrames), quit: make(chan struct{}), batch: batch}
}

// start runs the stream's goroutine, whose owner is the stream: it returns
// when the stream ends (nil frame), is cut, or its connection fails.
func (q *queuedSub) start() *queuedSub {
	go q.run()
	return q
}

func (q *queuedSub) run() {
	defer q.cut()
	var bufs net.Buffers
	for {
		var b []byte
		select {
		case <-q.quit:
			return
		case b = <-q.frames:
		}
		if b == nil {
			return
		}
		bufs = append(bufs[:0], b)
		end := false
		if q.batch {
			bufs, end = q.drain(bufs)
		}
		_ = q.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
		q.writes.Add(1)
		var err error
		if len(bufs) == 1 {
			_, err = q.conn.Write(bufs[0])
		} else {
			// net.Buffers on a *net.TCPConn is one writev(2) (in pieces of
			// at most IOV_MAX buffers); WriteTo consumes its copy of the slice.
			v := bufs
			_, err = v.WriteTo(q.conn)
		}
		if err != nil || end {
			return
		}
	}
}

// drain appends the frames already queued to bufs, without waiting, and
// says whether it met the end (a nil frame).
func (q *queuedSub) drain(bufs net.Buffers) (net.Buffers, bool) {
	for {
		select {
		case b := <-q.frames:
			if b == nil {
				return bufs, true
			}
			bufs = append(bufs, b)
		default:
			return bufs, false
		}
	}
}

func (q *queuedSub) send(b []byte) bool {
	if q.gone.Load() {
		return false
	}
	select {
	case q.frames <- b:
		return true
	default: // a full queue: the reader is too slow to keep
		q.cut()
		return false
	}
}

func (q *queuedSub) end() {
	if !q.send(nil) {
		q.cut()
	}
}

func (q *queuedSub) cut() {
	q.cutOnce.Do(func() {
		q.gone.Store(true)
		close(q.quit)
		q.conn.Close()
	})
}

func (q *queuedSub) dead() bool { return q.gone.Load() }

func (s *rawServer) order(id string) *rawOrder {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.orders[id]
	if o == nil {
		o = &rawOrder{}
		s.orders[id] = o
	}
	return o
}

var streamHead = []byte("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n" +
	"X-Accel-Buffering: no\r\nConnection: close\r\n\r\n" + "retry: 3000\n\n")

func (s *rawServer) handle(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	req, err := http.ReadRequest(bufio.NewReaderSize(c, 1024))
	if err != nil {
		c.Close()
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	parts := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
	switch {
	case req.Method == http.MethodGet && req.URL.Path == "/healthz":
		reply(c, 200, `{"status":"ok"}`)
	case req.Method == http.MethodGet && len(parts) == 3 && parts[0] == "orders" && parts[2] == "stream":
		s.subscribe(c, parts[1])
	case req.Method == http.MethodPost && len(parts) == 3 && parts[0] == "orders" && parts[2] == "simulate":
		interval, err := time.ParseDuration(req.URL.Query().Get("interval"))
		if err != nil {
			interval = 2 * time.Second
		}
		n := s.simulate(parts[1], interval)
		b, _ := json.Marshal(map[string]any{"orderId": parts[1], "published": n})
		reply(c, 200, string(b))
	default:
		reply(c, 404, `{"title":"Not Found","status":404}`)
	}
}

func reply(c net.Conn, status int, body string) {
	defer c.Close()
	fmt.Fprintf(c, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		status, http.StatusText(status), len(body), body)
}

// subscribe sends the head and history under the order's lock, the same lock
// simulate appends under, so no frame is missed or sent twice; then the
// connection waits in the list without a goroutine of its own.
func (s *rawServer) subscribe(c net.Conn, id string) {
	o := s.order(id)
	sub := s.newStream(c)
	o.mu.Lock()
	defer o.mu.Unlock()
	buf := append([]byte(nil), streamHead...)
	for _, f := range o.history {
		buf = append(buf, f...)
	}
	if !sub.send(buf) || o.done {
		sub.end()
		return
	}
	o.subs = append(o.subs, sub)
}

var statuses = []string{"Created", "PaymentConfirmed", "Packed", "Shipped", "OutForDelivery", "Delivered"}

// simulate publishes Created..Delivered, writing each frame to every
// subscriber in turn as fast as the sockets take it, then ends the streams.
func (s *rawServer) simulate(id string, interval time.Duration) int {
	o := s.order(id)
	var lastMS, seq int64
	for i, status := range statuses {
		if i > 0 && interval > 0 {
			time.Sleep(interval)
		}
		now := time.Now().UTC()
		ms := now.UnixMilli()
		if ms == lastMS {
			seq++
		} else {
			lastMS, seq = ms, 0
		}
		data, _ := json.Marshal(struct {
			OrderID   string `json:"orderId"`
			Status    string `json:"status"`
			Timestamp string `json:"timestamp"`
		}{id, status, now.Format(time.RFC3339Nano)})
		frame, err := sse.AppendMessage(nil, sse.Message{
			ID: strconv.FormatInt(ms, 10) + "-" + strconv.FormatInt(seq, 10), Event: "order-update", Data: string(data),
		})
		if err != nil {
			log.Printf("frame: %v", err)
			return i
		}
		o.mu.Lock()
		o.history = append(o.history, frame)
		subs := o.subs
		last := i == len(statuses)-1
		if last {
			o.done, o.subs = true, nil
		}
		o.mu.Unlock()
		out := frame
		switch {
		case s.fault == faultGap && status == "Packed":
			out = nil
		case s.fault == faultDuplicate:
			out = append(append([]byte(nil), frame...), frame...)
		}
		live := subs[:0:0]
		for _, sub := range subs {
			if len(out) == 0 || sub.send(out) {
				live = append(live, sub)
			}
		}
		if last {
			for _, sub := range live {
				sub.end()
			}
		}
	}
	return len(statuses)
}

// prune drops the streams whose clients are gone.
func (o *rawOrder) prune() {
	o.mu.Lock()
	defer o.mu.Unlock()
	live := o.subs[:0:0]
	for _, sub := range o.subs {
		if !sub.dead() {
			live = append(live, sub)
		}
	}
	o.subs = live
}

var keepAlive = []byte(": keep-alive\n\n")

func (s *rawServer) heartbeats(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		orders := make([]*rawOrder, 0, len(s.orders))
		for _, o := range s.orders {
			orders = append(orders, o)
		}
		s.mu.Unlock()
		for _, o := range orders {
			o.mu.Lock()
			subs := o.subs
			o.mu.Unlock()
			dead := 0
			for _, sub := range subs {
				if !sub.send(keepAlive) {
					dead++
				}
			}
			if dead > 0 {
				o.prune()
			}
		}
	}
}

// writeAddrFile writes addr to path through a temporary file renamed over
// it, so that a script polling for it never reads half an address.
func writeAddrFile(path, addr string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(addr+"\n"), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
