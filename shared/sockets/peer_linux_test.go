package sockets

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A client that vanishes (its network gone: no FIN, no RST) is let go
// within about Options.PeerTimeout, idle or not, where the kernel alone
// would hold it for minutes (keep-alive) to a quarter of an hour
// (retransmissions). The client sits in a network namespace of its own,
// joined to the server's by a veth pair, and vanishes when its end of the
// pair goes down.
func TestVanishedClientEndsWithinPeerTimeout(t *testing.T) {
	const peerTimeout = 2 * time.Second
	// Generous: the kernel checks at its timers' pace, and the box is
	// shared; without PeerTimeout it takes minutes.
	const within = peerTimeout + 15*time.Second
	netnsUsable(t)
	for _, tc := range []struct {
		name      string
		heartbeat time.Duration // short: unacknowledged bytes; long: an idle stream, found by keep-alive
		timeout   time.Duration
	}{
		{"idle", time.Hour, peerTimeout},
		{"heartbeats", 200 * time.Millisecond, peerTimeout},
		{"idle, no PeerTimeout", time.Hour, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			n := newNetPair(t)
			r := newRegistry(t, Options{Heartbeat: tc.heartbeat, PeerTimeout: tc.timeout})
			ln := n.listen(t)
			client := n.dial(t, ln.Addr().String())
			defer client.Close()
			srv, err := ln.AcceptTCP()
			if err != nil {
				t.Fatal(err)
			}
			_, closed := register(t, r, srv)
			if _, err := client.Write([]byte("hello")); err != nil { // a round trip: the link works
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
			n.clientDown(t)
			down := time.Now()
			if tc.timeout == 0 {
				// The kernel's own keep-alive (Go's 15 s idle, then 9 probes
				// 15 s apart) holds it long after PeerTimeout would have.
				select {
				case why := <-closed:
					t.Fatalf("closed with %v after %v without PeerTimeout", why, time.Since(down))
				case <-time.After(3 * peerTimeout):
				}
				if st := r.Stats(); st.Registered != 1 {
					t.Fatalf("stats %+v, want the stream still held", st)
				}
				return
			}
			why := reason(t, closed, within)
			took := time.Since(down)
			t.Logf("let go %v after the client's link went down (PeerTimeout %v)", took.Round(time.Millisecond), tc.timeout)
			if why != Vanished {
				t.Errorf("closed with %v, want %v", why, Vanished)
			}
			if st := r.Stats(); st.Registered != 0 || st.Gone != 1 {
				t.Errorf("stats %+v, want none registered, 1 gone", st)
			}
		})
	}
}

// netPair is two network namespaces joined by a veth pair: the server's
// (10.231.0.1) and the client's (10.231.0.2). Private namespaces, so
// nothing on the host (or another test running at once) sees them.
type netPair struct {
	server, client string // namespace names
	clientLink     string
}

var netPairs atomic.Int32

// netnsUsable skips the test, saying why, where network namespaces cannot
// be made: not root, no ip(8), or a sandbox that refuses. (make test
// reports such a skip; see the Makefile.)
func netnsUsable(t *testing.T) {
	t.Helper()
	const how = "; run as root with iproute2 to check that vanished clients are let go"
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root" + how)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("no ip(8)" + how)
	}
	probe := fmt.Sprintf("skt-probe-%d", os.Getpid())
	if err := ip("netns", "add", probe); err != nil {
		t.Skipf("cannot make a network namespace here (%v)%s", err, how)
	}
	if err := ip("netns", "del", probe); err != nil {
		t.Fatal(err)
	}
}

func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

func newNetPair(t *testing.T) *netPair {
	t.Helper()
	id := fmt.Sprintf("%d-%d", os.Getpid(), netPairs.Add(1))
	n := &netPair{server: "skt-s-" + id, client: "skt-c-" + id, clientLink: "vc"}
	for _, step := range [][]string{
		{"netns", "add", n.server},
		{"netns", "add", n.client},
		{"-n", n.server, "link", "add", "vs", "type", "veth", "peer", "name", n.clientLink, "netns", n.client},
		{"-n", n.server, "addr", "add", "10.231.0.1/24", "dev", "vs"},
		{"-n", n.client, "addr", "add", "10.231.0.2/24", "dev", n.clientLink},
		{"-n", n.server, "link", "set", "vs", "up"},
		{"-n", n.client, "link", "set", n.clientLink, "up"},
	} {
		if err := ip(step...); err != nil {
			t.Fatal(err)
		}
		if step[1] == "add" && step[0] == "netns" {
			name := step[2]
			t.Cleanup(func() { _ = ip("netns", "del", name) })
		}
	}
	return n
}

// inNetns runs f on a thread that has joined namespace ns; the thread is
// left locked and so ends with the goroutine, never going back to the
// runtime in the wrong namespace. Sockets f makes stay in ns.
func inNetns(t *testing.T, ns string, f func() error) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		fd, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		errc <- f()
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func (n *netPair) listen(t *testing.T) *net.TCPListener {
	t.Helper()
	var ln *net.TCPListener
	inNetns(t, n.server, func() (err error) {
		ln, err = net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(10, 231, 0, 1)})
		return err
	})
	t.Cleanup(func() { ln.Close() })
	return ln
}

func (n *netPair) dial(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	var c net.Conn
	inNetns(t, n.client, func() (err error) {
		c, err = net.DialTimeout("tcp", addr, patience)
		return err
	})
	return c.(*net.TCPConn)
}

// clientDown takes the client's link down: its packets stop, nothing is
// said to the server.
func (n *netPair) clientDown(t *testing.T) {
	t.Helper()
	if err := ip("-n", n.client, "link", "set", n.clientLink, "down"); err != nil {
		t.Fatal(err)
	}
}
