// Package redistest runs a real redis-server for tests: the broker's own
// tests, end-to-end tests of the HTTP server and load tests. There is no
// fake: what passes here passes against Redis.
//
// A test that needs Redis fails (never skips) when redis-server is missing,
// so that a machine without it can't pass by testing less. `make test`
// installs it; by hand: apt-get install redis-server.
package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// startTimeout bounds the wait for a server to answer PING, including the
// replay of its append-only file after a restart.
const startTimeout = 15 * time.Second

// Option configures a server.
type Option func(*config)

type config struct {
	password   string
	appendonly string // "" for no AOF, else the appendfsync policy
	args       []string
	cluster    bool // a cluster node, with a bus port of its own
}

// Password makes the server require a password (requirepass); URL carries it.
func Password(p string) Option { return func(c *config) { c.password = p } }

// AppendOnly turns on the append-only file with the given appendfsync policy
// ("always", "everysec" or "no"), so that data survives Restart and Kill.
// Without it the server keeps nothing on disk (--appendonly no, --save "").
func AppendOnly(fsync string) Option { return func(c *config) { c.appendonly = fsync } }

// Args adds command-line arguments, e.g. Args("--maxmemory", "10mb").
func Args(args ...string) Option { return func(c *config) { c.args = append(c.args, args...) } }

// Server is a redis-server on a loopback port, with its files in a
// temporary directory. Its methods are safe for concurrent use.
type Server struct {
	t    testing.TB
	bin  string
	dir  string
	port int
	bus  int // the cluster bus port of a cluster node
	cfg  config

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd exits
}

// Start starts a redis-server for t, waits until it answers PING and stops
// it when t ends.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server is not on PATH (%v): these tests run a real Redis; install it with `apt-get install redis-server` (make test does)", err)
	}
	s := &Server{t: t, bin: bin, dir: t.TempDir()}
	for _, o := range opts {
		o(&s.cfg)
	}
	t.Cleanup(s.Stop)
	// A free port may be taken between asking and binding: try a few.
	for attempt := 1; ; attempt++ {
		s.port = freePort(t)
		if s.cfg.cluster {
			s.bus = freePort(t)
		}
		err := s.start()
		if err == nil {
			return s
		}
		if attempt == 3 {
			t.Fatalf("redistest: start redis-server: %v", err)
		}
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("redistest: find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// URL is a redis:// URL for the server, with the password if it has one.
func (s *Server) URL() string {
	u := url.URL{Scheme: "redis", Host: s.Addr(), Path: "/0"}
	if s.cfg.password != "" {
		u.User = url.UserPassword("", s.cfg.password)
	}
	return u.String()
}

// Password is the server's password, "" if none.
func (s *Server) Password() string { return s.cfg.password }

// Dir is the server's working directory (its append-only files, its log).
func (s *Server) Dir() string { return s.dir }

func (s *Server) logPath() string { return filepath.Join(s.dir, "redis.log") }

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("already running")
	}
	args := []string{
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--dir", s.dir,
		"--save", "",
		"--daemonize", "no",
		"--logfile", s.logPath(),
	}
	if s.cfg.appendonly != "" {
		args = append(args, "--appendonly", "yes", "--appendfsync", s.cfg.appendonly)
	} else {
		args = append(args, "--appendonly", "no")
	}
	if s.cfg.password != "" {
		args = append(args, "--requirepass", s.cfg.password, "--masterauth", s.cfg.password)
	}
	if s.cfg.cluster {
		args = append(args, "--cluster-enabled", "yes", "--cluster-port", strconv.Itoa(s.bus),
			"--cluster-config-file", filepath.Join(s.dir, "nodes.conf"))
	}
	args = append(args, s.cfg.args...)
	cmd := exec.Command(s.bin, args...)
	cmd.Dir = s.dir
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	if err := s.waitReady(done); err != nil {
		cmd.Process.Kill()
		<-done
		return fmt.Errorf("%w\n%s", err, s.logTail())
	}
	s.cmd, s.done = cmd, done
	return nil
}

// waitReady waits until the server answers PING with PONG (not LOADING).
func (s *Server) waitReady(exited <-chan struct{}) error {
	deadline := time.Now().Add(startTimeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("redis-server on port %d exited at start", s.port)
		default:
		}
		if last = s.ping(); last == nil {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("redis-server on port %d did not answer PING within %v: %v", s.port, startTimeout, last)
}

// ping checks that the server answers PING with PONG.
func (s *Server) ping() error {
	reply, err := s.Command("PING")
	if err != nil {
		return err
	}
	if reply != "PONG" {
		return fmt.Errorf("PING: %q", reply)
	}
	return nil
}

// Command sends one command on a connection of its own (authenticating
// first if the server has a password) and returns the reply: a status,
// an integer or a bulk string as text; an error reply as an error. It speaks
// just enough RESP for that, so that this package depends on no client
// library.
func (s *Server) Command(args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", s.Addr(), time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	rd := bufio.NewReader(c)
	if p := s.cfg.password; p != "" {
		if reply, err := roundTrip(c, rd, "AUTH", p); err != nil || reply != "OK" {
			return "", fmt.Errorf("AUTH: %q %v", reply, err)
		}
	}
	return roundTrip(c, rd, args...)
}

func roundTrip(w io.Writer, rd *bufio.Reader, args ...string) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return "", err
	}
	line, err := rd.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("empty reply")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", errors.New(line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", fmt.Errorf("bulk reply %q", line)
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(rd, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	return "", fmt.Errorf("unsupported reply %q", line)
}

func (s *Server) logTail() string {
	b, err := os.ReadFile(s.logPath())
	if err != nil {
		return "(no redis-server log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return "redis-server log (tail):\n" + strings.Join(lines, "\n")
}

// Stop shuts the server down gracefully (SIGTERM: it flushes its append-only
// file) and waits for it to exit. It does nothing if the server is not
// running.
func (s *Server) Stop() { s.signal(syscall.SIGTERM) }

// Kill kills the server with SIGKILL, as a crash would, and waits for it to
// exit: only what the append-only file had synced survives.
func (s *Server) Kill() { s.signal(syscall.SIGKILL) }

// Pause stops the server process (SIGSTOP) without closing its connections:
// clients see a server that accepts and never answers, as across a network
// partition. Resume lets it go on.
func (s *Server) Pause() { s.send(syscall.SIGSTOP) }

// Resume continues a paused server (SIGCONT).
func (s *Server) Resume() { s.send(syscall.SIGCONT) }

func (s *Server) send(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		s.cmd.Process.Signal(sig)
	}
}

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(sig)
	s.cmd.Process.Signal(syscall.SIGCONT) // a paused server must run to stop
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd, s.done = nil, nil
}

// Restart stops the server if it is running and starts it again on the same
// port and directory, so its append-only file (if any) is replayed, and
// waits until it answers.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	if err := s.start(); err != nil {
		s.t.Fatalf("redistest: restart redis-server: %v", err)
	}
}

// Running reports whether the server process is up.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}
