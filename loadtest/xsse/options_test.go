package xsse

import (
	"strings"
	"testing"
	"time"

	"github.com/grafana/sobek"
)

func jsValue(t *testing.T, src string) sobek.Value {
	t.Helper()
	v, err := sobek.New().RunString("(" + src + ")")
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestParseOptions(t *testing.T) {
	o, err := parseOptions(jsValue(t, `{count: 250, spread: 1500, headers: {Authorization: "Bearer x"},
		lastEventId: "17-0", reconnect: false, reconnectDelay: 0, dropAfter: [100, 900],
		expectSequence: true, sourceAddrs: ["127.0.0.2", "127.0.0.3"], tags: {kind: "idle"}}`))
	if err != nil {
		t.Fatal(err)
	}
	s := o.stream
	switch {
	case o.count != 250, o.spread != 1500*time.Millisecond, len(o.sources) != 2, o.tags["kind"] != "idle":
		t.Errorf("options = %+v", o)
	case s.Headers.Get("Authorization") != "Bearer x", s.LastEventID != "17-0", s.Reconnect, s.ReconnectDelay != 0,
		s.DropMin != 100*time.Millisecond, s.DropMax != 900*time.Millisecond, !s.ExpectAll:
		t.Errorf("stream config = %+v", s)
	}

	o, err = parseOptions(sobek.Undefined())
	if err != nil || o.count != 1 || !o.stream.Reconnect || o.stream.ReconnectDelay >= 0 {
		t.Errorf("defaults = %+v, %v", o, err)
	}
}

func TestParseOptionsRejects(t *testing.T) {
	for _, src := range []string{
		`{count: 0}`, `{count: 1.5}`, `{count: "10"}`, `{spread: -1}`, `{dropAfter: [5]}`,
		`{dropAfter: [10, 5]}`, `{sourceAddrs: ["nope"]}`, `{reconnect: "yes"}`, `{cuont: 3}`, `[1, 2]`,
	} {
		if _, err := parseOptions(jsValue(t, src)); err == nil || !strings.HasPrefix(err.Error(), "sse.open: ") {
			t.Errorf("parseOptions(%s) = %v, want an sse.open error", src, err)
		}
	}
}

func TestParseURLs(t *testing.T) {
	if u, err := parseURLs(jsValue(t, `["http://a/x", "https://b/y"]`)); err != nil || len(u) != 2 {
		t.Errorf("parseURLs = %v, %v", u, err)
	}
	for _, src := range []string{`[]`, `"ftp://a"`, `[1]`, `null`} {
		if _, err := parseURLs(jsValue(t, src)); err == nil {
			t.Errorf("parseURLs(%s) accepted it", src)
		}
	}
}
