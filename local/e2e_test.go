package main

import (
	"encoding/json"
	"net"
	"net/http"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestStreamHeadersRetryAndFirstEvent(t *testing.T) {
	s := startServer(t, map[string]string{"RETRY_INTERVAL": "1500ms"})
	id := newID()
	st := openStream(t, s.URL+"/orders/"+id+"/stream", nil)
	if st.res.StatusCode != http.StatusOK {
		t.Fatalf("status %d", st.res.StatusCode)
	}
	for k, want := range map[string]string{
		"Content-Type":      "text/event-stream",
		"Cache-Control":     "no-cache",
		"X-Accel-Buffering": "no",
	} {
		if got := st.res.Header.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	// The order has no events: the stream waits, and a publish reaches it.
	u := publish(t, s.URL, strings.ToUpper(id), "Created")
	ev := st.next(t)
	if ev.Update != u || ev.Update.OrderID != id {
		t.Fatalf("got %+v, want %+v with the lowercase id %s", ev.Update, u, id)
	}
	if d, ok := st.dec.Retry(); !ok || d != 1500*time.Millisecond {
		t.Fatalf("retry: %v, %v; want 1500ms before the first event", d, ok)
	}
}

func TestStreamStartsWithRetryField(t *testing.T) {
	s := startServer(t, nil)
	res, err := http.Get(s.URL + "/orders/" + newID() + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	// Read exactly what arrives first; no event has been published.
	want := "retry: 3000\n"
	buf := make([]byte, len(want))
	if _, err := res.Body.Read(buf[:1]); err != nil {
		t.Fatal(err)
	}
	if _, err := res.Body.Read(buf[1:]); err != nil {
		t.Fatal(err)
	}
	if string(buf) != want {
		t.Fatalf("stream starts with %q, want %q", buf, want)
	}
}

func TestHistoryLiveAndTerminalEnd(t *testing.T) {
	s := startServer(t, nil)
	id := newID()
	var published []update
	for _, st := range happyPath[:3] {
		published = append(published, publish(t, s.URL, id, st))
	}
	st := openStream(t, s.URL+"/orders/"+id+"/stream", nil)
	var got []event
	for range 3 {
		got = append(got, st.next(t))
	}
	for _, status := range happyPath[3:] {
		published = append(published, publish(t, s.URL, id, status))
		got = append(got, st.next(t))
	}
	st.expectEnd(t) // after Delivered the server ends the stream
	idChars := regexp.MustCompile(`^[A-Za-z0-9._-]+$`)
	for i, ev := range got {
		if ev.Update != published[i] {
			t.Errorf("event %d: %+v, want %+v", i, ev.Update, published[i])
		}
		if !idChars.MatchString(ev.ID) {
			t.Errorf("event id %q has characters outside [A-Za-z0-9._-]", ev.ID)
		}
		if i > 0 && ev.Update.Timestamp.Before(got[i-1].Update.Timestamp) {
			t.Errorf("timestamps decrease: %v then %v", got[i-1].Update.Timestamp, ev.Update.Timestamp)
		}
	}
	// Reconnecting with the terminal id: 204, so EventSource stops.
	last := got[len(got)-1].ID
	res := do(t, http.MethodGet, s.URL+"/orders/"+id+"/stream", http.Header{"Last-Event-Id": {last}}, "")
	if res.StatusCode != http.StatusNoContent {
		t.Fatalf("resume after the terminal event: %d, want 204", res.StatusCode)
	}
	// So does the query form, for clients that can't set headers.
	res = get(t, s.URL+"/orders/"+id+"/stream?lastEventId="+last)
	if res.StatusCode != http.StatusNoContent {
		t.Fatalf("resume after the terminal event (query): %d, want 204", res.StatusCode)
	}
}

func TestResumeFromEveryEventID(t *testing.T) {
	s := startServer(t, nil)
	id := newID()
	first := openStream(t, s.URL+"/orders/"+id+"/stream", nil)
	for _, st := range happyPath {
		publish(t, s.URL, id, st)
	}
	var all []event
	for range happyPath {
		all = append(all, first.next(t))
	}
	first.expectEnd(t)
	for i, ev := range all[:len(all)-1] {
		for _, via := range []string{"header", "query", "header beats query"} {
			url, header := s.URL+"/orders/"+id+"/stream", http.Header{}
			switch via {
			case "header":
				header.Set("Last-Event-ID", ev.ID)
			case "query":
				url += "?lastEventId=" + ev.ID
			case "header beats query":
				// EventSource keeps the original URL and sends the newer id as a header.
				url += "?lastEventId=" + all[0].ID
				header.Set("Last-Event-ID", ev.ID)
			}
			st := openStream(t, url, header)
			var got []event
			for range all[i+1:] {
				got = append(got, st.next(t))
			}
			st.expectEnd(t)
			if !slices.Equal(statusesOf(got), statusesOf(all[i+1:])) || got[0].ID != all[i+1].ID {
				t.Fatalf("resume after %s (%s): got %v, want %v", ev.ID, via, statusesOf(got), statusesOf(all[i+1:]))
			}
		}
	}
}

func TestManySubscribersEachGetEveryEvent(t *testing.T) {
	s := startServer(t, nil)
	id := newID()
	const n = 100
	streams := make([]*stream, n)
	for i := range streams {
		streams[i] = openStream(t, s.URL+"/orders/"+id+"/stream", nil)
	}
	res := do(t, http.MethodPost, s.URL+"/orders/"+id+"/simulate?interval=10ms", nil, "")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("simulate: %d %s", res.StatusCode, bodyOf(res))
	}
	var wg sync.WaitGroup
	for i, st := range streams {
		wg.Go(func() {
			var got []string
			for range happyPath {
				ev, err := st.nextOrErr(10 * time.Second)
				if err != nil {
					t.Errorf("subscriber %d after %v: %v", i, got, err)
					return
				}
				got = append(got, ev.Update.Status)
			}
			if !slices.Equal(got, happyPath) {
				t.Errorf("subscriber %d got %v", i, got)
			}
		})
	}
	wg.Wait()
}

func TestHeartbeats(t *testing.T) {
	s := startServer(t, map[string]string{"HEARTBEAT_INTERVAL": "50ms"})
	id := newID()
	st := openStream(t, s.URL+"/orders/"+id+"/stream", nil)
	go func() {
		for {
			if _, err := st.dec.Next(); err != nil {
				return
			}
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for st.keepAlives() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("%d keep-alive comments in 10s with a 50ms heartbeat", st.keepAlives())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRacingPublishersExactlyOneWins(t *testing.T) {
	s := startServer(t, nil)
	id := newID()
	publish(t, s.URL, id, "Created")
	const racers = 20
	codes := make([]int, racers)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range racers {
		wg.Go(func() {
			<-start
			// Mutually exclusive: whichever wins, the other may not follow it.
			status := []string{"Shipped", "Cancelled"}[i%2]
			req, _ := http.NewRequest(http.MethodPost, s.URL+"/orders/"+id+"/events", strings.NewReader(`{"status":"`+status+`"}`))
			req.Header.Set("Content-Type", "application/json")
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			res.Body.Close()
			codes[i] = res.StatusCode
		})
	}
	close(start)
	wg.Wait()
	won, lost := 0, 0
	for _, c := range codes {
		switch c {
		case http.StatusCreated:
			won++
		case http.StatusConflict:
			lost++
		}
	}
	if won != 1 || lost != racers-1 {
		t.Fatalf("codes %v: %d won, %d got 409; want exactly one winner", codes, won, lost)
	}
}

func TestSimulate(t *testing.T) {
	s := startServer(t, nil)

	t.Run("from nothing to Delivered", func(t *testing.T) {
		id := newID()
		st := openStream(t, s.URL+"/orders/"+id+"/stream", nil)
		res := do(t, http.MethodPost, s.URL+"/orders/"+id+"/simulate?interval=20ms", nil, "")
		var body struct {
			OrderID   string `json:"orderId"`
			Published int    `json:"published"`
		}
		if res.StatusCode != http.StatusOK || json.NewDecoder(res.Body).Decode(&body) != nil {
			t.Fatalf("simulate: %d", res.StatusCode)
		}
		if body.OrderID != id || body.Published != 6 {
			t.Fatalf("answer %+v, want %s and 6", body, id)
		}
		var got []event
		for range happyPath {
			got = append(got, st.next(t))
		}
		if !slices.Equal(statusesOf(got), happyPath) {
			t.Fatalf("streamed %v", statusesOf(got))
		}
		st.expectEnd(t)
	})

	t.Run("from midway", func(t *testing.T) {
		id := newID()
		publish(t, s.URL, id, "Packed")
		res := do(t, http.MethodPost, s.URL+"/orders/"+id+"/simulate?interval=0s", nil, "")
		if res.StatusCode != http.StatusOK || !strings.Contains(bodyOf(res), `"published":3`) {
			t.Fatalf("simulate from Packed: %d", res.StatusCode)
		}
	})

	t.Run("another publisher moves the order meanwhile", func(t *testing.T) {
		id := newID()
		st := openStream(t, s.URL+"/orders/"+id+"/stream", nil)
		answer := make(chan *http.Response, 1)
		go func() {
			req, _ := http.NewRequest(http.MethodPost, s.URL+"/orders/"+id+"/simulate?interval=2s", nil)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				close(answer)
				return
			}
			answer <- res
		}()
		if ev := st.next(t); ev.Update.Status != "Created" {
			t.Fatalf("first simulated status %s", ev.Update.Status)
		}
		publish(t, s.URL, id, "Shipped") // during the simulation's 2s wait
		var got []string
		for range 3 {
			got = append(got, st.next(t).Update.Status)
		}
		if want := []string{"Shipped", "OutForDelivery", "Delivered"}; !slices.Equal(got, want) {
			t.Fatalf("after the outside publish: %v, want %v", got, want)
		}
		res := <-answer
		if res == nil {
			return
		}
		defer res.Body.Close()
		var body struct{ Published int }
		json.NewDecoder(res.Body).Decode(&body)
		if res.StatusCode != http.StatusOK || body.Published != 3 {
			t.Fatalf("simulate: %d published %d, want 200 and 3 (Created, OutForDelivery, Delivered)", res.StatusCode, body.Published)
		}
	})

	t.Run("already terminal", func(t *testing.T) {
		id := newID()
		publish(t, s.URL, id, "Cancelled")
		res := do(t, http.MethodPost, s.URL+"/orders/"+id+"/simulate?interval=0s", nil, "")
		if res.StatusCode != http.StatusConflict || !strings.Contains(bodyOf(res), "Cancelled") {
			t.Fatalf("simulate a cancelled order: %d", res.StatusCode)
		}
	})
}

func TestGetOrderAndHealth(t *testing.T) {
	s := startServer(t, nil)
	id := newID()
	if res := get(t, s.URL+"/orders/"+id); res.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown order: %d", res.StatusCode)
	}
	publish(t, s.URL, id, "Created")
	want := publish(t, s.URL, id, "Shipped")
	res := get(t, s.URL+"/orders/"+id)
	var got update
	if res.StatusCode != http.StatusOK || json.NewDecoder(res.Body).Decode(&got) != nil || got != want {
		t.Fatalf("latest: %d %+v, want %+v", res.StatusCode, got, want)
	}
	if ct := res.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	if res := get(t, s.URL+"/healthz"); res.StatusCode != http.StatusOK {
		t.Fatalf("healthz: %d", res.StatusCode)
	}
}

func TestPage(t *testing.T) {
	s := startServer(t, nil)
	res := get(t, s.URL+"/")
	body := bodyOf(res)
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	for _, want := range []string{"EventSource", "/stream", "/simulate", "order-update"} {
		if !strings.Contains(body, want) {
			t.Errorf("the page does not mention %q", want)
		}
	}
}

// TestShutdownEndsStreams: cancelling run's context ends every open stream
// cleanly and run returns.
func TestShutdownEndsStreams(t *testing.T) {
	s := startServer(t, map[string]string{"HEARTBEAT_INTERVAL": "1h"})
	id := newID()
	var streams []*stream
	for range 20 {
		streams = append(streams, openStream(t, s.URL+"/orders/"+id+"/stream", nil))
	}
	publish(t, s.URL, id, "Created")
	for _, st := range streams {
		st.next(t)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- s.stop() }()
	for i, st := range streams {
		if _, err := st.nextOrErr(10 * time.Second); err == nil || err.Error() != "EOF" {
			t.Fatalf("stream %d at shutdown: %v, want a clean EOF", i, err)
		}
	}
	if err := <-stopped; err != nil {
		t.Fatalf("run: %v", err)
	}
	if _, err := net.DialTimeout("tcp", strings.TrimPrefix(s.URL, "http://"), time.Second); err == nil {
		t.Fatal("the server still accepts connections after shutdown")
	}
}

// TestStreamCyclesLeaveNoGoroutines connects and drops a thousand streams:
// the server must be back where it started.
func TestStreamCyclesLeaveNoGoroutines(t *testing.T) {
	s := startServer(t, nil)
	id := newID()
	publish(t, s.URL, id, "Created")
	client := &http.Client{Transport: &http.Transport{}}
	cycle := func() {
		res, err := client.Get(s.URL + "/orders/" + id + "/stream")
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64)
		res.Body.Read(buf) // the retry: field
		res.Body.Close()
	}
	for range 50 {
		cycle()
	}
	baseline := settledGoroutines()
	for range 1000 {
		cycle()
	}
	client.CloseIdleConnections()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := settledGoroutines()
		if n <= baseline+5 {
			break
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d before, %d after 1000 stream cycles\n%s", baseline, n, buf[:runtime.Stack(buf, true)])
		}
	}
}

func settledGoroutines() int {
	time.Sleep(50 * time.Millisecond)
	return runtime.NumGoroutine()
}

func TestConfigErrors(t *testing.T) {
	for _, env := range []map[string]string{
		{"HEARTBEAT_INTERVAL": "soon"},
		{"HEARTBEAT_INTERVAL": "0s"},
		{"RETRY_INTERVAL": "-1s"},
		{"ORDER_RETENTION": "forever"},
		{"SHUTDOWN_DRAIN": "-1s"},
		{"ADDR": "127.0.0.1:0", "ADDR_FILE": "/nonexistent-dir/addr"}, // unwritable: said, not ignored
	} {
		err := run(t.Context(), []string{"orderstream"}, func(k string) string { return env[k] }, new(strings.Builder))
		if err == nil {
			t.Errorf("env %v: run accepted it", env)
		}
	}
	err := run(t.Context(), []string{"orderstream", "-heartbeat", "nope"}, func(string) string { return "" }, new(strings.Builder))
	if err == nil {
		t.Error("a bad flag was accepted")
	}
}
