//go:build linux

// Command socketmem measures the kernel memory an idle stream's connection
// costs on the server, which a container's cgroup is charged for and which
// the service's RSS figures (docs/performance.md) leave out: it opens N
// loopback connections, registers the accepted side with an epoll instance
// (as shared/sockets does), and reports the growth of the slab caches a
// connection uses, per connection pair and per server side. Needs root
// (/proc/slabinfo) and a quiet machine: other processes' sockets are noise.
//
//	go run ./cmd/socketmem -n 8000
package main

import (
	"bufio"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// serverSide are the caches one accepted, epoll-registered socket uses:
// the socket (TCP), its inode, file and dentry, and its epoll entry.
var serverSide = []string{"TCP", "sock_inode_cache", "filp", "dentry", "eventpoll_epi"}

func slab() (map[string]int64, error) {
	f, err := os.Open("/proc/slabinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m := map[string]int64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 4 {
			continue
		}
		objs, err1 := strconv.ParseInt(fs[1], 10, 64)
		size, err2 := strconv.ParseInt(fs[3], 10, 64)
		if err1 == nil && err2 == nil {
			m[fs[0]] = objs * size
		}
	}
	return m, sc.Err()
}

func main() {
	n := flag.Int("n", 8000, "connections to open (each uses two descriptors here)")
	flag.Parse()
	if err := run(*n); err != nil {
		fmt.Fprintln(os.Stderr, "socketmem:", err)
		os.Exit(1)
	}
}

func run(n int) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return err
	}
	before, err := slab()
	if err != nil {
		return fmt.Errorf("%w (run as root)", err)
	}
	conns := make([]net.Conn, 0, 2*n)
	for range n {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return err
		}
		s, err := ln.Accept()
		if err != nil {
			return err
		}
		conns = append(conns, c, s)
		raw, err := s.(*net.TCPConn).SyscallConn()
		if err != nil {
			return err
		}
		var epErr error
		raw.Control(func(fd uintptr) {
			epErr = syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, int(fd), &syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLOUT | syscall.EPOLLRDHUP | (1 << 31), Fd: int32(fd)})
		})
		if epErr != nil {
			return epErr
		}
	}
	time.Sleep(500 * time.Millisecond)
	after, err := slab()
	if err != nil {
		return err
	}
	var server float64
	for _, c := range serverSide {
		d := float64(after[c]-before[c]) / 1024 / float64(n)
		if c != "eventpoll_epi" {
			d /= 2 // both ends of a loopback connection are here
		}
		server += d
		fmt.Printf("%-18s %5.2f KiB per server-side socket\n", c, d)
	}
	fmt.Printf("%-18s %5.2f KiB per idle stream, in the kernel (%d connections)\n", "total", server, n)
	for _, c := range conns {
		c.Close()
	}
	return nil
}
