package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// The hardening settings (docs/security.md) through run(): each is off by
// default and on with its environment variable.

func TestMetricsEndpoint(t *testing.T) {
	if res := get(t, startServer(t, nil).URL+"/metrics"); res.StatusCode != http.StatusNotFound {
		t.Fatalf("GET /metrics with METRICS unset: %d, want 404", res.StatusCode)
	}
	s := startServer(t, map[string]string{"METRICS": "true"})
	id := newID()
	publish(t, s.URL, id, "Created")
	res := get(t, s.URL+"/metrics")
	body := bodyOf(res)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d", res.StatusCode)
	}
	for _, want := range []string{
		"orderstream_events_published_total 1",
		"orderstream_streams_open 0",
		"go_goroutines", // the runtime collector, on the same private registry
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestStreamLimitThroughRun(t *testing.T) {
	s := startServer(t, map[string]string{"MAX_STREAMS": "1", "HEARTBEAT_INTERVAL": "1h"})
	first := openStream(t, s.URL+"/orders/"+newID()+"/stream", nil)
	defer first.close()
	res := get(t, s.URL+"/orders/"+newID()+"/stream")
	if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" {
		t.Fatalf("second stream with MAX_STREAMS=1: %d, Retry-After %q", res.StatusCode, res.Header.Get("Retry-After"))
	}
}

// TestSlowHeadersAreCutOff: a client that never finishes its request
// headers (slowloris) loses its connection after READ_HEADER_TIMEOUT.
func TestSlowHeadersAreCutOff(t *testing.T) {
	s := startServer(t, map[string]string{"READ_HEADER_TIMEOUT": "200ms"})
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
	conn.SetReadDeadline(time.Now().Add(30 * time.Second)) // a bound for a broken server, not a timing claim
	if _, err := io.ReadAll(conn); err != nil {
		t.Fatalf("the connection was not closed by the server: %v", err)
	}
}

func TestCORSThroughRun(t *testing.T) {
	s := startServer(t, map[string]string{"CORS_ALLOWED_ORIGINS": "https://shop.example"})
	res := do(t, http.MethodOptions, s.URL+"/orders/"+newID()+"/events", http.Header{
		"Origin": {"https://shop.example"}, "Access-Control-Request-Method": {"POST"},
	}, "")
	if res.StatusCode != http.StatusNoContent || res.Header.Get("Access-Control-Allow-Origin") != "https://shop.example" {
		t.Fatalf("preflight: %d, Allow-Origin %q", res.StatusCode, res.Header.Get("Access-Control-Allow-Origin"))
	}
	id := newID()
	publish(t, s.URL, id, "Delivered")
	st := openStream(t, s.URL+"/orders/"+id+"/stream", http.Header{"Origin": {"https://shop.example"}})
	defer st.close()
	if got := st.res.Header.Get("Access-Control-Allow-Origin"); got != "https://shop.example" {
		t.Fatalf("stream Allow-Origin %q", got)
	}
}

func TestAuthThroughRun(t *testing.T) {
	secret := strings.Repeat("k", 32)
	s := startServer(t, map[string]string{"AUTH_JWT_SECRET": secret})
	id := newID()
	sign := func(c jwt.MapClaims) string {
		c["exp"] = time.Now().Add(time.Hour).Unix()
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(secret))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	body := `{"status":"Delivered"}`
	ct := http.Header{"Content-Type": {"application/json"}}
	if res := do(t, http.MethodPost, s.URL+"/orders/"+id+"/events", ct, body); res.StatusCode != http.StatusUnauthorized ||
		!strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Bearer") {
		t.Fatalf("publish without a token: %d %q", res.StatusCode, res.Header.Get("WWW-Authenticate"))
	}
	ct.Set("Authorization", "Bearer "+sign(jwt.MapClaims{"scope": "orders:publish"}))
	if res := do(t, http.MethodPost, s.URL+"/orders/"+id+"/events", ct, body); res.StatusCode != http.StatusCreated {
		t.Fatalf("publish with a token: %d", res.StatusCode)
	}
	// A subscriber's token, in the URL as EventSource sends it.
	st := openStream(t, s.URL+"/orders/"+id+"/stream?access_token="+sign(jwt.MapClaims{"orders": []string{id}}), nil)
	defer st.close()
	if ev := st.next(t); st.res.StatusCode != http.StatusOK || ev.Update.Status != "Delivered" {
		t.Fatalf("stream with a token: %d %+v", st.res.StatusCode, ev)
	}
	if res := get(t, s.URL+"/orders/"+id+"/stream?access_token="+sign(jwt.MapClaims{"orders": []string{newID()}})); res.StatusCode != http.StatusForbidden {
		t.Fatalf("stream with another order's token: %d", res.StatusCode)
	}
}

// TestEMFThroughRun: with METRICS_EMF_SERVICE the server writes its open
// streams as embedded metric format lines among its log lines: the count
// while streams are open, and 0 in the last line, after they ended.
func TestEMFThroughRun(t *testing.T) {
	t.Cleanup(func() { emfInterval = time.Minute })
	env := map[string]string{"METRICS": "true", "METRICS_EMF_SERVICE": "shop-prod"}
	// The first line comes at start, not an interval later.
	emfInterval = time.Hour
	first := startServer(t, env)
	waitFor(t, "an EMF line at start", func() bool { return slices.Equal(emfValues(t, first), []string{"0"}) })
	if first.log.count("embedded metric format line not written") > 0 {
		t.Fatal("a line could not be written")
	}
	first.stop()

	emfInterval = 50 * time.Millisecond
	s := startServer(t, env)
	id := newID()
	publish(t, s.URL, id, "Created")
	a, b := openStream(t, s.URL+"/orders/"+id+"/stream", nil), openStream(t, s.URL+"/orders/"+id+"/stream", nil)
	a.next(t)
	b.next(t)
	waitFor(t, "a line counting both streams", func() bool { return slices.Contains(emfValues(t, s), "2") })
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	// The log reader may be a line behind run's return.
	waitFor(t, "a last line with 0 streams open, after shutdown", func() bool { v := emfValues(t, s); return v[len(v)-1] == "0" })
}

// emfValues are the StreamsOpen values of the EMF lines among s's log lines.
func emfValues(t *testing.T, s *server) []string {
	var v []string
	s.log.mu.Lock()
	defer s.log.mu.Unlock()
	for _, line := range s.log.lines {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var m struct {
			Service     string
			StreamsOpen *float64
			AWS         struct{ CloudWatchMetrics []struct{ Namespace string } } `json:"_aws"`
		}
		if err := json.Unmarshal([]byte(line), &m); err != nil || m.StreamsOpen == nil || m.Service != "shop-prod" ||
			len(m.AWS.CloudWatchMetrics) != 1 || m.AWS.CloudWatchMetrics[0].Namespace != "orderstream" {
			t.Errorf("not the EMF line expected: %s (%v)", line, err)
			continue
		}
		v = append(v, strconv.FormatFloat(*m.StreamsOpen, 'f', -1, 64))
	}
	return v
}
