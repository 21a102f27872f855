package xsse

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"time"

	"github.com/grafana/sobek"
	"go.k6.io/k6/js/common"

	"github.com/orderstream/orderstream/loadtest/ssestream"
)

// options are sse.open's second argument, as JavaScript spells them.
type options struct {
	count          int           // count: streams to open (default 1)
	spread         time.Duration // spread (ms): open them evenly over this long
	connectTimeout time.Duration // connectTimeout (ms): dial and response headers (default 10000)
	sources        []net.IP      // sourceAddrs: local addresses to dial from, in turn
	tags           map[string]string
	stream         ssestream.StreamConfig
	// headers, lastEventId, reconnect (default true), reconnectDelay (ms;
	// default: the server's retry:), dropAfter ([min, max] ms: cut each
	// connection after a random time, then resume), expectSequence (every
	// status from Created on is published: a missing one is a gap).
}

const maxCount = 1 << 20

func parseOptions(v sobek.Value) (options, error) {
	o := options{
		count:          1,
		connectTimeout: 10 * time.Second,
		stream:         ssestream.StreamConfig{Reconnect: true, ReconnectDelay: -1, Headers: http.Header{}},
	}
	if common.IsNullish(v) {
		return o, nil
	}
	m, ok := v.Export().(map[string]any)
	if !ok {
		return o, errors.New("sse.open: options must be an object")
	}
	var errs []error
	for k, val := range m {
		var err error
		switch k {
		case "count":
			var n float64
			if n, err = number(k, val); err == nil {
				if n < 1 || n > maxCount || n != math.Trunc(n) {
					err = fmt.Errorf("count must be a whole number from 1 to %d, got %v", maxCount, val)
				}
				o.count = int(n)
			}
		case "spread":
			o.spread, err = millis(k, val)
		case "connectTimeout":
			o.connectTimeout, err = millis(k, val)
		case "reconnectDelay":
			o.stream.ReconnectDelay, err = millis(k, val)
		case "reconnect":
			o.stream.Reconnect, err = boolean(k, val)
		case "expectSequence":
			o.stream.ExpectAll, err = boolean(k, val)
		case "lastEventId":
			s, isStr := val.(string)
			if !isStr {
				err = fmt.Errorf("lastEventId must be a string, got %T", val)
			}
			o.stream.LastEventID = s
		case "headers":
			var hm map[string]string
			if hm, err = stringMap(k, val); err == nil {
				for hk, hv := range hm {
					o.stream.Headers.Set(hk, hv)
				}
			}
		case "tags":
			o.tags, err = stringMap(k, val)
		case "dropAfter":
			o.stream.DropMin, o.stream.DropMax, err = millisRange(k, val)
		case "sourceAddrs":
			o.sources, err = ips(k, val)
		default:
			err = fmt.Errorf("unknown option %q", k)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return o, fmt.Errorf("sse.open: %w", err)
	}
	return o, nil
}

func number(name string, v any) (float64, error) {
	switch n := v.(type) {
	case int64:
		return float64(n), nil
	case float64:
		return n, nil
	}
	return 0, fmt.Errorf("%s must be a number, got %T", name, v)
}

func millis(name string, v any) (time.Duration, error) {
	n, err := number(name, v)
	if err != nil {
		return 0, err
	}
	if n < 0 || math.IsNaN(n) || n > float64(math.MaxInt64/int64(time.Millisecond)) {
		return 0, fmt.Errorf("%s must be milliseconds >= 0, got %v", name, v)
	}
	return time.Duration(n * float64(time.Millisecond)), nil
}

func millisRange(name string, v any) (lo, hi time.Duration, err error) {
	a, ok := v.([]any)
	if !ok || len(a) != 2 {
		return 0, 0, fmt.Errorf("%s must be [min, max] in milliseconds", name)
	}
	if lo, err = millis(name, a[0]); err != nil {
		return 0, 0, err
	}
	if hi, err = millis(name, a[1]); err != nil {
		return 0, 0, err
	}
	if lo <= 0 || hi < lo {
		return 0, 0, fmt.Errorf("%s must be [min, max] with 0 < min <= max, got %v", name, v)
	}
	return lo, hi, nil
}

func boolean(name string, v any) (bool, error) {
	b, ok := v.(bool)
	if !ok {
		return false, fmt.Errorf("%s must be true or false, got %T", name, v)
	}
	return b, nil
}

func stringMap(name string, v any) (map[string]string, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s must be an object of strings", name)
	}
	out := make(map[string]string, len(m))
	for k, x := range m {
		out[k] = fmt.Sprint(x)
	}
	return out, nil
}

func ips(name string, v any) ([]net.IP, error) {
	a, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%s must be an array of IP addresses", name)
	}
	var out []net.IP
	for _, x := range a {
		s, _ := x.(string)
		ip := net.ParseIP(s)
		if ip == nil {
			return nil, fmt.Errorf("%s: %v is not an IP address", name, x)
		}
		out = append(out, ip)
	}
	return out, nil
}
