package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/orderstream/orderstream/shared/sse"
)

// statuses are published in this order; the last ends the stream.
var statuses = []string{"Created", "Packed", "Shipped", "Delivered"}

// togetherWithin: an event read this close to the next write (a heartbeat,
// the next event, or the end of the body) came with it.
const togetherWithin = 100 * time.Millisecond

// Check is one smoke run's settings.
type Check struct {
	Target    string        // base URL, with or without the trailing slash
	Gap       time.Duration // between publishes
	HeldAfter time.Duration // a later event counts as held back
	Timeout   time.Duration // of the whole run
	Token     string        // bearer token, if the deployment has auth on
	Client    *http.Client  // nil: a client of its own
}

// Report is what a run measured.
type Report struct {
	Target     string
	HeldAfter  time.Duration
	FirstByte  time.Duration // request sent to the body's first bytes (its retry:)
	Events     []Timing
	Heartbeats int
}

// Timing is one published status on its way to the stream.
type Timing struct {
	Status    string
	Published time.Time // the publish request was sent
	Accepted  time.Duration
	Arrived   time.Time // the event was read from the stream
	NextWrite time.Time // the next write read after it (zero: none)
}

// Delay is from the publish to the event's arrival.
func (t Timing) Delay() time.Duration { return t.Arrived.Sub(t.Published) }

// HeldBack says whether the event came later than HeldAfter.
func (r Report) held(t Timing) bool { return t.Delay() > r.HeldAfter }

// withNext says whether the event came together with the write after it.
func withNext(t Timing) bool {
	return !t.NextWrite.IsZero() && t.NextWrite.Sub(t.Arrived) < togetherWithin
}

// HeldBack counts the events held back.
func (r Report) HeldBack() int {
	n := 0
	for _, t := range r.Events {
		if r.held(t) {
			n++
		}
	}
	return n
}

// Print writes the figures and the verdict.
func (r Report) Print(w io.Writer) {
	fmt.Fprintf(w, "target:     %s\n", r.Target)
	fmt.Fprintf(w, "first byte: %v (stream request to the first bytes of its body)\n", r.FirstByte.Round(time.Millisecond))
	var largest time.Duration
	together := 0
	for _, t := range r.Events {
		verdict := "at once"
		if r.held(t) {
			verdict = "HELD BACK"
			if withNext(t) {
				verdict += ", arrived together with the next write"
				together++
			}
		}
		largest = max(largest, t.Delay())
		fmt.Fprintf(w, "%-10s publish answered in %-8v event arrived %-8v after the publish: %s\n",
			t.Status, t.Accepted.Round(time.Millisecond), t.Delay().Round(time.Millisecond), verdict)
	}
	fmt.Fprintf(w, "heartbeats: %d\n", r.Heartbeats)
	if n := r.HeldBack(); n > 0 {
		fmt.Fprintf(w, "verdict: HELD BACK: %d of %d events arrived more than %v after their publish, %d of them only with the next write. "+
			"Something between the function and the client holds small chunks: set the template's FlushPadding (FLUSH_PADDING) and run this again.\n",
			n, len(r.Events), r.HeldAfter, together)
		return
	}
	fmt.Fprintf(w, "verdict: events arrive at once (largest delay %v, threshold %v)\n", largest.Round(time.Millisecond), r.HeldAfter)
}

// Run opens a stream, publishes the statuses Gap apart and times them.
func (c Check) Run(ctx context.Context) (Report, error) {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	client := c.Client
	if client == nil {
		client = &http.Client{}
	}
	base := strings.TrimSuffix(c.Target, "/")
	id, err := newOrderID()
	if err != nil {
		return Report{}, err
	}
	rep := Report{Target: c.Target, HeldAfter: c.HeldAfter}

	req, err := c.request(ctx, http.MethodGet, base+"/orders/"+id+"/stream", nil)
	if err != nil {
		return rep, err
	}
	req.Header.Set("Accept", "text/event-stream")
	sent := time.Now()
	res, err := client.Do(req)
	if err != nil {
		return rep, fmt.Errorf("open the stream: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		body, _ := io.ReadAll(io.LimitReader(res.Body, 512))
		return rep, fmt.Errorf("open the stream: %s, Content-Type %q: %s", res.Status, res.Header.Get("Content-Type"), body)
	}

	s := newStreamReader(res.Body)
	go s.read()
	select {
	case <-s.firstByte:
		rep.FirstByte = s.first.Sub(sent)
	case <-s.done:
		return rep, fmt.Errorf("the stream ended before its first byte: %v", s.err)
	case <-ctx.Done():
		return rep, fmt.Errorf("no first byte within %v", c.Timeout)
	}

	for _, status := range statuses {
		select {
		case <-time.After(c.Gap):
		case <-ctx.Done():
			return rep, fmt.Errorf("publishing %s: %w", status, ctx.Err())
		}
		t := Timing{Status: status, Published: time.Now()}
		if err := c.publish(ctx, client, base, id, status); err != nil {
			return rep, err
		}
		t.Accepted = time.Since(t.Published)
		rep.Events = append(rep.Events, t)
	}

	select {
	case <-s.done: // the last status ends the stream
	case <-ctx.Done():
		return rep, fmt.Errorf("the stream did not end after %s within %v", statuses[len(statuses)-1], c.Timeout)
	}
	if s.err != nil && !errors.Is(s.err, io.EOF) {
		return rep, fmt.Errorf("read the stream: %w", s.err)
	}
	arrived, writes, heartbeats := s.results()
	rep.Heartbeats = heartbeats
	for i := range rep.Events {
		e := &rep.Events[i]
		w, ok := arrived[e.Status]
		if !ok {
			return rep, fmt.Errorf("%s was published but never arrived", e.Status)
		}
		e.Arrived = writes[w]
		if w+1 < len(writes) {
			e.NextWrite = writes[w+1]
		}
	}
	return rep, nil
}

func (c Check) request(ctx context.Context, method, url string, body []byte) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	return req, nil
}

func (c Check) publish(ctx context.Context, client *http.Client, base, id, status string) error {
	body := []byte(`{"status":"` + status + `"}`)
	req, err := c.request(ctx, http.MethodPost, base+"/orders/"+id+"/events", body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	// CloudFront's origin access control signs requests to the function URL
	// but cannot hash a body: a POST through it must bring its hash. Other
	// servers ignore the header.
	req.Header.Set("X-Amz-Content-Sha256", fmt.Sprintf("%x", sha256.Sum256(body)))
	res, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("publish %s: %w", status, err)
	}
	defer res.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(res.Body, 512))
	if res.StatusCode != http.StatusCreated {
		return fmt.Errorf("publish %s: %s: %s", status, res.Status, answer)
	}
	return nil
}

// streamReader decodes the stream and notes when each event and each write
// arrived: the time of the read that brought its last bytes.
type streamReader struct {
	body      io.Reader
	firstByte chan struct{} // closed at the first byte
	done      chan struct{} // closed when the body ends; err says why
	first     time.Time
	err       error

	mu         sync.Mutex
	last       time.Time      // of the latest read with data
	arrived    map[string]int // status: its event's index in writes
	writes     []time.Time    // events, heartbeats and the end, in order
	heartbeats int
}

func newStreamReader(body io.Reader) *streamReader {
	return &streamReader{body: body, firstByte: make(chan struct{}), done: make(chan struct{}), arrived: map[string]int{}}
}

func (s *streamReader) Read(p []byte) (int, error) {
	n, err := s.body.Read(p)
	if n > 0 {
		now := time.Now()
		s.mu.Lock()
		s.last = now
		s.mu.Unlock()
		if s.first.IsZero() {
			s.first = now
			close(s.firstByte)
		}
	}
	return n, err
}

func (s *streamReader) read() {
	defer close(s.done)
	dec := sse.NewDecoder(s)
	dec.OnComment = func(text string) {
		if text != "keep-alive" {
			return // padding: part of the write before it
		}
		s.mu.Lock()
		s.heartbeats++
		s.writes = append(s.writes, s.last)
		s.mu.Unlock()
	}
	for {
		m, err := dec.Next()
		s.mu.Lock()
		if err != nil {
			s.writes = append(s.writes, s.last) // the end of the body is a write too
			s.mu.Unlock()
			s.err = err
			return
		}
		if status := statusOf(m.Data); status != "" {
			s.arrived[status] = len(s.writes)
		}
		s.writes = append(s.writes, s.last)
		s.mu.Unlock()
	}
}

func (s *streamReader) results() (map[string]int, []time.Time, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.arrived, s.writes, s.heartbeats
}

// statusOf picks the status out of an event's JSON data, whichever of ours.
func statusOf(data string) string {
	for _, st := range statuses {
		if strings.Contains(data, `"status":"`+st+`"`) {
			return st
		}
	}
	return ""
}

// newOrderID is a random RFC 4122 version 4 UUID.
func newOrderID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:]), nil
}
