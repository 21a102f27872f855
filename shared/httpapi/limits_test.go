package httpapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderstream/orderstream/shared/broker"
	"github.com/orderstream/orderstream/shared/broker/brokertest"
	"github.com/orderstream/orderstream/shared/httpapi/httpapitest"
)

func TestClientAddr(t *testing.T) {
	proxies, err := ParseTrustedProxies("10.0.0.0/8, 192.0.2.7, fd00::/8")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		remote  string
		xff     []string
		trusted []netip.Prefix
		want    string
	}{
		{"no proxies: the peer", "203.0.113.9:4711", []string{"198.51.100.1"}, nil, "203.0.113.9"},
		{"untrusted peer: its XFF is ignored", "203.0.113.9:4711", []string{"198.51.100.1"}, proxies, "203.0.113.9"},
		{"trusted peer: the client it names", "10.1.2.3:80", []string{"198.51.100.1"}, proxies, "198.51.100.1"},
		{"a chain of trusted proxies", "10.1.2.3:80", []string{"198.51.100.1, 192.0.2.7", "10.9.9.9"}, proxies, "198.51.100.1"},
		{"a spoofed entry left of the client is ignored", "10.1.2.3:80", []string{"6.6.6.6, 198.51.100.1"}, proxies, "198.51.100.1"},
		{"garbage stops the walk", "10.1.2.3:80", []string{"198.51.100.1, bogus, 10.2.2.2"}, proxies, "10.2.2.2"},
		{"only proxies: the leftmost", "10.1.2.3:80", []string{"10.4.4.4"}, proxies, "10.4.4.4"},
		{"no XFF from a proxy: the proxy", "10.1.2.3:80", nil, proxies, "10.1.2.3"},
		{"IPv6 peer and client", "[fd00::1]:80", []string{"2001:db8::5"}, proxies, "2001:db8::5"},
		{"IPv4-mapped IPv6 is IPv4", "[::ffff:10.1.2.3]:80", []string{"[2001:db8::5]:1234"}, proxies, "2001:db8::5"},
		{"a peer without a port", "203.0.113.9", nil, nil, "203.0.113.9"},
		{"an unparsable peer", "pipe", []string{"198.51.100.1"}, proxies, "invalid IP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tt.remote
			for _, v := range tt.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := clientAddr(r, tt.trusted).String(); got != tt.want {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestClientKeyGroupsIPv6By64(t *testing.T) {
	a := clientKey(netip.MustParseAddr("2001:db8:1:2::1"))
	b := clientKey(netip.MustParseAddr("2001:db8:1:2:ffff::9"))
	c := clientKey(netip.MustParseAddr("2001:db8:1:3::1"))
	if a != b || a == c {
		t.Fatalf("keys %v %v %v", a, b, c)
	}
	if clientKey(netip.MustParseAddr("192.0.2.1")) == clientKey(netip.MustParseAddr("192.0.2.2")) {
		t.Fatal("two IPv4 addresses share a key")
	}
}

func TestParseTrustedProxies(t *testing.T) {
	for _, bad := range []string{"10.0.0.0/33", "ten", "10.0.0.1/8/2", "::1/129"} {
		if _, err := ParseTrustedProxies(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	got, err := ParseTrustedProxies(" 10.1.2.3/8 ,,::ffff:192.0.2.1")
	if err != nil || len(got) != 2 || got[0].String() != "10.0.0.0/8" || got[1].String() != "192.0.2.1/32" {
		t.Fatalf("got %v, %v", got, err)
	}
}

// openRaw opens a stream and returns the response; the caller closes it.
func openRaw(t *testing.T, url string, header http.Header) *http.Response {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); res.Body.Close() })
	return res
}

func TestStreamLimits(t *testing.T) {
	trusted, _ := ParseTrustedProxies("127.0.0.1")
	tests := []struct {
		name    string
		cfg     Config
		first   int    // streams that open
		refused int    // the status of the one after
		limit   string // its metrics label
	}{
		{name: "instance", cfg: Config{MaxStreams: 3}, first: 3, refused: 503, limit: "instance"},
		{name: "client", cfg: Config{MaxStreamsPerClient: 2}, first: 2, refused: 429, limit: "client"},
		{name: "order", cfg: Config{MaxSubscribersPerOrder: 2}, first: 2, refused: 503, limit: "order"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := broker.NewMemory(brokertest.Options())
			defer b.Close()
			reg := prometheus.NewRegistry()
			tt.cfg.Metrics = reg
			srv, _ := newTestServer(t, b, tt.cfg)
			order := uuid.NewString()
			url := srv.URL + "/orders/" + order + "/stream"
			var open []*http.Response
			for i := range tt.first {
				res := openRaw(t, url, nil)
				if res.StatusCode != 200 {
					t.Fatalf("stream %d: %d", i, res.StatusCode)
				}
				open = append(open, res)
			}
			res := openRaw(t, url, nil)
			if res.StatusCode != tt.refused || res.Header.Get("Retry-After") == "" ||
				res.Header.Get("Content-Type") != "application/problem+json" {
				t.Fatalf("over the limit: %d, Retry-After %q, %q", res.StatusCode, res.Header.Get("Retry-After"), res.Header.Get("Content-Type"))
			}
			if !res.Close {
				t.Error("a refused stream's connection is kept open (no Connection: close): it holds a descriptor for nothing")
			}
			if got := httpapitest.MetricValue(t, reg, "orderstream_streams_rejected_total", "limit", tt.limit); got != 1 {
				t.Fatalf("rejected{%s} %v", tt.limit, got)
			}
			// Another order or client still gets in where only those are full.
			if tt.limit == "order" {
				if res := openRaw(t, srv.URL+"/orders/"+uuid.NewString()+"/stream", nil); res.StatusCode != 200 {
					t.Fatalf("another order: %d", res.StatusCode)
				}
			}
			// Closing a stream frees its slot.
			open[0].Body.Close()
			httpapitest.WaitFor(t, "a freed slot", func() bool {
				res := openRaw(t, url, nil)
				defer res.Body.Close()
				return res.StatusCode == 200
			})
		})
	}

	t.Run("clients behind a trusted proxy", func(t *testing.T) {
		b := broker.NewMemory(brokertest.Options())
		defer b.Close()
		srv, _ := newTestServer(t, b, Config{MaxStreamsPerClient: 1, TrustedProxies: trusted})
		url := srv.URL + "/orders/" + uuid.NewString() + "/stream"
		from := func(addr string) http.Header { return http.Header{"X-Forwarded-For": {addr}} }
		if res := openRaw(t, url, from("198.51.100.1")); res.StatusCode != 200 {
			t.Fatalf("first client: %d", res.StatusCode)
		}
		if res := openRaw(t, url, from("198.51.100.2")); res.StatusCode != 200 {
			t.Fatalf("second client: %d", res.StatusCode)
		}
		if res := openRaw(t, url, from("198.51.100.1")); res.StatusCode != 429 {
			t.Fatalf("first client again: %d, want 429", res.StatusCode)
		}
	})

	t.Run("X-Forwarded-For from an untrusted peer", func(t *testing.T) {
		b := broker.NewMemory(brokertest.Options())
		defer b.Close()
		srv, _ := newTestServer(t, b, Config{MaxStreamsPerClient: 1})
		url := srv.URL + "/orders/" + uuid.NewString() + "/stream"
		openRaw(t, url, http.Header{"X-Forwarded-For": {"198.51.100.1"}})
		if res := openRaw(t, url, http.Header{"X-Forwarded-For": {"198.51.100.2"}}); res.StatusCode != 429 {
			t.Fatalf("a forged X-Forwarded-For got a second stream: %d", res.StatusCode)
		}
	})
}

func TestNoLimitsByDefault(t *testing.T) {
	if newStreamLimits(Config{}) != nil {
		t.Fatal("a zero Config counts streams")
	}
	var l *streamLimits
	place, refused := l.acquire(httptest.NewRequest("GET", "/", nil), uuid.New())
	if refused != nil || place != (limitPlace{}) {
		t.Fatal(place, refused)
	}
	place.release(uuid.Nil) // nothing to give back, and no panic
}
