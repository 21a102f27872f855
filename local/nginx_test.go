//go:build linux

package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/orderstream/orderstream/shared/broker/redistest"
	"github.com/orderstream/orderstream/shared/sse"
)

// These tests run the service as users deploy it: deploy/nginx's
// configuration in front of three instances sharing one redis-server,
// clients through nginx over TLS (HTTP/2 and HTTP/1.1), while every
// instance is restarted in turn with SIGTERM and then one is killed.

// nginxProxy is a running nginx.
type nginxProxy struct {
	URL    string // https://127.0.0.1:port
	CAPool *x509.CertPool

	dir             string
	site, locations string // with upstreamsMarker and generationMarker
	master          *os.Process
	mu              sync.Mutex
	generation      int
}

// freeAddr returns a loopback address nobody listens on (for a server that
// must come back on the same port).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// replaceExactly replaces old by new in s, failing the test unless old
// occurs exactly n times: the deploy files changed under the test.
func replaceExactly(t *testing.T, s, old, new string, n int) string {
	t.Helper()
	if got := strings.Count(s, old); got != n {
		t.Fatalf("deploy/nginx: %q occurs %d times, want %d", old, got, n)
	}
	return strings.ReplaceAll(s, old, new)
}

// selfSigned writes a certificate for 127.0.0.1 and its key into dir.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "orderstream test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, pool
}

// startNginx runs nginx with deploy/nginx's files, changed only where a
// test must: the instances' addresses, the ports, the certificate, and the
// streams' read timeout (streamReadTimeout, so that a test with a short
// heartbeat catches a proxy that holds heartbeats back). It fails, never
// skips, when nginx is missing: `make deps` installs it.
func startNginx(t *testing.T, upstreams []string, streamReadTimeout string) *nginxProxy {
	t.Helper()
	return startNginxWith(t, nginxOptions{upstreams: upstreams, streamReadTimeout: streamReadTimeout})
}

// nginxOptions are what a test changes in deploy/nginx's files.
type nginxOptions struct {
	upstreams         []string
	streamReadTimeout string
	// workerShutdownTimeout, when set, is how long the workers a reload
	// retires keep their connections before nginx closes them: what a load
	// balancer's deregistration delay does to a deregistered target's.
	workerShutdownTimeout time.Duration
}

// upstreamLines are the upstream block's server lines for addrs, as
// deploy/nginx writes them.
func upstreamLines(addrs []string) string {
	var b strings.Builder
	for _, a := range addrs {
		fmt.Fprintf(&b, "    server %s max_fails=0;\n", a)
	}
	return b.String()
}

func startNginxWith(t *testing.T, o nginxOptions) *nginxProxy {
	t.Helper()
	skipShort(t, "a real nginx")
	upstreams, streamReadTimeout := o.upstreams, o.streamReadTimeout
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/nginx"); serr != nil {
			t.Fatal("nginx is missing: make deps installs it (apt-get install nginx)")
		}
		bin = "/usr/sbin/nginx"
	}
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	tlsAddr, plainAddr := freeAddr(t), freeAddr(t)

	site, err := os.ReadFile("../deploy/nginx/orderstream.conf")
	if err != nil {
		t.Fatal(err)
	}
	conf := string(site)
	// The upstream block's servers become a marker that reload fills in.
	for i := range 3 {
		marker := ""
		if i == 0 {
			marker = upstreamsMarker
		}
		conf = replaceExactly(t, conf, fmt.Sprintf("    server 127.0.0.1:%d max_fails=0;\n", 8081+i), marker, 1)
	}
	conf = replaceExactly(t, conf, "listen 443 ssl http2;", "listen "+tlsAddr+" ssl http2;", 1)
	conf = replaceExactly(t, conf, "listen 80;", "listen "+plainAddr+";", 1)
	conf = replaceExactly(t, conf, "/etc/ssl/certs/orderstream.pem", certFile, 1)
	conf = replaceExactly(t, conf, "/etc/ssl/private/orderstream.key", keyFile, 1)
	conf = replaceExactly(t, conf, "/etc/nginx/orderstream-locations.conf", filepath.Join(dir, "locations.conf"), 1)
	locations, err := os.ReadFile("../deploy/nginx/orderstream-locations.conf")
	if err != nil {
		t.Fatal(err)
	}
	loc := replaceExactly(t, string(locations), "proxy_read_timeout 60s;", "proxy_read_timeout "+streamReadTimeout+";", 1)
	// Tells which configuration the workers that take new connections run.
	loc += "\nlocation = /__generation { return 200 \"" + generationMarker + "\"; }\n"

	user := ""
	if os.Geteuid() == 0 {
		user = "user root;" // the workers must read the test's private directory
	}
	if o.workerShutdownTimeout > 0 {
		user += fmt.Sprintf("\nworker_shutdown_timeout %dms;", o.workerShutdownTimeout.Milliseconds())
	}
	main := fmt.Sprintf(`daemon off;
%s
worker_processes 1;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path %[2]s/body;
    proxy_temp_path %[2]s/proxy;
    fastcgi_temp_path %[2]s/fastcgi;
    uwsgi_temp_path %[2]s/uwsgi;
    scgi_temp_path %[2]s/scgi;
    include %[2]s/site.conf;
}
`, user, dir)
	p := &nginxProxy{CAPool: pool, dir: dir, site: conf, locations: loc}
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(main), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.writeConf(upstreams); err != nil {
		t.Fatal(err)
	}
	args := []string{"-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", filepath.Join(dir, "nginx.conf")}
	if out, err := exec.Command(bin, append(args, "-t")...).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nginx: %v", err)
	}
	p.master = cmd.Process
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM) // fast shutdown, workers included
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if b, _ := os.ReadFile(filepath.Join(dir, "error.log")); len(b) > 0 && testing.Verbose() {
			t.Logf("nginx error.log:\n%s", b)
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", tlsAddr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-exited:
			t.Fatal("nginx exited at start (see its error log above)")
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx does not listen on %s", tlsAddr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.URL = "https://" + tlsAddr
	return p
}

const (
	upstreamsMarker  = "#UPSTREAMS#\n"
	generationMarker = "#GENERATION#"
)

// writeConf writes the site and its locations for the next generation.
func (p *nginxProxy) writeConf(upstreams []string) error {
	p.generation++
	site := strings.Replace(p.site, upstreamsMarker, upstreamLines(upstreams), 1)
	loc := strings.Replace(p.locations, generationMarker, strconv.Itoa(p.generation), 1)
	if err := os.WriteFile(filepath.Join(p.dir, "site.conf"), []byte(site), 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(p.dir, "locations.conf"), []byte(loc), 0o600)
}

// reload points nginx at upstreams, as a deployment's tooling does when it
// adds or removes an instance: a new configuration and SIGHUP. nginx starts
// new workers for new connections; the old ones finish what they hold
// (streams included) and exit, or close it after workerShutdownTimeout.
// reload returns once new connections reach the new workers.
func (p *nginxProxy) reload(t *testing.T, upstreams []string) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.writeConf(upstreams); err != nil {
		t.Fatal(err)
	}
	if err := p.master.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	want := strconv.Itoa(p.generation)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: p.CAPool}, DisableKeepAlives: true,
	}}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if res, err := client.Get(p.URL + "/__generation"); err == nil {
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if string(b) == want {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx did not take configuration %s within 20s", want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// clients returns an HTTP/2 client and an HTTP/1.1 one that trust p.
func (p *nginxProxy) clients() (h2, h1 *http.Client) {
	tlsConfig := &tls.Config{RootCAs: p.CAPool}
	h2 = &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConfig.Clone(), ForceAttemptHTTP2: true}}
	// A custom TLS config without ForceAttemptHTTP2 keeps to HTTP/1.1.
	h1 = &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConfig.Clone(), MaxIdleConnsPerHost: 64}}
	return h2, h1
}

// follower follows one order as a browser's EventSource does: it reconnects
// after each end with its Last-Event-ID, waiting the retry: it was sent,
// until the order's end answers 204.
type follower struct {
	order  string
	client *http.Client

	mu            sync.Mutex
	statuses      []string
	ids           []string
	protos        map[int]bool
	ends          []time.Time // when a stream ended
	connectErrors []string
	longestWait   time.Duration // from a stream's end to the next one's start
	done          bool
}

func (f *follower) run(base string, stop <-chan struct{}) {
	retry := time.Second // until the service says otherwise
	last := ""
	var endedAt time.Time
	for {
		req, _ := http.NewRequest(http.MethodGet, base+"/orders/"+f.order+"/stream", nil)
		if last != "" {
			req.Header.Set("Last-Event-ID", last)
		}
		res, err := f.client.Do(req)
		switch {
		case err != nil:
			f.record(func() { f.connectErrors = append(f.connectErrors, err.Error()) })
		case res.StatusCode == http.StatusNoContent:
			res.Body.Close()
			f.record(func() { f.done = true })
			return
		case res.StatusCode != http.StatusOK:
			res.Body.Close()
			f.record(func() { f.connectErrors = append(f.connectErrors, res.Status) })
		default:
			if !endedAt.IsZero() {
				wait := time.Since(endedAt)
				f.record(func() { f.longestWait = max(f.longestWait, wait) })
			}
			f.record(func() { f.protos[res.ProtoMajor] = true })
			dec := sse.NewDecoder(res.Body)
			for {
				m, err := dec.Next()
				if err != nil {
					break
				}
				var u update
				if json.Unmarshal([]byte(m.Data), &u) != nil {
					u.Status = "undecodable: " + m.Data
				}
				last = m.ID
				f.record(func() { f.statuses, f.ids = append(f.statuses, u.Status), append(f.ids, m.ID) })
			}
			res.Body.Close()
			if r, ok := dec.Retry(); ok {
				retry = r
			}
			endedAt = time.Now()
			f.record(func() { f.ends = append(f.ends, endedAt) })
		}
		select {
		case <-stop:
			return
		case <-time.After(retry):
		}
	}
}

func (f *follower) record(change func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	change()
}

func (f *follower) endCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.ends)
}

// publishThrough publishes through the proxy, retrying until it is sure the
// status was accepted exactly once: after an error or a 5xx it asks for the
// order's latest status, since the instance may have accepted the publish
// before it went away.
func publishThrough(client *http.Client, base, id, status string) error {
	deadline := time.Now().Add(30 * time.Second)
	var lastErr string
	for time.Now().Before(deadline) {
		res, err := client.Post(base+"/orders/"+id+"/events", "application/json", strings.NewReader(`{"status":"`+status+`"}`))
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusCreated {
				return nil
			}
			lastErr = res.Status
		} else {
			lastErr = err.Error()
		}
		if err == nil && res.StatusCode < 500 && res.StatusCode != http.StatusConflict {
			return fmt.Errorf("publish %s: %s", status, res.Status)
		}
		// Applied by an attempt whose answer was lost?
		if res, err := client.Get(base + "/orders/" + id); err == nil {
			var u update
			json.NewDecoder(res.Body).Decode(&u)
			res.Body.Close()
			if res.StatusCode == http.StatusOK && u.Status == status {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("publish %s: not accepted within 30s (last: %s)", status, lastErr)
}

// watchHealth polls an instance's /healthz from the moment it was sent
// SIGTERM until it stops listening; it returns every answer's status.
func watchHealth(url string) <-chan []int {
	out := make(chan []int, 1)
	go func() {
		var codes []int
		client := &http.Client{Timeout: 5 * time.Second}
		for {
			res, err := client.Get(url + "/healthz")
			if err != nil {
				out <- codes
				return
			}
			res.Body.Close()
			codes = append(codes, res.StatusCode)
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return out
}

func TestBehindNginxThroughRestarts(t *testing.T) {
	const (
		drain        = 2 * time.Second
		retry        = 500 * time.Millisecond
		jitter       = 500 * time.Millisecond
		orders       = 40
		perOrder     = 3 // 120 streams
		publishEvery = 50 * time.Millisecond
		// A loaded machine (two cores, the race detector, four processes)
		// may be slow to reconnect: the bound is generous on top.
		margin = 10 * time.Second
	)
	redis := redistest.Start(t)
	addrs := []string{freeAddr(t), freeAddr(t), freeAddr(t)}
	envFor := func(addr string) map[string]string {
		return map[string]string{
			"ADDR": addr, "REDIS_URL": redis.URL(), "HEARTBEAT_INTERVAL": "1s",
			"SHUTDOWN_DRAIN": drain.String(), "RETRY_INTERVAL": retry.String(), "RETRY_JITTER": jitter.String(),
		}
	}
	procs := make([]*process, len(addrs))
	for i, a := range addrs {
		procs[i] = startProcess(t, envFor(a))
	}
	// Three heartbeats: a proxy that held them back would cut the streams.
	proxy := startNginx(t, addrs, "3s")
	h2, h1 := proxy.clients()

	var followers []*follower
	stop := make(chan struct{})
	var running sync.WaitGroup
	t.Cleanup(func() { close(stop); running.Wait() })
	ids := make([]string, orders)
	for i := range ids {
		ids[i] = newID()
	}
	for i := range orders * perOrder {
		client := h2
		if i%2 == 1 {
			client = h1
		}
		f := &follower{order: ids[i%orders], client: client, protos: map[int]bool{}}
		followers = append(followers, f)
		running.Go(func() { f.run(proxy.URL, stop) })
	}
	// Every order exists and every follower has its stream before the quiet
	// phase: nothing should end while no instance restarts.
	for _, id := range ids {
		if err := publishThrough(h1, proxy.URL, id, "Created"); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "every follower's first event", func() bool {
		for _, f := range followers {
			f.mu.Lock()
			n := len(f.statuses)
			f.mu.Unlock()
			if n == 0 {
				return false
			}
		}
		return true
	})
	time.Sleep(4 * time.Second)
	for i, f := range followers {
		if n := f.endCount(); n != 0 {
			t.Fatalf("follower %d's stream ended %d times while nothing restarted: the proxy cut it between heartbeats", i, n)
		}
	}

	// Publish the rest while the instances restart.
	published := make(chan error, 1)
	go func() {
		for _, status := range happyPath[1:] {
			for _, id := range ids {
				if err := publishThrough(h1, proxy.URL, id, status); err != nil {
					published <- err
					return
				}
				time.Sleep(publishEvery)
			}
		}
		published <- nil
	}()

	for i, p := range procs {
		health := watchHealth(p.URL)
		// Polling begins before the signal: 200s may come first, then only
		// 503s until the instance stops listening.
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case <-p.done:
		case <-time.After(drain + shutdownGrace + margin):
			t.Fatalf("instance %d did not exit after SIGTERM", i)
		}
		if !p.cmd.ProcessState.Success() {
			t.Fatalf("instance %d exited with %v", i, p.cmd.ProcessState)
		}
		codes := <-health
		first503 := slices.Index(codes, http.StatusServiceUnavailable)
		if first503 < 0 {
			t.Fatalf("instance %d never answered /healthz 503 while draining: %v", i, codes)
		}
		for _, c := range codes[first503:] {
			if c != http.StatusServiceUnavailable {
				t.Fatalf("instance %d answered /healthz %d after its drain began: %v", i, c, codes)
			}
		}
		procs[i] = startProcess(t, envFor(addrs[i])) // healthy: the next may go
	}

	// Then a crash: the survivors take its clients.
	killed := procs[0]
	killed.kill()
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every follower to reach the end of its order", func() bool {
		for _, f := range followers {
			f.mu.Lock()
			done := f.done
			f.mu.Unlock()
			if !done {
				return false
			}
		}
		return true
	})

	want := strings.Join(happyPath, ",")
	bound := retry + jitter + drain + margin
	var reconnects, connectErrors int
	var longest time.Duration
	for i, f := range followers {
		f.mu.Lock()
		if got := strings.Join(f.statuses, ","); got != want {
			t.Errorf("follower %d (order %s) got %s, want each status once, in order: %s", i, f.order, got, want)
		}
		for j := 1; j < len(f.ids); j++ {
			if f.ids[j] == f.ids[j-1] {
				t.Errorf("follower %d got id %s twice", i, f.ids[j])
			}
		}
		if f.longestWait > bound {
			t.Errorf("follower %d waited %v for a stream, more than retry+jitter+drain+margin (%v)", i, f.longestWait, bound)
		}
		wantProto := 2 - i%2
		if len(f.protos) != 1 || !f.protos[wantProto] {
			t.Errorf("follower %d spoke HTTP/%v, want HTTP/%d only", i, f.protos, wantProto)
		}
		reconnects += len(f.ends)
		connectErrors += len(f.connectErrors)
		longest = max(longest, f.longestWait)
		f.mu.Unlock()
	}
	t.Logf("%d streams through nginx: %d reconnects, %d connect errors, longest wait %v", len(followers), reconnects, connectErrors, longest)
	// Every instance but the killed one is healthy at every moment of the
	// test, and nginx moves a request that can't connect on to the next:
	// no client should ever get an error from it.
	for i, f := range followers {
		if len(f.connectErrors) > 0 {
			t.Errorf("follower %d got errors from the proxy: %v", i, f.connectErrors)
		}
	}
}
