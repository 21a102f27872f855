package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/google/uuid"

	"github.com/orderstream/orderstream/shared/broker"
	"github.com/orderstream/orderstream/shared/broker/brokertest"
	"github.com/orderstream/orderstream/shared/broker/redistest"
	"github.com/orderstream/orderstream/shared/httpapi"
	"github.com/orderstream/orderstream/shared/httpapi/httpapitest"
	"github.com/orderstream/orderstream/shared/sse"
)

// wait bounds every wait: the machines are shared.
const wait = 15 * time.Second

// queue makes SQS-shaped messages as Lambda's SQS poller hands them over,
// for a standard or a FIFO queue.
type queue struct {
	name string
	fifo bool
	mu   sync.Mutex
	seq  int
}

func standardQueue() *queue { return &queue{name: "orderstream-IngestQueue-AbC123"} }
func fifoQueue() *queue     { return &queue{name: "orderstream-ingest.fifo", fifo: true} }

// send is a new message with body, as SendMessage makes one; for a FIFO
// queue its group is group (the order id, as the contract asks).
func (q *queue) send(body, group string) events.SQSMessage {
	q.mu.Lock()
	q.seq++
	n := q.seq
	q.mu.Unlock()
	attrs := map[string]string{
		"ApproximateReceiveCount":          "1",
		"SentTimestamp":                    strconv.FormatInt(time.Now().UnixMilli(), 10),
		"SenderId":                         "AIDAIENQZJOLO23YVJ4VO",
		"ApproximateFirstReceiveTimestamp": strconv.FormatInt(time.Now().UnixMilli(), 10),
	}
	if q.fifo {
		attrs["MessageGroupId"] = group
		attrs["MessageDeduplicationId"] = fmt.Sprintf("dedup-%d", n)
		attrs["SequenceNumber"] = fmt.Sprintf("186330000000000000%02d", n)
	}
	return events.SQSMessage{
		MessageId:      uuid.NewString(),
		ReceiptHandle:  fmt.Sprintf("AQEB-receipt-%d-1", n),
		Body:           body,
		Md5OfBody:      "not-checked",
		Attributes:     attrs,
		EventSourceARN: "arn:aws:sqs:eu-west-1:123456789012:" + q.name,
		EventSource:    "aws:sqs",
		AWSRegion:      "eu-west-1",
	}
}

// redeliver is m received again: the same message id and body, a new receipt
// handle and a higher receive count.
func redeliver(m events.SQSMessage) events.SQSMessage {
	attrs := map[string]string{}
	for k, v := range m.Attributes {
		attrs[k] = v
	}
	n, _ := strconv.Atoi(attrs["ApproximateReceiveCount"])
	attrs["ApproximateReceiveCount"] = strconv.Itoa(n + 1)
	m.Attributes = attrs
	m.ReceiptHandle += "-again"
	return m
}

func batch(msgs ...events.SQSMessage) events.SQSEvent { return events.SQSEvent{Records: msgs} }

// body is a message body sent straight to the queue.
func body(orderID, status string, key ...string) string {
	m := map[string]string{"orderId": orderID, "status": status}
	if len(key) > 0 {
		m["idempotencyKey"] = key[0]
	}
	b, _ := json.Marshal(m)
	return string(b)
}

// eventBridgeBody is what an EventBridge rule whose target is the queue puts
// in the message: the whole event, with the fields in its detail.
func eventBridgeBody(eventID string, detail any) string {
	d, _ := json.Marshal(detail)
	ev := events.EventBridgeEvent{
		Version:    "0",
		ID:         eventID,
		DetailType: "OrderStatusChanged",
		Source:     "com.shop.orders",
		AccountID:  "123456789012",
		Time:       time.Now().UTC().Truncate(time.Second),
		Region:     "eu-west-1",
		Resources:  []string{},
		Detail:     d,
	}
	b, _ := json.Marshal(ev)
	return string(b)
}

// failures lists the message ids a response reports failed.
func failures(res events.SQSEventResponse) []string {
	ids := []string{}
	for _, f := range res.BatchItemFailures {
		ids = append(ids, f.ItemIdentifier)
	}
	return ids
}

func ids(msgs ...events.SQSMessage) []string {
	s := []string{}
	for _, m := range msgs {
		s = append(s, m.MessageId)
	}
	return s
}

// brokers runs fn against the in-process broker and against a Redis broker
// on a real redis-server, each new.
func brokers(t *testing.T, fn func(t *testing.T, env *testEnv)) {
	t.Run("memory", func(t *testing.T) {
		b := broker.NewMemory(brokertest.Options())
		t.Cleanup(func() { b.Close() })
		fn(t, newTestEnv(t, b, nil))
	})
	t.Run("redis", func(t *testing.T) {
		srv := redistest.Start(t)
		b, err := broker.NewRedis(context.Background(), broker.RedisConfig{
			URL: srv.URL(), KeyPrefix: "ingest-test:", Options: brokertest.Options(), Timeout: 500 * time.Millisecond,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		fn(t, newTestEnv(t, b, srv))
	})
}

// testEnv is the handler under test with its broker, and the core served
// over HTTP on the same broker: "the local server" whose subscribers must
// see what the queue brought.
type testEnv struct {
	b       broker.Broker
	redis   *redistest.Server // nil on the in-process broker
	logs    *httpapitest.SyncBuffer
	emf     *httpapitest.SyncBuffer
	handle  func(context.Context, events.SQSEvent) (events.SQSEventResponse, error)
	baseURL string
}

func newTestEnv(t *testing.T, b broker.Broker, redis *redistest.Server) *testEnv {
	env := &testEnv{b: b, redis: redis, logs: &httpapitest.SyncBuffer{}, emf: &httpapitest.SyncBuffer{}}
	logger := slog.New(slog.NewJSONHandler(env.logs, nil))
	env.handle = newHandler(logger, b, newMetrics(env.emf, "orderstream-IngestFunction-test"))
	cfg := httpapi.Config{HeartbeatInterval: time.Second, RetryInterval: 3 * time.Second, WriteTimeout: 10 * time.Second}
	srv := httptest.NewServer(httpapi.NewServer(slog.New(slog.NewTextHandler(io.Discard, nil)), b, cfg))
	t.Cleanup(srv.Close)
	env.baseURL = srv.URL
	return env
}

// run hands the batch to the handler as Lambda would, with a deadline.
func (env *testEnv) run(t *testing.T, ev events.SQSEvent) events.SQSEventResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := env.handle(ctx, ev)
	if err != nil {
		t.Fatalf("the handler failed the whole batch: %v", err)
	}
	if res.BatchItemFailures == nil {
		t.Fatalf("batchItemFailures is null")
	}
	return res
}

// tallies are the embedded-metric-format lines written so far, one a batch.
func (env *testEnv) tallies(t *testing.T) []emfLine {
	t.Helper()
	var ls []emfLine
	for _, line := range strings.Split(strings.TrimSpace(env.emf.String()), "\n") {
		var l emfLine
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		ls = append(ls, l)
	}
	return ls
}

// lastTally is the last batch's metrics.
func (env *testEnv) lastTally(t *testing.T) emfLine {
	t.Helper()
	ls := env.tallies(t)
	return ls[len(ls)-1]
}

// String is the counts, for messages.
func (l emfLine) String() string {
	return fmt.Sprintf("accepted %d, stale %d, failed %d (malformed %d, key conflict %d, broker unavailable %d, not tried %d)",
		l.IngestAccepted, l.IngestStale, l.IngestFailed, l.IngestMalformed, l.IngestConflict, l.IngestUnavailable, l.IngestSkipped)
}

// history is an order's events as the broker has them, their statuses.
func (env *testEnv) history(t *testing.T, id string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	sub, err := env.b.Subscribe(ctx, uuid.MustParse(id), broker.EventID{})
	if err != nil {
		t.Fatalf("subscribe %s: %v", id, err)
	}
	defer sub.Close()
	statuses := []string{}
	for _, ev := range sub.History {
		statuses = append(statuses, ev.Update.Status.String())
	}
	return statuses
}

// watcher is one subscriber's stream of an order, on the core's HTTP server.
type watcher struct {
	id     string
	open   chan struct{} // closed once the stream's first bytes arrived
	done   chan struct{} // closed when the stream ended
	mu     sync.Mutex
	events []sse.Message
	err    error
}

// watch opens a stream of the order and waits until it is open, so that what
// follows reaches it live.
func (env *testEnv) watch(t *testing.T, id string) *watcher {
	t.Helper()
	w := &watcher{id: id, open: make(chan struct{}), done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, env.baseURL+"/orders/"+id+"/stream", nil)
	go func() {
		defer close(w.done)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			w.fail(err)
			close(w.open)
			return
		}
		defer res.Body.Close()
		if res.StatusCode != http.StatusOK {
			w.fail(fmt.Errorf("stream answered %s", res.Status))
			close(w.open)
			return
		}
		dec := sse.NewDecoder(&signalReader{r: res.Body, first: w.open})
		for {
			m, err := dec.Next()
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				w.fail(err)
				return
			}
			w.mu.Lock()
			w.events = append(w.events, m)
			w.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-w.done
	})
	select {
	case <-w.open:
	case <-time.After(wait):
		t.Fatalf("the stream of %s did not open", id)
	}
	return w
}

func (w *watcher) fail(err error) {
	w.mu.Lock()
	w.err = err
	w.mu.Unlock()
}

// statuses waits for the stream to end (after the order's terminal event)
// and returns what it delivered.
func (w *watcher) statuses(t *testing.T) []string {
	t.Helper()
	select {
	case <-w.done:
	case <-time.After(wait):
		t.Fatalf("the stream of %s did not end", w.id)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		t.Fatalf("stream of %s: %v", w.id, w.err)
	}
	got := []string{}
	for _, m := range w.events {
		var u struct{ OrderID, Status string }
		if err := json.Unmarshal([]byte(m.Data), &u); err != nil || u.OrderID != w.id || m.Event != "order-update" {
			t.Fatalf("stream of %s: event %+v", w.id, m)
		}
		got = append(got, u.Status)
	}
	return got
}

type signalReader struct {
	r     io.Reader
	first chan struct{}
	once  sync.Once
}

func (s *signalReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if n > 0 {
		s.once.Do(func() { close(s.first) })
	}
	return n, err
}
