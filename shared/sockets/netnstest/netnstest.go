//go:build linux

// Package netnstest gives a test two network namespaces joined by a veth
// pair, a server's and a client's, so that the client can vanish (its link
// set down: no FIN, no RST) as a phone that lost its network does. Both
// the socket registry's tests and the local server's use it.
package netnstest

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

// The pair's addresses: the server's end and the client's.
var (
	ServerIP = net.IPv4(10, 231, 0, 1)
	ClientIP = net.IPv4(10, 231, 0, 2)
)

// Pair is two private network namespaces, so nothing on the host (or
// another test running at once) sees them; the test's cleanup deletes them.
type Pair struct {
	Server, Client string // namespace names
	clientLink     string
}

var pairs atomic.Int32

// Usable skips the test, saying why, where network namespaces cannot be
// made: not root, no ip(8), or a sandbox that refuses. (make test reports
// such a skip; see the Makefile.)
func Usable(t *testing.T) {
	t.Helper()
	const how = "; run as root with iproute2 to check that vanished clients are let go"
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root" + how)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("no ip(8)" + how)
	}
	probe := fmt.Sprintf("os-probe-%d", os.Getpid())
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

// NewPair makes a pair of namespaces, linked and up.
func NewPair(t *testing.T) *Pair {
	t.Helper()
	id := fmt.Sprintf("%d-%d", os.Getpid(), pairs.Add(1))
	p := &Pair{Server: "os-s-" + id, Client: "os-c-" + id, clientLink: "vc"}
	for _, step := range [][]string{
		{"netns", "add", p.Server},
		{"netns", "add", p.Client},
		{"-n", p.Server, "link", "add", "vs", "type", "veth", "peer", "name", p.clientLink, "netns", p.Client},
		{"-n", p.Server, "addr", "add", ServerIP.String() + "/24", "dev", "vs"},
		{"-n", p.Client, "addr", "add", ClientIP.String() + "/24", "dev", p.clientLink},
		{"-n", p.Server, "link", "set", "vs", "up"},
		{"-n", p.Server, "link", "set", "lo", "up"},
		{"-n", p.Client, "link", "set", p.clientLink, "up"},
	} {
		if err := ip(step...); err != nil {
			t.Fatal(err)
		}
		if step[1] == "add" && step[0] == "netns" {
			name := step[2]
			t.Cleanup(func() { _ = ip("netns", "del", name) })
		}
	}
	return p
}

// In runs f on a thread that has joined namespace ns; the thread is left
// locked and so ends with the goroutine, never going back to the runtime
// in the wrong namespace. Sockets f makes stay in ns.
func In(t *testing.T, ns string, f func() error) {
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

// Listen listens on a free port of the server's address, in its namespace.
func (p *Pair) Listen(t *testing.T) *net.TCPListener {
	t.Helper()
	var ln *net.TCPListener
	In(t, p.Server, func() (err error) {
		ln, err = net.ListenTCP("tcp", &net.TCPAddr{IP: ServerIP})
		return err
	})
	t.Cleanup(func() { ln.Close() })
	return ln
}

// Dial connects to addr from the client's namespace.
func (p *Pair) Dial(t *testing.T, addr string, timeout time.Duration) *net.TCPConn {
	t.Helper()
	var c net.Conn
	In(t, p.Client, func() (err error) {
		c, err = net.DialTimeout("tcp", addr, timeout)
		return err
	})
	return c.(*net.TCPConn)
}

// ClientDown takes the client's link down: its packets stop, nothing is
// said to the server.
func (p *Pair) ClientDown(t *testing.T) {
	t.Helper()
	if err := ip("-n", p.Client, "link", "set", p.clientLink, "down"); err != nil {
		t.Fatal(err)
	}
}
