package sockets

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// BenchmarkBroadcast sends one frame to n sockets over loopback and waits
// until every client has it, through the registry and, in the same run,
// through a plain writer with a goroutine and a channel per connection (the
// shape the raw baseline's -shape goroutine measures). The clients run in a
// child process (this test binary again, see TestMain), so that 10,000
// pairs fit the open-file limit and the CPU time reported is the server's
// alone.
//
//	go test -run '^$' -bench Broadcast -benchtime 100x ./shared/sockets
func BenchmarkBroadcast(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("registry/%d", n), func(b *testing.B) {
			benchFanOut(b, n, func(servers []*net.TCPConn) (func([]byte), func()) {
				r := newRegistry(b, Options{})
				socks := make([]*Socket, len(servers))
				for i, c := range servers {
					s, err := r.Register(c, nil)
					if err != nil {
						b.Fatal(err)
					}
					socks[i] = s
				}
				return func(f []byte) { r.Broadcast(f, socks) }, func() { r.Close() }
			})
		})
		b.Run(fmt.Sprintf("goroutines/%d", n), func(b *testing.B) {
			benchFanOut(b, n, func(servers []*net.TCPConn) (func([]byte), func()) {
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
			})
		})
	}
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

// benchFanOut starts the clients, lets serve take the server ends, and
// times publish-and-deliver rounds of one frame.
func benchFanOut(b *testing.B, n int, serve func([]*net.TCPConn) (publish func([]byte), stop func())) {
	ln := listen(b)
	f := frame(1234567)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %d %d", benchClientsEnv, ln.Addr(), n, len(f)))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	ctl, err := ln.AcceptTCP() // the children dial the control connection first
	if err != nil {
		b.Fatal(err)
	}
	servers := make([]*net.TCPConn, n)
	for i := range servers {
		if servers[i], err = ln.AcceptTCP(); err != nil {
			b.Fatal(err)
		}
	}
	publish, stop := serve(servers)
	done := bufio.NewReader(ctl)
	cpu := cpuTime()
	b.ResetTimer()
	for b.Loop() {
		publish(f)
		if _, err := done.ReadByte(); err != nil {
			b.Fatalf("clients: %v", err)
		}
	}
	b.StopTimer()
	deliveries := float64(n) * float64(b.N)
	b.ReportMetric(deliveries/b.Elapsed().Seconds(), "deliveries/s")
	b.ReportMetric(float64((cpuTime()-cpu).Microseconds())/deliveries, "server-cpu-µs/delivery")
	stop()
	ctl.Close()
	if err := cmd.Wait(); err != nil {
		b.Errorf("clients: %v", err)
	}
}

// cpuTime is this process's user and system time so far: the server's, as
// the clients run in their own process.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
