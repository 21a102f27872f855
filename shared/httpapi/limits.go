package httpapi

import (
	"net/http"
	"net/netip"
	"strings"
	"sync"

	"github.com/google/uuid"
)

// streamLimits caps the streams open on this instance: in all, per client
// address and per order. Streams are what a client can hold open cheaply and
// the server pays for (a goroutine, buffers, a socket), so they are what is
// counted; short requests are bounded by the server's timeouts instead.
type streamLimits struct {
	maxTotal, maxPerClient, maxPerOrder int
	trusted                             []netip.Prefix

	mu        sync.Mutex
	total     int
	perClient map[netip.Prefix]int
	perOrder  map[uuid.UUID]int
}

// newStreamLimits returns nil when no limit is set: nothing is counted.
func newStreamLimits(cfg Config) *streamLimits {
	if cfg.MaxStreams <= 0 && cfg.MaxStreamsPerClient <= 0 && cfg.MaxSubscribersPerOrder <= 0 {
		return nil
	}
	return &streamLimits{
		maxTotal:     cfg.MaxStreams,
		maxPerClient: cfg.MaxStreamsPerClient,
		maxPerOrder:  cfg.MaxSubscribersPerOrder,
		trusted:      cfg.TrustedProxies,
		perClient:    make(map[netip.Prefix]int),
		perOrder:     make(map[uuid.UUID]int),
	}
}

// limitRefusal says which limit refused a stream and how to answer.
type limitRefusal struct {
	limit  string // the metrics label: instance, client or order
	status int
	detail string
}

// acquire takes a place for a stream of order id from r's client, or says
// which limit is full. The place (the zero limitPlace when nothing is
// counted) must be given back with release once the stream ends.
func (l *streamLimits) acquire(r *http.Request, id uuid.UUID) (place limitPlace, refused *limitRefusal) {
	if l == nil {
		return limitPlace{}, nil
	}
	// Only what a limit is set for is counted: the instance's cap alone
	// (the local server's default, from its open-file limit) costs a
	// counter, not a client's address parsed and two maps per stream.
	var client netip.Prefix
	if l.maxPerClient > 0 {
		client = clientKey(clientAddr(r, l.trusted))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.maxTotal > 0 && l.total >= l.maxTotal:
		return limitPlace{}, &limitRefusal{"instance", http.StatusServiceUnavailable,
			"this instance is serving as many streams as it may; try again shortly"}
	case l.maxPerClient > 0 && l.perClient[client] >= l.maxPerClient:
		return limitPlace{}, &limitRefusal{"client", http.StatusTooManyRequests,
			"too many streams open from your address; close one or try again later"}
	case l.maxPerOrder > 0 && l.perOrder[id] >= l.maxPerOrder:
		return limitPlace{}, &limitRefusal{"order", http.StatusServiceUnavailable,
			"this order has as many subscribers as it may on this instance; try again shortly"}
	}
	l.total++
	if l.maxPerClient > 0 {
		l.perClient[client]++
	}
	if l.maxPerOrder > 0 {
		l.perOrder[id]++
	}
	place = limitPlace{l: l}
	if l.maxPerClient > 0 {
		c := client // on the heap only here
		place.client = &c
	}
	return place, nil
}

// limitPlace is one stream's place under the limits, part of its stream,
// which a stream that leaves its handler keeps until it closes: 16 bytes
// there. Its order is the stream's (release is given it) and its client's
// key (32 bytes) is kept only where a per-client limit counts it.
type limitPlace struct {
	l        *streamLimits // nil: nothing counted
	client   *netip.Prefix // with a per-client limit
	released bool          // under l.mu
}

// release gives back the place of a stream of order, once; the zero place
// has nothing to give.
func (p *limitPlace) release(order uuid.UUID) {
	l := p.l
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if p.released {
		return
	}
	p.released = true
	l.total--
	if l.maxPerClient > 0 {
		decrement(l.perClient, *p.client)
	}
	if l.maxPerOrder > 0 {
		decrement(l.perOrder, order)
	}
}

// decrement keeps the maps as small as the open streams: no entry at zero.
func decrement[K comparable](m map[K]int, k K) {
	if m[k] <= 1 {
		delete(m, k)
		return
	}
	m[k]--
}

// clientAddr is the address a request came from: the connection's peer,
// or, when the peer is a trusted proxy, the first address in
// X-Forwarded-For (read right to left) that is not a trusted proxy. Entries
// to the left of one that doesn't parse are ignored: anyone can write them.
// The zero Addr means the peer could not be parsed.
func clientAddr(r *http.Request, trusted []netip.Prefix) netip.Addr {
	addr := parseHostAddr(r.RemoteAddr)
	if len(trusted) == 0 || !addr.IsValid() {
		return addr
	}
	hops := r.Header.Values("X-Forwarded-For")
	for i := len(hops) - 1; i >= 0; i-- {
		entries := strings.Split(hops[i], ",")
		for j := len(entries) - 1; j >= 0; j-- {
			if !isTrusted(addr, trusted) {
				return addr
			}
			next := parseHostAddr(strings.TrimSpace(entries[j]))
			if !next.IsValid() {
				return addr
			}
			addr = next
		}
	}
	return addr
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// parseHostAddr reads "ip", "ip:port" or "[ipv6]:port"; zero if none.
func parseHostAddr(s string) netip.Addr {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone("")
	}
	if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return a.Unmap().WithZone("")
	}
	return netip.Addr{}
}

// clientKey groups addresses one client can hold: an IPv4 address, or an
// IPv6 /64 (a single host is usually given a whole /64 to pick from).
// Unparsable peers share one key.
func clientKey(a netip.Addr) netip.Prefix {
	if !a.IsValid() {
		return netip.Prefix{}
	}
	a = a.WithZone("")
	bits := 32
	if a.Is6() {
		bits = 64
	}
	p, _ := a.Prefix(bits)
	return p
}

// ParseTrustedProxies reads a comma-separated list of CIDR prefixes or
// single addresses, as TRUSTED_PROXIES holds them.
func ParseTrustedProxies(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if strings.Contains(f, "/") {
			p, err := netip.ParsePrefix(f)
			if err != nil {
				return nil, err
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, err
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}
