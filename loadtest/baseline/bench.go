package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/orderstream/orderstream/loadtest/ssestream"
	"github.com/orderstream/orderstream/shared/sse"
)

// bench is the lean client: raw TCP, one goroutine per stream reading with
// the service's sse.Decoder, no k6. It runs the contract's rounds against
// the raw server and orderstream (alternating when given both), so that the
// client and the box are the same for each and only the server differs.
//
// A round: fresh orders; n streams opened to them (i % k) and the time until
// every one was accepted and had its first bytes (the response head), which
// is reported and kept out of deliveries/s; then every order's six statuses
// published through simulate (at once, or one per interval); each stream
// reads them to the terminal event and then to the server's end of the
// stream. The next round opens fresh streams to fresh orders.
func bench(args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	service := fs.String("service", "", "orderstream base URL (http://127.0.0.1:PORT)")
	raw := fs.String("raw", "", "raw server base URL (baseline serve)")
	rawName := fs.String("raw-name", "raw", "the raw server's name in the output (raw-loop, raw-goroutine, raw-writev)")
	n := fs.Int("n", 1000, "concurrent streams")
	k := fs.Int("k", 10, "orders; stream i watches order i % k")
	interval := fs.String("interval", "0s", "simulate interval: 0s publishes every status at once")
	rounds := fs.Int("rounds", 3, "rounds per server, alternating")
	sources := fs.Int("sources", 8, "dial from 127.0.0.1 .. 127.0.0.N in turn (each has ~28k ephemeral ports)")
	hold := fs.Duration("hold", 0, "instead: hold n idle streams this long (for the servers' memory per stream)")
	steps := fs.Int("steps", 5, "with -hold: open the streams in this many steps, reading the servers' RSS after each")
	out := fs.String("json", "", "write the results here as JSON")
	rawPID := fs.Int("raw-pid", 0, "the raw server's pid: report its CPU time per delivery and its RSS after each round")
	servicePID := fs.Int("service-pid", 0, "orderstream's pid: report its CPU time per delivery and its RSS after each round")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *n < 1 || *k < 1 || *k > *n || *rounds < 1 || *sources < 1 || *sources > 250 {
		return errors.New("want n >= k >= 1, rounds >= 1, 1 <= sources <= 250")
	}
	if d, err := time.ParseDuration(*interval); err != nil || d < 0 {
		return fmt.Errorf("-interval %q: want a duration >= 0", *interval)
	}
	if *rawName == "" || *rawName == "orderstream" {
		return fmt.Errorf("-raw-name %q: want a name other than orderstream", *rawName)
	}
	var srcs []net.IP
	for i := 1; i <= *sources; i++ {
		srcs = append(srcs, net.IPv4(127, 0, 0, byte(i)))
	}
	type target struct {
		name, base string
		pid        int
	}
	var targets []target
	if *raw != "" {
		targets = append(targets, target{*rawName, *raw, *rawPID})
	}
	if *service != "" {
		targets = append(targets, target{"orderstream", *service, *servicePID})
	}
	if len(targets) == 0 {
		return errors.New("give -raw, -service or both")
	}
	ctx := context.Background()

	if *hold > 0 {
		type holdResult struct {
			Name       string     `json:"name"`
			Streams    int        `json:"streams"`
			Held       int        `json:"held"`
			Heartbeats int64      `json:"heartbeats"`
			Memory     []memPoint `json:"memory"`
			// KiBPerStream is the slope from no streams to all of them.
			KiBPerStream float64 `json:"kibPerStream"`
			Box          box     `json:"box"`
		}
		var all []holdResult
		for _, t := range targets {
			before := loadAverage()
			held, hb, mem, err := holdStreams(ctx, t.base, t.pid, *n, *k, *steps, *hold, srcs)
			if err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
			hr := holdResult{Name: t.name, Streams: *n, Held: held, Heartbeats: hb, Memory: mem, Box: newBox(before)}
			line := fmt.Sprintf("%-12s held %d of %d streams for %v, %d heartbeats", t.name, held, *n, *hold, hb)
			if last := mem[len(mem)-1]; len(mem) > 1 && last.Streams > 0 {
				hr.KiBPerStream = float64(last.RSSKiB-mem[0].RSSKiB) / float64(last.Streams)
				line += fmt.Sprintf("; RSS %.1f MiB idle, %.1f MiB with %d: %.1f KiB per stream",
					float64(mem[0].RSSKiB)/1024, float64(last.RSSKiB)/1024, last.Streams, hr.KiBPerStream)
			}
			fmt.Println(line)
			all = append(all, hr)
			if held != *n {
				return fmt.Errorf("%s: held %d of %d streams", t.name, held, *n)
			}
		}
		if *out != "" {
			b, _ := json.MarshalIndent(all, "", "  ")
			return os.WriteFile(*out, append(b, '\n'), 0o644)
		}
		return nil
	}

	results := map[string]*summary{}
	for _, t := range targets {
		results[t.name] = &summary{Name: t.name, N: *n, K: *k, Interval: *interval, RSSStartKiB: rssKiB(t.pid), pid: t.pid,
			Box: box{LoadBefore: loadAverage()}}
	}
	var failed error
	for r := 0; r < *rounds && failed == nil; r++ {
		for _, t := range targets {
			rr, err := runRound(ctx, t.base, t.pid, *n, *k, *interval, srcs)
			s := results[t.name]
			s.add(rr)
			fmt.Printf("%-12s round %d: %s\n", t.name, r+1, rr)
			if err != nil {
				failed = fmt.Errorf("%s round %d: %w", t.name, r+1, err)
				break
			}
		}
	}
	fmt.Println()
	for _, t := range targets {
		fmt.Println(results[t.name].finish())
	}
	if s, b := results["orderstream"], results[*rawName]; s != nil && b != nil && b.PerSecond > 0 && b.P50 > 0 {
		fmt.Printf("\norderstream / %s: deliveries/s %.2f, p50 %.2fx, p95 %.2fx, p99 %.2fx, connect p50 %.2fx\n",
			*rawName, s.PerSecond/b.PerSecond, s.P50/b.P50, s.P95/b.P95, s.P99/b.P99, s.ConnectP50/b.ConnectP50)
		if s.CPUPerDelivery > 0 && b.CPUPerDelivery > 0 {
			fmt.Printf("server CPU per delivery: orderstream %.2fµs, %s %.2fµs: %s / orderstream = %.2f\n",
				s.CPUPerDelivery, *rawName, b.CPUPerDelivery, *rawName, b.CPUPerDelivery/s.CPUPerDelivery)
		}
	}
	if *out != "" {
		b, _ := json.MarshalIndent(results, "", "  ")
		if err := os.WriteFile(*out, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	if failed != nil {
		return failed
	}
	for _, s := range results {
		if s.Gaps+s.Duplicates+s.Errors > 0 || s.Delivered != s.Expected || s.Ended != s.N*s.Rounds {
			return fmt.Errorf("%s: %d of %d delivered, %d of %d streams ended by the server, %d gaps, %d duplicates, %d errors",
				s.Name, s.Delivered, s.Expected, s.Ended, s.N*s.Rounds, s.Gaps, s.Duplicates, s.Errors)
		}
	}
	return nil
}

const perOrder = 6 // Created..Delivered

type round struct {
	lat                     []float64 // ns, one per live event
	first, last             time.Time
	expected, delivered     int
	gaps, duplicates, errs  int64
	ended                   int // streams the server ended after their terminal event
	connectTime, fanOutTime time.Duration
	// The server's CPU time (user+system) while the streams connected,
	// and from then until every stream had ended.
	connectCPU, fanOutCPU time.Duration
	rssKiB                int64 // the server's RSS once the round was over
}

func (r round) window() time.Duration { return r.last.Sub(r.first) }

func (r round) perSecond() float64 {
	if r.window() <= 0 {
		return 0
	}
	return float64(r.delivered) / r.window().Seconds()
}

func (r round) String() string {
	p := percentiles(r.lat)
	return fmt.Sprintf("%d/%d delivered in %v (%.0f/s), latency p50 %.2fms p99 %.2fms, connect %v (server CPU %v), fan-out server CPU %v, ended %d, errors %d",
		r.delivered, r.expected, r.window().Round(time.Millisecond), r.perSecond(),
		p[0]/1e6, p[2]/1e6, r.connectTime.Round(time.Millisecond), r.connectCPU, r.fanOutCPU, r.ended, r.errs+r.gaps+r.duplicates)
}

// roundResult is one round in the JSON.
type roundResult struct {
	ConnectMS  float64 `json:"connectMs"`
	WindowMS   float64 `json:"windowMs"`
	Delivered  int     `json:"delivered"`
	Expected   int     `json:"expected"`
	PerSecond  float64 `json:"deliveriesPerSecond"`
	P50        float64 `json:"p50ms"`
	P99        float64 `json:"p99ms"`
	Ended      int     `json:"endedByServer"`
	Gaps       int64   `json:"gaps"`
	Duplicates int64   `json:"duplicates"`
	Errors     int64   `json:"errors"`
	RSSKiB     int64   `json:"rssKiB,omitempty"`
}

// box is how busy the machine was around a measurement: the load average
// (1, 5, 15 minutes) before and after, and the cores this process may use.
type box struct {
	LoadBefore string `json:"loadAverageBefore"`
	LoadAfter  string `json:"loadAverageAfter"`
	ClientCPUs int    `json:"clientCpus"`
	Cores      int    `json:"cores"`
}

func newBox(before string) box {
	return box{LoadBefore: before, LoadAfter: loadAverage(), ClientCPUs: runtime.GOMAXPROCS(0), Cores: onlineCores()}
}

// loadAverage is /proc/loadavg's first three fields ("" if unreadable).
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return ""
}

// onlineCores counts the machine's cores, whatever this process is pinned to.
func onlineCores() int {
	b, err := os.ReadFile("/sys/devices/system/cpu/online")
	if err != nil {
		return runtime.NumCPU()
	}
	n := 0
	for r := range strings.SplitSeq(strings.TrimSpace(string(b)), ",") {
		lo, hi, ok := strings.Cut(r, "-")
		a, _ := strconv.Atoi(lo)
		z := a
		if ok {
			z, _ = strconv.Atoi(hi)
		}
		n += z - a + 1
	}
	return n
}

type summary struct {
	Name       string  `json:"name"`
	N          int     `json:"streams"`
	K          int     `json:"orders"`
	Interval   string  `json:"interval"`
	Rounds     int     `json:"rounds"`
	Expected   int     `json:"expected"`
	Delivered  int     `json:"delivered"`
	Ended      int     `json:"endedByServer"`
	Seconds    float64 `json:"windowSeconds"`
	PerSecond  float64 `json:"deliveriesPerSecond"`
	P50        float64 `json:"p50ms"`
	P95        float64 `json:"p95ms"`
	P99        float64 `json:"p99ms"`
	Max        float64 `json:"maxms"`
	Gaps       int64   `json:"gaps"`
	Duplicates int64   `json:"duplicates"`
	Errors     int64   `json:"errors"`
	// The time to accept a round's streams (every one answered 200 and its
	// head read), over the rounds: median, 90th percentile, worst.
	ConnectP50 float64 `json:"connectP50ms"`
	ConnectP90 float64 `json:"connectP90ms"`
	ConnectMax float64 `json:"connectMaxms"`
	// The server's RSS before the first round, after the last (once it
	// had a second to settle) and the most after any round: what churn
	// leaves behind.
	RSSStartKiB int64 `json:"rssStartKiB,omitempty"`
	RSSAfterKiB int64 `json:"rssAfterKiB,omitempty"`
	RSSPeakKiB  int64 `json:"rssPeakKiB,omitempty"`
	// CPUPerDelivery is the server's CPU time (user+system, from
	// /proc/<pid>/stat) from the moment every stream was open until every
	// stream had ended, per delivered event, in µs; CPUPerConnect is its
	// CPU time while the streams connected, per stream. Unlike deliveries/s
	// they hold still when other work shares the cores.
	CPUPerDelivery float64       `json:"serverCpuPerDeliveryMicros,omitempty"`
	CPUPerConnect  float64       `json:"serverCpuPerConnectMicros,omitempty"`
	Box            box           `json:"box"`
	PerRound       []roundResult `json:"perRound"`
	cpu, connCPU   time.Duration
	lat            []float64
	connects       []float64
	pid            int
}

func (s *summary) add(r round) {
	s.Rounds++
	s.Expected += r.expected
	s.Delivered += r.delivered
	s.Ended += r.ended
	s.Seconds += r.window().Seconds()
	s.Gaps += r.gaps
	s.Duplicates += r.duplicates
	s.Errors += r.errs
	s.cpu += r.fanOutCPU
	s.connCPU += r.connectCPU
	s.lat = append(s.lat, r.lat...)
	connect := float64(r.connectTime) / 1e6
	s.connects = append(s.connects, connect)
	s.RSSPeakKiB = max(s.RSSPeakKiB, r.rssKiB)
	p := percentiles(slices.Clone(r.lat))
	s.PerRound = append(s.PerRound, roundResult{
		ConnectMS: connect, WindowMS: float64(r.window()) / 1e6, Delivered: r.delivered, Expected: r.expected,
		PerSecond: r.perSecond(), P50: p[0] / 1e6, P99: p[2] / 1e6, Ended: r.ended,
		Gaps: r.gaps, Duplicates: r.duplicates, Errors: r.errs, RSSKiB: r.rssKiB,
	})
}

func (s *summary) finish() string {
	if s.Seconds > 0 {
		s.PerSecond = float64(s.Delivered) / s.Seconds
	}
	p := percentiles(s.lat)
	s.P50, s.P95, s.P99, s.Max = p[0]/1e6, p[1]/1e6, p[2]/1e6, p[3]/1e6
	c := percentiles(s.connects)
	s.ConnectP50, s.ConnectMax = c[0], c[3]
	if len(s.connects) > 0 {
		s.ConnectP90 = s.connects[min(len(s.connects)-1, int(0.9*float64(len(s.connects))))]
	}
	if s.pid > 0 {
		time.Sleep(time.Second) // the last round's streams closed, their garbage collected or not
		s.RSSAfterKiB = rssKiB(s.pid)
	}
	s.Box = newBox(s.Box.LoadBefore)
	cpu := ""
	if s.cpu > 0 && s.Delivered > 0 {
		s.CPUPerDelivery = float64(s.cpu.Microseconds()) / float64(s.Delivered)
		s.CPUPerConnect = float64(s.connCPU.Microseconds()) / float64(s.N*s.Rounds)
		cpu = fmt.Sprintf("; server CPU %.2fµs per delivery, %.1fµs per stream connected", s.CPUPerDelivery, s.CPUPerConnect)
	}
	rss := ""
	if s.RSSAfterKiB > 0 {
		rss = fmt.Sprintf("; server RSS %.1f MiB before, %.1f MiB after %d rounds (most %.1f)",
			float64(s.RSSStartKiB)/1024, float64(s.RSSAfterKiB)/1024, s.Rounds, float64(s.RSSPeakKiB)/1024)
	}
	return fmt.Sprintf("%-12s %d streams over %d orders, %d rounds: %d/%d delivered, %.0f deliveries/s; latency ms p50 %.2f p95 %.2f p99 %.2f max %.2f; "+
		"connect ms p50 %.1f p90 %.1f max %.1f; ended by the server %d; gaps %d duplicates %d errors %d%s%s",
		s.Name, s.N, s.K, s.Rounds, s.Delivered, s.Expected, s.PerSecond, s.P50, s.P95, s.P99, s.Max,
		s.ConnectP50, s.ConnectP90, s.ConnectMax, s.Ended, s.Gaps, s.Duplicates, s.Errors, cpu, rss)
}

// percentiles returns p50, p95, p99 and max of v (sorted in place).
func percentiles(v []float64) [4]float64 {
	if len(v) == 0 {
		return [4]float64{}
	}
	slices.Sort(v)
	at := func(q float64) float64 { return v[min(len(v)-1, int(q*float64(len(v))))] }
	return [4]float64{at(0.50), at(0.95), at(0.99), v[len(v)-1]}
}

// cpuTime is the user+system CPU time of process pid so far (0 if pid is 0
// or unreadable), from /proc/<pid>/stat in clock ticks of 10 ms.
func cpuTime(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const tick = 10 * time.Millisecond // USER_HZ is 100 on Linux
	return time.Duration(utime+stime) * tick
}

func uuid4() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// dialer connects streams from the source addresses in turn, at most
// maxDialing at once so that the listen backlog never overflows.
type dialer struct {
	host  string
	srcs  []net.IP
	next  atomic.Uint64
	slots chan struct{}
}

const maxDialing = 256

func newDialer(base string, srcs []net.IP) (*dialer, error) {
	u, err := url.Parse(base)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("want an http://host:port base URL, got %q", base)
	}
	return &dialer{host: u.Host, srcs: srcs, slots: make(chan struct{}, maxDialing)}, nil
}

// open subscribes to order id and returns the connection and a decoder of
// its body, once the response head says 200: from then on the server has
// the subscription.
func (d *dialer) open(ctx context.Context, id string) (net.Conn, *sse.Decoder, error) {
	d.slots <- struct{}{}
	defer func() { <-d.slots }()
	src := d.srcs[(d.next.Add(1)-1)%uint64(len(d.srcs))]
	nd := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: src}}
	c, err := nd.DialContext(ctx, "tcp", d.host)
	if err != nil {
		return nil, nil, err
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(c, "GET /orders/%s/stream HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n", id, d.host); err != nil {
		c.Close()
		return nil, nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReaderSize(c, 4096), nil)
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		c.Close()
		return nil, nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	_ = c.SetDeadline(time.Time{})
	return c, sse.NewDecoder(resp.Body), nil
}

// endWait is how long a stream waits, after its terminal event, for the
// server to end it.
const endWait = 10 * time.Second

// runRound runs one round (see bench) and returns what it saw; an error
// only if streams failed to open.
func runRound(ctx context.Context, base string, pid, n, k int, interval string, srcs []net.IP) (round, error) {
	d, err := newDialer(base, srcs)
	if err != nil {
		return round{}, err
	}
	orders := make([]string, k)
	for i := range orders {
		orders[i] = uuid4()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var (
		ready, done sync.WaitGroup
		mu          sync.Mutex
		r           = round{expected: n * perOrder, lat: make([]float64, 0, n*perOrder)}
		errs        atomic.Int64
		connsMu     sync.Mutex
		conns       []net.Conn
		publish     = make(chan struct{})
	)
	start, cpu0 := time.Now(), cpuTime(pid)
	ready.Add(n)
	done.Add(n)
	for i := range n {
		go func() {
			defer done.Done()
			c, dec, err := d.open(ctx, orders[i%k])
			ready.Done()
			if err != nil {
				errs.Add(1)
				return
			}
			connsMu.Lock()
			conns = append(conns, c)
			connsMu.Unlock()
			defer c.Close()
			<-publish
			var (
				seq         = ssestream.Sequence{ExpectAll: true}
				lat         [perOrder]float64
				got         int
				first, last time.Time
				gaps, dups  int64
				terminal    bool
				ended       bool
			)
			for {
				m, err := dec.Next()
				now := time.Now()
				if err != nil {
					// The contract: after the terminal event the server ends
					// the stream; before it, an end is a lost stream.
					switch {
					case terminal && errors.Is(err, io.EOF):
						ended = true
					case ctx.Err() == nil:
						errs.Add(1)
					}
					break
				}
				u, err := ssestream.ParseUpdate(m.Data)
				if err != nil {
					errs.Add(1)
					continue
				}
				v := seq.Observe(m.ID, u.Status)
				if v.Duplicate {
					dups++
					continue
				}
				if v.Backwards || terminal { // out of order, or after the end
					errs.Add(1)
					continue
				}
				gaps += int64(v.Gaps)
				if got < perOrder {
					lat[got] = float64(now.Sub(u.Timestamp))
				}
				got++
				if first.IsZero() || u.Timestamp.Before(first) {
					first = u.Timestamp
				}
				last = now
				if ssestream.Terminal(u.Status) {
					terminal = true
					// Read on to the server's end of the stream, which
					// must come soon.
					_ = c.SetReadDeadline(time.Now().Add(endWait))
				}
			}
			mu.Lock()
			defer mu.Unlock()
			r.lat = append(r.lat, lat[:min(got, perOrder)]...)
			r.delivered += got
			r.gaps += gaps
			r.duplicates += dups
			if ended {
				r.ended++
			}
			if got > 0 {
				if r.first.IsZero() || first.Before(r.first) {
					r.first = first
				}
				if last.After(r.last) {
					r.last = last
				}
			}
		}()
	}
	ready.Wait()
	r.connectTime = time.Since(start)
	cpu1 := cpuTime(pid)
	r.connectCPU = cpu1 - cpu0
	close(publish)
	if e := errs.Load(); e > 0 {
		cancel()
		closeAll(&connsMu, conns)
		done.Wait()
		return r, fmt.Errorf("%d of %d streams failed to open", e, n)
	}

	pub := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: time.Minute}
	var pubErrs atomic.Int64
	var pubs sync.WaitGroup
	for _, id := range orders {
		pubs.Add(1)
		go func() {
			defer pubs.Done()
			resp, err := pub.Post(strings.TrimRight(base, "/")+"/orders/"+id+"/simulate?interval="+interval, "", nil)
			if err != nil {
				pubErrs.Add(1)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				pubErrs.Add(1)
			}
		}()
	}
	finished := make(chan struct{})
	go func() { done.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(2 * time.Minute):
		cancel()
		closeAll(&connsMu, conns)
		<-finished
	}
	r.fanOutCPU = cpuTime(pid) - cpu1
	pubs.Wait()
	r.errs = errs.Load() + pubErrs.Load()
	r.rssKiB = rssKiB(pid)
	return r, nil
}

func closeAll(mu *sync.Mutex, conns []net.Conn) {
	mu.Lock()
	defer mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// memPoint is a server's resident memory with a number of idle streams open.
type memPoint struct {
	Streams int   `json:"streams"`
	RSSKiB  int64 `json:"rssKiB"`
}

// rssKiB is process pid's resident set (VmRSS) in KiB, 0 if unreadable.
func rssKiB(pid int) int64 {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb
		}
	}
	return 0
}

// holdStreams opens n streams to k orders that never get an event, in
// steps (each step's streams all open, then a pause, then the server's RSS
// is read), holds them all for hold, counting heartbeats, and returns the
// RSS read at 0 streams and after each step.
func holdStreams(ctx context.Context, base string, pid, n, k, steps int, hold time.Duration, srcs []net.IP) (int, int64, []memPoint, error) {
	d, err := newDialer(base, srcs)
	if err != nil {
		return 0, 0, nil, err
	}
	orders := make([]string, k)
	for i := range orders {
		orders[i] = uuid4()
	}
	ctx, cancel := context.WithTimeout(ctx, hold+5*time.Minute)
	defer cancel()
	var (
		wg         sync.WaitGroup
		open, errs atomic.Int64
		alive      atomic.Int64
		heartbeats atomic.Int64
		stop       = make(chan struct{})
		mem        = []memPoint{{0, rssKiB(pid)}}
	)
	steps = max(1, min(steps, n))
	for step := 1; step <= steps; step++ {
		from, to := n*(step-1)/steps, n*step/steps
		for i := from; i < to; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, dec, err := d.open(ctx, orders[i%k])
				if err != nil {
					errs.Add(1)
					return
				}
				open.Add(1)
				alive.Add(1)
				defer alive.Add(-1)
				dec.OnComment = func(string) { heartbeats.Add(1) }
				go func() {
					select {
					case <-stop:
					case <-ctx.Done():
					}
					c.Close()
				}()
				for {
					if _, err := dec.Next(); err != nil {
						return
					}
				}
			}()
		}
		deadline := time.Now().Add(time.Minute)
		for open.Load()+errs.Load() < int64(to) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if pid > 0 {
			time.Sleep(time.Second) // let the server settle: handler goroutines parked, buffers allocated
			mem = append(mem, memPoint{int(open.Load()), rssKiB(pid)})
		}
	}
	fmt.Printf("holding %d streams (%d failed)\n", open.Load(), errs.Load())
	time.Sleep(hold)
	held := int(alive.Load())
	close(stop)
	wg.Wait()
	if e := errs.Load(); e > 0 {
		return held, heartbeats.Load(), mem, fmt.Errorf("%d of %d streams failed to open", e, n)
	}
	return held, heartbeats.Load(), mem, nil
}
