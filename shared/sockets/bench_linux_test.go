package sockets

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// BenchmarkBroadcast sends one frame to n sockets over loopback and waits
// until every client has it, through the registry (a list of sockets, and
// the same sockets as a Group) and, in the same run,
// through a plain writer with a goroutine and a channel per connection (the
// shape the raw baseline's -shape goroutine measures). The clients run in a
// child process (this test binary again, see TestMain), so that 10,000
// pairs fit the open-file limit and the CPU time reported is the server's
// alone.
//
//	go test -run '^$' -bench Broadcast -benchtime 100x ./shared/sockets
func BenchmarkBroadcast(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		for _, srv := range benchServers {
			b.Run(fmt.Sprintf("%s/%d", srv.name, n), func(b *testing.B) { benchFanOut(b, n, srv.serve) })
		}
	}
}

// BenchmarkIdle holds 10,000 idle streams and reports how much the
// process's resident memory grew per stream, net/http-less on both sides:
// a registered socket against a goroutine and channel per connection.
//
// Run each alone: memory the first one freed makes the second look smaller.
//
//	go test -run '^$' -bench Idle/registry -benchtime 1x ./shared/sockets
//	go test -run '^$' -bench Idle/goroutines -benchtime 1x ./shared/sockets
//
// (Idle/group is Idle/registry with a Group: the same.)
func BenchmarkIdle(b *testing.B) {
	for _, srv := range benchServers {
		b.Run(srv.name, func(b *testing.B) { benchIdle(b, 10000, srv.serve) })
	}
}

// A benchServer takes over the server ends of the benchmark's connections
// and returns how to publish a frame to all of them and how to stop.
type benchServer struct {
	name  string
	serve func(b *testing.B, servers []*net.TCPConn) (publish func([]byte), stop func())
}

var benchServers = []benchServer{
	{"registry", func(b *testing.B, servers []*net.TCPConn) (func([]byte), func()) {
		r := newRegistry(b, Options{})
		socks := make([]*Socket, len(servers))
		for i, c := range servers {
			s, err := r.Register(c, Registration{})
			if err != nil {
				b.Fatal(err)
			}
			socks[i] = s
		}
		return func(f []byte) { r.Broadcast(f, socks) }, func() { r.Close() }
	}},
	{"group", func(b *testing.B, servers []*net.TCPConn) (func([]byte), func()) {
		// The same sockets as one Group: each loop is handed its own
		// members, where Broadcast hands every loop the whole list.
		r := newRegistry(b, Options{})
		g := r.NewGroup()
		for _, c := range servers {
			s, err := r.Register(c, Registration{})
			if err != nil {
				b.Fatal(err)
			}
			g.Add(s)
		}
		return g.Broadcast, func() { r.Close() }
	}},
	{"goroutines", func(_ *testing.B, servers []*net.TCPConn) (func([]byte), func()) {
		var wg sync.WaitGroup
		chans := make([]chan []byte, len(servers))
		for i, c := range servers {
			ch := make(chan []byte, 16)
			chans[i] = ch
			wg.Go(func() {
				defer c.Close()
				for f := range ch {
					if _, err := c.Write(f); err != nil {
						return
					}
				}
			})
		}
		publish := func(f []byte) {
			for _, ch := range chans {
				ch <- f
			}
		}
		stop := func() {
			for _, ch := range chans {
				close(ch)
			}
			wg.Wait()
		}
		return publish, stop
	}},
}

// benchClientsEnv tells a child test binary to be the benchmark's clients:
// "addr n frameLen".
const benchClientsEnv = "SOCKETS_BENCH_CLIENTS"

func TestMain(m *testing.M) {
	if spec := os.Getenv(benchClientsEnv); spec != "" {
		if err := runClients(spec); err != nil {
			fmt.Fprintln(os.Stderr, "bench clients:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runClients dials a control connection, then n streams, reads them all,
// and writes one byte on the control connection for each round of n frames
// of frameLen bytes delivered in total, until the control connection ends.
func runClients(spec string) error {
	f := strings.Fields(spec)
	if len(f) != 3 {
		return fmt.Errorf("want \"addr n frameLen\", got %q", spec)
	}
	n, err1 := strconv.Atoi(f[1])
	frameLen, err2 := strconv.Atoi(f[2])
	if err := errors.Join(err1, err2); err != nil {
		return err
	}
	ctl, err := net.Dial("tcp", f[0])
	if err != nil {
		return err
	}
	defer ctl.Close()
	perRound := int64(n * frameLen)
	var total atomic.Int64
	var wmu sync.Mutex
	var readers sync.WaitGroup
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
		readers.Wait()
	}()
	for range n {
		c, err := net.Dial("tcp", f[0])
		if err != nil {
			return err
		}
		conns = append(conns, c)
		readers.Go(func() {
			buf := make([]byte, 4096)
			for {
				k, err := c.Read(buf)
				if err != nil {
					return
				}
				got := total.Add(int64(k))
				for r := (got - int64(k)) / perRound; r < got/perRound; r++ {
					wmu.Lock()
					_, _ = ctl.Write([]byte{1})
					wmu.Unlock()
				}
			}
		})
	}
	_, err = io.Copy(io.Discard, ctl) // until the benchmark is done
	return err
}

// clients is the benchmark's other end: a child process holding n
// streams, and its control connection, which gets a byte per round of n
// frames of frameLen bytes delivered.
type clients struct {
	cmd  *exec.Cmd
	ctl  *net.TCPConn
	done *bufio.Reader
}

// startClients starts the child and returns the server ends of its streams.
func startClients(b *testing.B, n, frameLen int) (*clients, []*net.TCPConn) {
	ln := listen(b)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %d %d", benchClientsEnv, ln.Addr(), n, frameLen))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	ctl, err := ln.AcceptTCP() // the child dials the control connection first
	if err != nil {
		b.Fatal(err)
	}
	servers := make([]*net.TCPConn, n)
	for i := range servers {
		if servers[i], err = ln.AcceptTCP(); err != nil {
			b.Fatal(err)
		}
	}
	return &clients{cmd: cmd, ctl: ctl, done: bufio.NewReader(ctl)}, servers
}

// stop ends the child: it closes its streams when the control connection ends.
func (c *clients) stop(b *testing.B) {
	c.ctl.Close()
	if err := c.cmd.Wait(); err != nil {
		b.Errorf("clients: %v", err)
	}
}

// benchFanOut times publish-and-deliver rounds of one frame to n streams.
func benchFanOut(b *testing.B, n int, serve func(*testing.B, []*net.TCPConn) (func([]byte), func())) {
	f := frame(1234567)
	cl, servers := startClients(b, n, len(f))
	publish, stop := serve(b, servers)
	cpu := cpuTime()
	b.ResetTimer()
	for b.Loop() {
		publish(f)
		if _, err := cl.done.ReadByte(); err != nil {
			b.Fatalf("clients: %v", err)
		}
	}
	b.StopTimer()
	deliveries := float64(n) * float64(b.N)
	b.ReportMetric(deliveries/b.Elapsed().Seconds(), "deliveries/s")
	b.ReportMetric(float64((cpuTime()-cpu).Microseconds())/deliveries, "server-cpu-µs/delivery")
	stop()
	cl.stop(b)
}

// benchIdle reports the resident memory n idle streams add to the server
// process, from before their connections were accepted to after serve took
// them over, a GC and a heartbeat-free moment later.
func benchIdle(b *testing.B, n int, serve func(*testing.B, []*net.TCPConn) (func([]byte), func())) {
	runtime.GC()
	before := rssKiB(b)
	cl, servers := startClients(b, n, 1)
	_, stop := serve(b, servers)
	for b.Loop() {
		runtime.GC()
	}
	b.ReportMetric(float64(rssKiB(b)-before)/float64(n), "rss-KiB/stream")
	stop()
	cl.stop(b)
}

// rssKiB is this process's resident set (VmRSS).
func rssKiB(b *testing.B) int64 {
	st, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(string(st)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kib, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return kib
		}
	}
	b.Fatal("no VmRSS in /proc/self/status")
	return 0
}

// cpuTime is this process's user and system time so far: the server's, as
// the clients run in their own process.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
