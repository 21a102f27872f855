// Package layers holds the settings that must agree across the layers of a
// deployment: the service, its image, the load balancer and the
// orchestrator (deploy/README.md, "Settings that must agree"). The tests of
// deploy/image, deploy/ecs and deploy/kubernetes hold each layer to them,
// and the figures below come from the service's own code and measurements.
package layers

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"time"
)

// The metric the service writes with METRICS_EMF_SERVICE (shared/emf) and
// the ECS scaling policy reads; the Prometheus gauge the Kubernetes custom
// metric is made from.
const (
	EMFNamespace    = "orderstream"
	EMFMetric       = "StreamsOpen"
	EMFDimension    = "Service"
	PromStreamsOpen = "orderstream_streams_open"
)

// Memory, from docs/performance.md's figures: RSS per idle registered stream
// (1.89-1.94 KiB at 19,500 streams, rounded up) and the idle process (about
// 14 MiB). The
// kernel's socket, inode, file and epoll entries per connection are charged
// to the container's cgroup too and are not in RSS: 3.9 KiB measured here
// by cmd/socketmem (deploy/README.md, "Capacity").
const (
	RSSPerStream    = 2.0 * 1024
	KernelPerStream = 4 * 1024
	IdleProcess     = 16 << 20
)

// MemoryFor is the memory a task or pod holding streams open needs.
func MemoryFor(streams int) int64 {
	return IdleProcess + int64(float64(streams)*(RSSPerStream+KernelPerStream))
}

// FDHeadroom: descriptors the process holds besides its streams (listener,
// Redis connections, epoll, pipes), well over what it uses.
const FDHeadroom = 1000

// RepoRoot finds the repository root from a directory inside deploy/.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; d != filepath.Dir(d); d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && regexp.MustCompile(`(?m)^module github.com/orderstream/orderstream$`).Match(b) {
			return d, nil
		}
	}
	return "", fmt.Errorf("no orderstream repository above %s", dir)
}

// ShutdownGrace is local/main.go's shutdownGrace: once the drain is over,
// how long requests in flight get before the server closes them. Read from
// the source, so that a change there shows in every layer's test.
func ShutdownGrace() (time.Duration, error) {
	root, err := RepoRoot()
	if err != nil {
		return 0, err
	}
	src, err := os.ReadFile(filepath.Join(root, "local", "main.go"))
	if err != nil {
		return 0, err
	}
	m := regexp.MustCompile(`(?m)^const shutdownGrace = (\d+) \* time\.Second$`).FindSubmatch(src)
	if m == nil {
		return 0, fmt.Errorf("local/main.go no longer says `const shutdownGrace = N * time.Second`: update deploy/layers")
	}
	d, err := time.ParseDuration(string(m[1]) + "s")
	return d, err
}

// Duration parses a Go duration the way the service does.
func Duration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q: not a Go duration: %w", s, err)
	}
	return d, nil
}
