package redistest

import (
	"fmt"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// NodeTimeout is the clusters' cluster-node-timeout: low, so that a killed
// master fails over within seconds (Redis's default is 15 s).
const NodeTimeout = 2 * time.Second

// Cluster is a Redis Cluster of three masters with a replica each, made by
// redis-cli --cluster create on loopback ports.
type Cluster struct {
	t     testing.TB
	Nodes []*Server
}

// StartCluster starts six cluster-enabled servers with opts, joins them
// into a cluster of three masters and three replicas, waits until every
// node reports the cluster ok and every replica is in sync, and stops them
// when t ends.
func StartCluster(t testing.TB, opts ...Option) *Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("system test (a real Redis Cluster of six redis-servers): skipped by -short; make test runs it")
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatalf("redis-cli is not on PATH (%v): these tests run a real Redis Cluster; install it with `apt-get install redis-server` (make test does)", err)
	}
	opts = append([]Option{
		func(c *config) { c.cluster = true },
		Args("--cluster-node-timeout", strconv.Itoa(int(NodeTimeout.Milliseconds()))),
	}, opts...)
	c := &Cluster{t: t}
	addrs := make([]string, 6)
	for i := range addrs {
		s := Start(t, opts...)
		c.Nodes = append(c.Nodes, s)
		addrs[i] = s.Addr()
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	if p := c.Nodes[0].cfg.password; p != "" {
		args = append(args, "-a", p, "--no-auth-warning")
	}
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redistest: redis-cli --cluster create: %v\n%s", err, out)
	}
	c.WaitHealthy()
	return c
}

// URL is a redis:// URL naming the first node as the seed and the others as
// addr parameters (go-redis's ParseClusterURL form), with the password if
// the nodes have one.
func (c *Cluster) URL() string {
	u, err := url.Parse(c.Nodes[0].URL())
	if err != nil {
		c.t.Fatal(err)
	}
	u.Path = ""
	q := url.Values{}
	for _, s := range c.Nodes[1:] {
		q.Add("addr", s.Addr())
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// WaitHealthy waits until every running node reports cluster_state:ok, they
// agree on three masters and every master that has a replica sees it
// online, failing t after a generous deadline.
func (c *Cluster) WaitHealthy() {
	c.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		if last = c.healthy(); last == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatalf("redistest: cluster not healthy within 60s: %v", last)
}

func (c *Cluster) healthy() error {
	for _, s := range c.Nodes {
		if !s.Running() {
			continue
		}
		info, err := s.Command("CLUSTER", "INFO")
		if err != nil {
			return fmt.Errorf("%s: CLUSTER INFO: %w", s.Addr(), err)
		}
		if !strings.Contains(info, "cluster_state:ok") {
			return fmt.Errorf("%s: cluster not ok", s.Addr())
		}
	}
	masters, err := c.Masters()
	if err != nil {
		return err
	}
	if len(masters) != 3 {
		return fmt.Errorf("%d masters, want 3", len(masters))
	}
	for _, m := range masters {
		info, err := m.Command("INFO", "replication")
		if err != nil {
			return fmt.Errorf("%s: INFO replication: %w", m.Addr(), err)
		}
		if !strings.Contains(info, "state=online") {
			return fmt.Errorf("master %s has no replica online", m.Addr())
		}
	}
	return nil
}

// Masters returns the running nodes that the cluster holds to be masters
// serving slots, as the first running node sees it.
func (c *Cluster) Masters() ([]*Server, error) {
	lines, err := c.nodes()
	if err != nil {
		return nil, err
	}
	var masters []*Server
	for _, f := range lines {
		if strings.Contains(f[2], "master") && !strings.Contains(f[2], "fail") && len(f) > 8 {
			if s := c.byAddr(f[1]); s != nil && s.Running() {
				masters = append(masters, s)
			}
		}
	}
	return masters, nil
}

// IsMaster reports whether s is running and holds the master role.
func (s *Server) IsMaster() bool {
	info, err := s.Command("INFO", "replication")
	return err == nil && strings.Contains(info, "role:master")
}

// ReplicaOf returns the running replica of master, nil if it has none.
func (c *Cluster) ReplicaOf(master *Server) *Server {
	c.t.Helper()
	lines, err := c.nodes()
	if err != nil {
		c.t.Fatal(err)
	}
	var masterID string
	for _, f := range lines {
		if c.byAddr(f[1]) == master {
			masterID = f[0]
		}
	}
	for _, f := range lines {
		if f[3] == masterID {
			if s := c.byAddr(f[1]); s != nil && s.Running() {
				return s
			}
		}
	}
	return nil
}

// ID returns the cluster's id of node s.
func (c *Cluster) ID(s *Server) string {
	c.t.Helper()
	lines, err := c.nodes()
	if err != nil {
		c.t.Fatal(err)
	}
	for _, f := range lines {
		if c.byAddr(f[1]) == s {
			return f[0]
		}
	}
	c.t.Fatalf("redistest: node %s is not in the cluster", s.Addr())
	return ""
}

// nodes returns CLUSTER NODES from the first running node, split into fields.
func (c *Cluster) nodes() ([][]string, error) {
	for _, s := range c.Nodes {
		if !s.Running() {
			continue
		}
		out, err := s.Command("CLUSTER", "NODES")
		if err != nil {
			return nil, fmt.Errorf("%s: CLUSTER NODES: %w", s.Addr(), err)
		}
		var lines [][]string
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if f := strings.Fields(line); len(f) >= 8 {
				lines = append(lines, f)
			}
		}
		return lines, nil
	}
	return nil, fmt.Errorf("no node is running")
}

// byAddr finds a node by its "ip:port@bus" or "ip:port" address.
func (c *Cluster) byAddr(addr string) *Server {
	addr, _, _ = strings.Cut(addr, "@")
	for _, s := range c.Nodes {
		if s.Addr() == addr {
			return s
		}
	}
	return nil
}

// CLI runs redis-cli with args (e.g. "--cluster", "rebalance", addr), with
// the nodes' password, and returns its output.
func (c *Cluster) CLI(args ...string) (string, error) {
	if p := c.Nodes[0].cfg.password; p != "" {
		args = append(args, "-a", p, "--no-auth-warning")
	}
	out, err := exec.Command("redis-cli", args...).CombinedOutput()
	return string(out), err
}
