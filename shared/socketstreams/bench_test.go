package socketstreams

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderstream/orderstream/shared/broker"
	"github.com/orderstream/orderstream/shared/broker/brokertest"
	"github.com/orderstream/orderstream/shared/httpapi"
	"github.com/orderstream/orderstream/shared/httpapi/httpapitest"
	"github.com/orderstream/orderstream/shared/order"
	"github.com/orderstream/orderstream/shared/sse"
)

var lifecycle = []order.Status{order.Created, order.PaymentConfirmed, order.Packed, order.Shipped, order.OutForDelivery, order.Delivered}

// BenchmarkFanoutVsRawTCP puts our fan-out beside the physical limit of the
// box in one run: the same frames to the same number of loopback TCP
// connections, once through the stream handler and once by a bare loop of
// conn.Write calls. Both sides' clients read with the sse decoder. The
// ratio (ours/raw deliveries per second) is the figure the README quotes.
func BenchmarkFanoutVsRawTCP(b *testing.B) {
	for _, n := range []int{1000, 4000} {
		for _, registered := range []bool{true, false} {
			mode := "registered" // as the local server runs it
			if !registered {
				mode = "in-handler"
			}
			b.Run(fmt.Sprintf("subs=%d/%s", n, mode), func(b *testing.B) {
				br := broker.NewMemory(brokertest.Options())
				defer br.Close()
				logger := slog.New(slog.NewTextHandler(io.Discard, nil))
				cfg := testConfig(httpapi.Config{})
				streams := newStreams(b, logger, cfg, registered)
				srv := httptest.NewServer(streams.Wrap(httpapi.NewServer(logger, br, cfg)))
				defer srv.Close()
				defer streams.Close()
				// Both raw shapes, measured in the same run: on two cores
				// either can win, and the ratio is against the better one.
				var ours, loop, perConn time.Duration
				for range b.N {
					ours += oursOnce(b, srv.URL, br, n)
					loop += rawOnce(b, n, false)
					perConn += rawOnce(b, n, true)
				}
				events := float64(n * len(lifecycle) * b.N)
				b.ReportMetric(events/ours.Seconds(), "ours-deliveries/s")
				b.ReportMetric(events/loop.Seconds(), "raw-loop-deliveries/s")
				b.ReportMetric(events/perConn.Seconds(), "raw-goroutine-deliveries/s")
				b.ReportMetric(min(loop, perConn).Seconds()/ours.Seconds(), "ratio")
			})
		}
	}
}

// readEvents reads a stream until want events have come, then signals.
func readEvents(r io.Reader, want int, got *sync.WaitGroup) {
	defer got.Done()
	dec := sse.NewDecoder(r)
	for range want {
		if _, err := dec.Next(); err != nil {
			return
		}
	}
}

func oursOnce(b *testing.B, base string, br broker.Broker, n int) time.Duration {
	id := uuid.New()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: -1}}
	defer client.CloseIdleConnections()
	var got sync.WaitGroup
	bodies := make([]io.ReadCloser, n)
	for i := range n {
		res, err := client.Get(base + "/orders/" + id.String() + "/stream")
		if err != nil {
			b.Fatal(err)
		}
		bodies[i] = res.Body
		// The retry: field arrives after Subscribe: then this one is live.
		if _, err := res.Body.Read(make([]byte, 16)); err != nil {
			b.Fatal(err)
		}
	}
	got.Add(n)
	for _, body := range bodies {
		go readEvents(body, len(lifecycle), &got)
	}
	start := time.Now()
	for _, s := range lifecycle {
		if _, err := br.Publish(context.Background(), id, broker.PublishRequest{Status: s}); err != nil {
			b.Fatal(err)
		}
	}
	got.Wait()
	d := time.Since(start)
	for _, body := range bodies {
		body.Close()
	}
	return d
}

// rawOnce is the fan-out with nothing but sockets: the same frames written
// to n connections, from one loop (goroutinePerConn false), or by a
// goroutine per connection fed through its own channel.
func rawOnce(b *testing.B, n int, goroutinePerConn bool) time.Duration {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	var got sync.WaitGroup
	got.Add(n)
	clients := make([]net.Conn, n)
	servers := make([]net.Conn, n)
	for i := range n {
		if clients[i], err = net.Dial("tcp", ln.Addr().String()); err != nil {
			b.Fatal(err)
		}
		if servers[i], err = ln.Accept(); err != nil {
			b.Fatal(err)
		}
	}
	for _, c := range clients {
		go readEvents(c, len(lifecycle), &got)
	}
	// The frames our handler writes, made the same way, ready in advance.
	id := uuid.New()
	frames := make([][]byte, len(lifecycle))
	for i, s := range lifecycle {
		ev, _ := broker.NewEvent(broker.EventID{MS: uint64(time.Now().UnixMilli()), Seq: uint64(i)},
			order.Update{OrderID: id, Status: s, Timestamp: time.Now().UTC()})
		frames[i], _ = sse.AppendMessage(nil, sse.Message{ID: ev.ID, Event: eventType, Data: ev.Data})
	}
	var queues []chan []byte
	var writers sync.WaitGroup
	if goroutinePerConn {
		queues = make([]chan []byte, n)
		for i, c := range servers {
			queues[i] = make(chan []byte, len(frames))
			writers.Go(func() {
				for f := range queues[i] {
					if _, err := c.Write(f); err != nil {
						b.Error(err)
						c.Close() // its reader sees EOF, so got.Wait returns
						return
					}
				}
			})
		}
	}
	start := time.Now()
	for _, f := range frames {
		if goroutinePerConn {
			for _, q := range queues {
				q <- f
			}
			continue
		}
		for _, c := range servers {
			if _, err := c.Write(f); err != nil {
				b.Fatal(err)
			}
		}
	}
	got.Wait()
	d := time.Since(start)
	for _, q := range queues {
		close(q)
	}
	writers.Wait()
	for i := range n {
		clients[i].Close()
		servers[i].Close()
	}
	return d
}

// BenchmarkIdleStreamMemory measures what an idle stream costs the server,
// in its handler and registered: n streams over loopback TCP, opened by clients that hold their sockets
// without a goroutine (as the raw side does), heap and stacks measured after
// a GC. raw-B/stream is the same sockets accepted and held by a bare
// listener: the clients' and the kernel-facing share, the same on both
// sides, so ours minus raw is the server's cost.
//
//	go test -run='^$' -bench=IdleStreamMemory -benchtime=1x ./shared/socketstreams/
func BenchmarkIdleStreamMemory(b *testing.B) {
	const n = 2000
	var stacks int64 // StackInuse at the last inUse
	inUse := func() int64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		stacks = int64(m.StackInuse)
		return int64(m.HeapInuse + m.StackInuse)
	}
	request := func(c net.Conn, id string) {
		fmt.Fprintf(c, "GET /orders/%s/stream HTTP/1.1\r\nHost: x\r\n\r\n", id)
	}
	for _, detach := range []bool{false, true} {
		name := "in-handler"
		if detach {
			name = "registered"
		}
		b.Run(name, func(b *testing.B) { benchIdleStreamMemory(b, n, detach, inUse, &stacks, request) })
	}
}

func benchIdleStreamMemory(b *testing.B, n int, detach bool, inUse func() int64, stacks *int64, request func(net.Conn, string)) {
	for range b.N {
		id := uuid.NewString()
		// Raw first: what the server side frees afterwards would skew it.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		before := inUse()
		conns, held := make([]net.Conn, 0, n), make([]net.Conn, 0, n)
		for range n {
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			request(c, id)
			s, err := ln.Accept()
			if err != nil {
				b.Fatal(err)
			}
			conns, held = append(conns, c), append(held, s)
		}
		raw := float64(inUse()-before) / float64(n)
		for i := range conns {
			conns[i].Close()
			held[i].Close()
		}
		ln.Close()

		br := broker.NewMemory(brokertest.Options())
		logger := slog.New(slog.NewTextHandler(io.Discard, nil))
		cfg := testConfig(httpapi.Config{})
		streams := New(logger, cfg, Options{Register: detach})
		srv := httptest.NewServer(streams.Wrap(httpapi.NewServer(logger, br, cfg)))
		before = inUse()
		stacksBefore := *stacks
		conns = conns[:0]
		buf := make([]byte, 512)
		for range n {
			c, err := net.Dial("tcp", srv.Listener.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			request(c, id)
			// Headers and the retry: field: the stream is subscribed.
			for got := ""; !strings.Contains(got, "retry:"); {
				k, err := c.Read(buf)
				if err != nil {
					b.Fatal(err)
				}
				got += string(buf[:k])
			}
			conns = append(conns, c)
		}
		ours := float64(inUse()-before) / float64(n)
		oursStacks := float64(*stacks-stacksBefore) / float64(n)
		for _, c := range conns {
			c.Close()
		}
		streams.Close()
		srv.Close()
		br.Close()
		b.ReportMetric(ours, "ours-B/stream")
		b.ReportMetric(raw, "raw-B/stream")
		b.ReportMetric(ours-raw, "server-B/stream")
		b.ReportMetric(oursStacks, "stacks-B/stream")
	}
}

// BenchmarkConnect measures what a stream costs from accept to
// registration: each round connects n fresh streams to a fresh order (the
// contract's rounds: the load generator reconnects between rounds, and
// closing a round's streams is not counted), 16 clients at a time, once
// through the local server's stack (its listener, net/http, the core, the
// hand-over, a registered socket) and once against a raw server (net.Listen
// as it comes) that accepts, reads the request and writes the same head
// and retry: from a goroutine per connection, then holds the socket. Both sides' clients are the same raw
// dialers, so the difference between the two is the server's. It reports,
// per connect, the process's allocations and bytes (stable) and its CPU
// time and wall time (noisy on a shared box).
//
//	go test -run='^$' -bench=Connect -benchtime=5x ./shared/socketstreams/
func BenchmarkConnect(b *testing.B) {
	const n, clients = 1000, 16
	br := broker.NewMemory(brokertest.Options())
	defer br.Close()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := testConfig(httpapi.Config{})
	streams := New(logger, cfg, Options{Register: true})
	if streams.reg == nil {
		b.Fatal("no sockets registry")
	}
	cfg.MaxStreams = streams.Limit().Max // as the local server caps its streams
	// As the local server listens: the dead-peer timeout (twice the write
	// timeout, STREAM_PEER_TIMEOUT's default) set once on the listener.
	srv := httptest.NewUnstartedServer(streams.Wrap(httpapi.NewServer(logger, br, cfg)))
	srv.Listener.Close()
	ln, err := Listen(context.Background(), "127.0.0.1:0", 2*cfg.WriteTimeout)
	if err != nil {
		b.Fatal(err)
	}
	srv.Listener = ln
	srv.Start()
	defer srv.Close()
	defer streams.Close()
	raw := newRawStreamServer(b)
	defer raw.close()

	var ours, rawCost connectCost
	for range b.N {
		ours.add(connectRound(b, srv.Listener.Addr().String(), n, clients, func() {
			httpapitest.WaitFor(b, "the round's streams to close", func() bool {
				st := streams.reg.Stats()
				return st.Registered == 0 && st.Lingering == 0
			})
		}))
		rawCost.add(connectRound(b, raw.ln.Addr().String(), n, clients, raw.release))
	}
	per := float64(n * b.N)
	b.ReportMetric(float64(ours.mallocs)/per, "allocs/connect")
	b.ReportMetric(float64(ours.bytes)/per, "B/connect")
	b.ReportMetric(float64(ours.cpu.Nanoseconds())/per, "cpu-ns/connect")
	b.ReportMetric(ours.wall.Seconds()/float64(b.N), "s/round")
	b.ReportMetric(float64(rawCost.mallocs)/per, "raw-allocs/connect")
	b.ReportMetric(float64(rawCost.bytes)/per, "raw-B/connect")
	b.ReportMetric(float64(rawCost.cpu.Nanoseconds())/per, "raw-cpu-ns/connect")
	b.ReportMetric(rawCost.wall.Seconds()/float64(b.N), "raw-s/round")
	b.ReportMetric(ours.wall.Seconds()/rawCost.wall.Seconds(), "ratio")
}

// connectCost is what a round of connects cost the process.
type connectCost struct {
	mallocs, bytes uint64
	cpu, wall      time.Duration
}

func (c *connectCost) add(o connectCost) {
	c.mallocs += o.mallocs
	c.bytes += o.bytes
	c.cpu += o.cpu
	c.wall += o.wall
}

// connectRound connects n streams to a fresh order at addr, clients at a
// time, each reading its head and retry: field, and returns what that cost;
// then it closes them and calls settle (not counted) to wait for the
// server to let them go.
func connectRound(b *testing.B, addr string, n, clients int, settle func()) connectCost {
	request := []byte("GET /orders/" + uuid.NewString() + "/stream HTTP/1.1\r\nHost: x\r\n\r\n")
	conns := make([]net.Conn, n)
	var next sync.WaitGroup
	var mu sync.Mutex
	i := 0
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	cpu := cpuTime()
	start := time.Now()
	for range clients {
		next.Go(func() {
			buf := make([]byte, 1024)
			for {
				mu.Lock()
				k := i
				i++
				mu.Unlock()
				if k >= n {
					return
				}
				c, err := net.Dial("tcp", addr)
				if err != nil {
					b.Error(err)
					return
				}
				conns[k] = c
				if _, err := c.Write(request); err != nil {
					b.Error(err)
					return
				}
				got := 0
				for !bytes.Contains(buf[:got], []byte("retry: ")) || !bytes.HasSuffix(buf[:got], []byte("\n\n")) {
					m, err := c.Read(buf[got:])
					if err != nil {
						b.Errorf("stream %d: %v after %q", k, err, buf[:got])
						return
					}
					got += m
				}
			}
		})
	}
	next.Wait()
	cost := connectCost{wall: time.Since(start), cpu: cpuTime() - cpu}
	runtime.ReadMemStats(&after)
	cost.mallocs, cost.bytes = after.Mallocs-before.Mallocs, after.TotalAlloc-before.TotalAlloc
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
	settle()
	return cost
}

// cpuTime is the CPU time the process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rawStreamServer is the least a stream's connect can cost in Go: accept,
// a goroutine that reads the request and writes the head and retry: our
// server writes, then the socket held, with no goroutine.
type rawStreamServer struct {
	ln   net.Listener
	mu   sync.Mutex
	held []net.Conn
	wg   sync.WaitGroup
}

func newRawStreamServer(b *testing.B) *rawStreamServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	s := &rawStreamServer{ln: ln}
	head := []byte("HTTP/1.1 200 OK\r\nCache-Control: no-cache\r\nConnection: close\r\nContent-Type: text/event-stream\r\n" +
		"Date: " + time.Now().UTC().Format(http.TimeFormat) + "\r\nX-Accel-Buffering: no\r\n\r\nretry: 3000\n\n")
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Go(func() {
				buf := make([]byte, 1024)
				got := 0
				for !bytes.Contains(buf[:got], []byte("\r\n\r\n")) {
					n, err := c.Read(buf[got:])
					if err != nil {
						c.Close()
						return
					}
					got += n
				}
				if _, err := c.Write(head); err != nil {
					c.Close()
					return
				}
				s.mu.Lock()
				s.held = append(s.held, c)
				s.mu.Unlock()
			})
		}
	})
	return s
}

// release closes the sockets held.
func (s *rawStreamServer) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.held {
		c.Close()
	}
	s.held = s.held[:0]
}

func (s *rawStreamServer) close() {
	s.ln.Close()
	s.wg.Wait()
	s.release()
}
