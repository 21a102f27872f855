//go:build linux

package main

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/orderstream/orderstream/shared/broker/redistest"
)

// A rolling update done the way each orchestrator of deploy/ does it, in
// front of the same nginx (deploy/nginx) and three instances sharing one
// redis-server as TestBehindNginxThroughRestarts, at a small scale and with
// every duration shortened. nginx stands for the load balancer: a reload
// adds or removes an instance, and the workers the reload retires keep the
// connections they hold, as a proxy keeps established connections to an
// endpoint that left (Kubernetes) or as an ALB keeps a deregistered
// target's until its deregistration delay (ECS: worker_shutdown_timeout).
// Every client must get every event once, in order, and no error.

// rollout is one simulated update's fleet: redis, nginx, the instances in
// the proxy, and the clients.
type rollout struct {
	t         *testing.T
	env       func(addr string) map[string]string
	proxy     *nginxProxy
	h1        *http.Client
	live      []*process // in the proxy's upstream block, in order
	addrOf    map[*process]string
	followers []*follower
	orders    int
	published chan error
	publishes struct {
		sync.Mutex
		codes map[int]int // every answer's status, 201s included
		errs  []string
	}
}

// rolloutPerOrder streams watch each of rolloutOrders orders, half of them
// over HTTP/2: 60 streams in make test; `make test-rollout` runs more
// (ORDERSTREAM_ROLLOUT_ORDERS).
const rolloutPerOrder = 3

func rolloutOrders(t *testing.T) int {
	v := os.Getenv("ORDERSTREAM_ROLLOUT_ORDERS")
	if v == "" {
		return 20
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("ORDERSTREAM_ROLLOUT_ORDERS=%q: want a positive number", v)
	}
	return n
}

func startRollout(t *testing.T, env map[string]string, nginx nginxOptions, roundGap time.Duration) *rollout {
	t.Helper()
	skipShort(t, "nginx in front of three built instances on redis-server")
	redis := redistest.Start(t)
	r := &rollout{t: t, addrOf: map[*process]string{}, published: make(chan error, 1), orders: rolloutOrders(t)}
	r.publishes.codes = map[int]int{}
	r.env = func(addr string) map[string]string {
		e := map[string]string{"ADDR": addr, "REDIS_URL": redis.URL(), "HEARTBEAT_INTERVAL": "1s",
			"RETRY_INTERVAL": "500ms", "RETRY_JITTER": "500ms", "METRICS": "true"}
		for k, v := range env {
			e[k] = v
		}
		return e
	}
	for range 3 {
		r.live = append(r.live, r.start())
	}
	nginx.upstreams = r.addrs()
	nginx.streamReadTimeout = "3s"
	r.proxy = startNginxWith(t, nginx)
	h2, h1 := r.proxy.clients()
	r.h1 = h1
	stop := make(chan struct{})
	var running sync.WaitGroup
	t.Cleanup(func() { close(stop); running.Wait() })
	ids := make([]string, r.orders)
	for i := range ids {
		ids[i] = newID()
	}
	for i := range r.orders * rolloutPerOrder {
		client := h2
		if i%2 == 1 {
			client = h1
		}
		f := &follower{order: ids[i%r.orders], client: client, protos: map[int]bool{}}
		r.followers = append(r.followers, f)
		running.Go(func() { f.run(r.proxy.URL, stop) })
	}
	for _, id := range ids {
		r.publish(id, "Created")
	}
	waitFor(t, "every follower's first event", func() bool {
		return !slices.ContainsFunc(r.followers, func(f *follower) bool {
			f.mu.Lock()
			defer f.mu.Unlock()
			return len(f.statuses) == 0
		})
	})
	// The rest of each order while the instances are replaced: a status of
	// every order each roundGap, so that orders stay open (and their streams
	// with them) for the whole update.
	go func() {
		for _, status := range happyPath[1:] {
			round := time.Now()
			for _, id := range ids {
				r.publish(id, status)
				time.Sleep(min(25*time.Millisecond, roundGap/2/time.Duration(len(ids))))
			}
			time.Sleep(time.Until(round.Add(roundGap)))
		}
		r.published <- nil
	}()
	return r
}

// start runs a new instance on a fresh address (a new pod or task) and
// waits until its /healthz answers 200: ready, or healthy in the target group.
func (r *rollout) start() *process {
	addr := freeAddr(r.t)
	p := startProcess(r.t, r.env(addr))
	waitForStatus(r.t, "the new instance's readiness", p.URL+"/healthz", http.StatusOK)
	r.addrOf[p] = addr
	return p
}

func (r *rollout) addrs() []string {
	var a []string
	for _, p := range r.live {
		a = append(a, r.addrOf[p])
	}
	return a
}

// publish publishes through the proxy as a publisher that may retry does,
// with an Idempotency-Key, recording every answer: the test wants each to be
// 201. The key also lets net/http resend a POST on a keep-alive connection
// the proxy closed as the request went out (a reload retires its workers),
// as it resends a GET; a transport error after that is retried here and
// recorded.
func (r *rollout) publish(id, status string) {
	for attempt := range 3 {
		req, _ := http.NewRequest(http.MethodPost, r.proxy.URL+"/orders/"+id+"/events", strings.NewReader(`{"status":"`+status+`"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", "rollout-"+status)
		res, err := r.h1.Do(req)
		r.publishes.Lock()
		if err != nil {
			r.publishes.errs = append(r.publishes.errs, fmt.Sprintf("attempt %d: %v", attempt+1, err))
			r.publishes.Unlock()
			continue
		}
		res.Body.Close()
		r.publishes.codes[res.StatusCode]++
		r.publishes.Unlock()
		return
	}
}

// openStreams reads the streams_open gauge of an instance (METRICS=true).
func openStreams(t *testing.T, p *process) (int, error) {
	res, err := http.Get(p.URL + "/metrics")
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "orderstream_streams_open "); ok {
			return strconv.Atoi(v)
		}
	}
	return 0, fmt.Errorf("no orderstream_streams_open in /metrics")
}

// stopWithin sends SIGTERM and waits for a clean exit within grace, as the
// kubelet (terminationGracePeriodSeconds) and ECS (stopTimeout) do; past
// it they SIGKILL, which the test counts as a failure: the drain did not fit.
func (r *rollout) stopWithin(p *process, grace time.Duration) {
	r.t.Helper()
	health := watchHealth(p.URL)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		r.t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(grace):
		p.kill()
		r.t.Errorf("instance %s still running %v after SIGTERM: killed, mid-drain", r.addrOf[p], grace)
		return
	}
	if !p.cmd.ProcessState.Success() {
		r.t.Errorf("instance %s exited with %v", r.addrOf[p], p.cmd.ProcessState)
	}
	codes := <-health
	if i := slices.Index(codes, http.StatusServiceUnavailable); i < 0 || slices.ContainsFunc(codes[i:], func(c int) bool { return c != http.StatusServiceUnavailable }) {
		r.t.Errorf("instance %s's /healthz from SIGTERM to exit: %v, want 503 from the drain's start", r.addrOf[p], codes)
	}
}

// check waits for every order's end and holds every client to it: each
// status once and in order, no id twice, no error from the proxy, and
// every publish answered 201.
func (r *rollout) check() {
	t := r.t
	t.Helper()
	if err := <-r.published; err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every follower to reach the end of its order", func() bool {
		return !slices.ContainsFunc(r.followers, func(f *follower) bool {
			f.mu.Lock()
			defer f.mu.Unlock()
			return !f.done
		})
	})
	want := strings.Join(happyPath, ",")
	var reconnects int
	for i, f := range r.followers {
		f.mu.Lock()
		if got := strings.Join(f.statuses, ","); got != want {
			t.Errorf("follower %d (order %s) got %s, want each status once, in order: %s", i, f.order, got, want)
		}
		for j := 1; j < len(f.ids); j++ {
			if f.ids[j] == f.ids[j-1] {
				t.Errorf("follower %d got id %s twice", i, f.ids[j])
			}
		}
		if len(f.connectErrors) > 0 {
			t.Errorf("follower %d got errors through the proxy: %v", i, f.connectErrors)
		}
		reconnects += len(f.ends)
		f.mu.Unlock()
	}
	r.publishes.Lock()
	defer r.publishes.Unlock()
	created := r.publishes.codes[http.StatusCreated]
	if created != r.orders*len(happyPath) || len(r.publishes.codes) != 1 {
		t.Errorf("publishes answered %v (transport errors, retried: %v): want %d answers, all 201", r.publishes.codes, r.publishes.errs, r.orders*len(happyPath))
	}
	t.Logf("%d streams: %d reconnects, every event once; %d publishes, all 201 (%d transport errors retried: %v)",
		len(r.followers), reconnects, created, len(r.publishes.errs), r.publishes.errs)
}

// TestRollingUpdateKubernetes: a Deployment's rolling update with maxSurge
// 1 and maxUnavailable 0 (deploy/kubernetes). For each old pod: a new one
// starts and becomes ready (it joins the endpoints); the old one is
// deleted, so its endpoint is removed, which reaches the proxy after a
// propagation delay, while the kubelet runs the preStop sleep; then
// SIGTERM, and the pod must exit inside terminationGracePeriodSeconds.
func TestRollingUpdateKubernetes(t *testing.T) {
	const (
		drain       = 1500 * time.Millisecond
		preStop     = 1500 * time.Millisecond
		propagation = 500 * time.Millisecond // under preStop, as in the manifests (10 s)
	)
	// The manifests' rule: preStop + SHUTDOWN_DRAIN + the grace, and a margin.
	grace := preStop + drain + shutdownGrace + 5*time.Second
	r := startRollout(t, map[string]string{"SHUTDOWN_DRAIN": drain.String()}, nginxOptions{}, 2*time.Second)
	for range 3 {
		old := r.live[0]
		fresh := r.start()
		r.live = append(r.live, fresh)
		r.proxy.reload(t, r.addrs())

		deleted := time.Now()
		r.live = r.live[1:]
		time.Sleep(propagation)
		r.proxy.reload(t, r.addrs()) // the endpoint is gone; established streams stay
		time.Sleep(time.Until(deleted.Add(preStop)))
		r.stopWithin(old, grace-time.Since(deleted))
	}
	r.check()
}

// TestRollingUpdateECS: an ECS deployment with minimumHealthyPercent 100
// and maximumPercent 200 (deploy/ecs). The new tasks start and pass their
// health checks; the old ones are deregistered: the proxy sends them
// nothing new and keeps their open streams until the deregistration delay,
// when it cuts what is left. Each stream ends itself after
// MAX_STREAM_DURATION, shorter than the delay, so nothing is left to cut:
// ECS sees the targets empty, sends SIGTERM, and each task must exit
// inside stopTimeout.
func TestRollingUpdateECS(t *testing.T) {
	const (
		lifetime = 2 * time.Second // MAX_STREAM_DURATION
		// The template's rule: the lifetime and the longest request.
		deregistration = lifetime + 2*time.Second
		drain          = time.Second
	)
	stopTimeout := drain + shutdownGrace + 5*time.Second
	r := startRollout(t, map[string]string{"SHUTDOWN_DRAIN": drain.String(), "MAX_STREAM_DURATION": lifetime.String()},
		nginxOptions{workerShutdownTimeout: deregistration}, 2*time.Second)
	old := slices.Clone(r.live)
	for range 3 {
		r.live = append(r.live, r.start())
	}
	r.proxy.reload(t, r.addrs())

	deregistered := time.Now()
	r.live = r.live[3:]
	r.proxy.reload(t, r.addrs())
	// ECS waits until a target holds nothing or its delay is over. Empty
	// half a second before the proxy's own cut, so that the cut is not
	// mistaken for the streams ending by themselves.
	cut := deregistered.Add(deregistration - 500*time.Millisecond)
	for _, p := range old {
		for {
			n, err := openStreams(t, p)
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				break
			}
			if time.Now().After(cut) {
				t.Errorf("instance %s still holds %d streams when its deregistration delay ends: the load balancer cuts them at once", r.addrOf[p], n)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if !t.Failed() {
		t.Logf("the deregistered instances held no stream %v after deregistration (delay %v)", time.Since(deregistered).Round(10*time.Millisecond), deregistration)
	}
	for _, p := range old {
		r.stopWithin(p, stopTimeout)
	}
	r.check()
}
