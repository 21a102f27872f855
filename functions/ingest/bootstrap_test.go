package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/google/uuid"

	"github.com/orderstream/orderstream/functions/internal/lambdatest"
	"github.com/orderstream/orderstream/shared/broker"
	"github.com/orderstream/orderstream/shared/broker/brokertest"
	"github.com/orderstream/orderstream/shared/broker/redistest"
)

// These tests run the built bootstrap against a fake Lambda Runtime API
// (lambdatest.Runtime) with SQS events, as Lambda's event source mapping
// invokes it, and read its answers (batchItemFailures) and its metrics lines.

var (
	bootstrapDir  string
	bootstrapOnce sync.Once
	bootstrapBin  string
	bootstrapErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if bootstrapDir != "" {
		os.RemoveAll(bootstrapDir)
	}
	os.Exit(code)
}

// bootstrap builds the function once, for the tests that run it (fuzzing
// and the in-process tests don't); under -short it builds nothing and skips
// them, as lambdatest.Start would.
func bootstrap(t *testing.T) string {
	t.Helper()
	lambdatest.SkipShort(t)
	bootstrapOnce.Do(func() {
		bootstrapDir, bootstrapErr = os.MkdirTemp("", "orderstream-ingest-test-")
		if bootstrapErr == nil {
			bootstrapBin, bootstrapErr = lambdatest.BuildBootstrap(bootstrapDir, ".")
		}
	})
	if bootstrapErr != nil {
		t.Fatalf("build the ingest bootstrap: %v", bootstrapErr)
	}
	return bootstrapBin
}

// function is one bootstrap process and the fake runtime it serves.
type function struct {
	rt   *lambdatest.Runtime
	proc *lambdatest.Process
}

func startFunction(t *testing.T, env ...string) *function {
	t.Helper()
	rt := lambdatest.NewRuntime(t)
	rt.FunctionTimeout = 30 * time.Second // the template's
	env = append(env, "AWS_LAMBDA_FUNCTION_NAME=orderstream-IngestFunction-test")
	proc := lambdatest.Start(t, bootstrap(t), lambdatest.LambdaEnv(rt.Addr(), env...))
	return &function{rt: rt, proc: proc}
}

// invoke hands the function a batch and returns the messages it reported
// failed.
func (f *function) invoke(t *testing.T, ev events.SQSEvent) []string {
	t.Helper()
	payload, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	res := f.rt.Invoke(payload, time.Time{}).Wait(t, wait)
	if res.Kind != "response" {
		t.Fatalf("the function answered %s: %s", res.Kind, res.Body())
	}
	var out struct {
		BatchItemFailures *[]events.SQSBatchItemFailure `json:"batchItemFailures"`
	}
	dec := json.NewDecoder(strings.NewReader(string(res.Body())))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&out); err != nil || out.BatchItemFailures == nil {
		t.Fatalf("answer %q is no SQSEventResponse with batchItemFailures: %v", res.Body(), err)
	}
	return failures(events.SQSEventResponse{BatchItemFailures: *out.BatchItemFailures})
}

// tallies waits for the function to have written n metrics lines (its
// stdout reaches the test through a pipe, after the answers) and returns them.
func (f *function) tallies(t *testing.T, n int) []emfLine {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		var ls []emfLine
		for _, line := range strings.Split(f.proc.Stdout(), "\n") {
			if !strings.Contains(line, `"_aws"`) {
				continue
			}
			var l emfLine
			if err := json.Unmarshal([]byte(line), &l); err != nil {
				t.Fatalf("metrics line %q: %v", line, err)
			}
			ls = append(ls, l)
		}
		if len(ls) >= n || time.Now().After(deadline) {
			return ls
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestBootstrapBatches: the built function, on its in-process broker, answers
// a mixed batch, its redelivery and a FIFO batch with a failure in the middle
// with exactly the expected batchItemFailures, and its metrics say which
// messages were repeats rather than stale.
func TestBootstrapBatches(t *testing.T) {
	f := startFunction(t)
	q, fq := standardQueue(), fifoQueue()
	a, b := uuid.NewString(), uuid.NewString()

	created := q.send(body(a, "Created"), "")
	packed := q.send(eventBridgeBody(uuid.NewString(), map[string]string{"orderId": a, "status": "Packed"}), "")
	stale := q.send(body(a, "PaymentConfirmed"), "")
	broken := q.send(`{"orderId":"`+a+`",`, "")
	keyed := q.send(body(b, "Created", "k"), "")
	keyReused := q.send(body(b, "Packed", "k"), "")
	otherOrderSameKey := q.send(body(a, "Shipped", "k"), "") // keys are per order: no conflict

	if got, want := f.invoke(t, batch(created, packed, stale, broken, keyed, keyReused, otherOrderSameKey)), ids(broken, keyReused); !slices.Equal(got, want) {
		t.Errorf("mixed batch: failures %v, want %v", got, want)
	}
	// The same messages again: done are still done, as repeats.
	if got, want := f.invoke(t, batch(redeliver(created), redeliver(packed), redeliver(broken), redeliver(keyed))), ids(broken); !slices.Equal(got, want) {
		t.Errorf("redelivery: failures %v, want %v", got, want)
	}
	c := uuid.NewString()
	fifo := []events.SQSMessage{
		fq.send(body(c, "Created"), c), fq.send(body(c, "Packed"), c), fq.send(body(c, "Nope"), c),
		fq.send(body(c, "Shipped"), c), fq.send(body(c, "Delivered"), c),
	}
	if got, want := f.invoke(t, batch(fifo...)), ids(fifo[2:]...); !slices.Equal(got, want) {
		t.Errorf("FIFO batch: failures %v, want %v", got, want)
	}
	// Shipped under a key of its own is accepted now, not stale: nothing
	// after the failure was published.
	if got := f.invoke(t, batch(fq.send(body(c, "Shipped", "late"), c), redeliver(fifo[4]))); len(got) != 0 {
		t.Errorf("FIFO redelivery: failures %v", got)
	}

	ls := f.tallies(t, 4)
	if len(ls) != 4 {
		t.Fatalf("%d metrics lines for 4 batches:\n%s", len(ls), f.proc.Stdout())
	}
	for i, want := range []string{
		"accepted 4, stale 1, failed 2 (malformed 1, key conflict 1, broker unavailable 0, not tried 0)",
		"accepted 3, stale 0, failed 1 (malformed 1, key conflict 0, broker unavailable 0, not tried 0)",
		"accepted 2, stale 0, failed 3 (malformed 1, key conflict 0, broker unavailable 0, not tried 2)",
		"accepted 2, stale 0, failed 0 (malformed 0, key conflict 0, broker unavailable 0, not tried 0)",
	} {
		if ls[i].String() != want || ls[i].FunctionName != "orderstream-IngestFunction-test" {
			t.Errorf("batch %d: %v (%s), want %s", i+1, ls[i], ls[i].FunctionName, want)
		}
	}
}

// TestBootstrapOnRedis: two instances of the built function on one real
// redis-server take batches while subscribers watch on the core's HTTP
// server on the same Redis (as the stream function serves them): the
// subscribers see exactly the accepted events, in order. With Redis down,
// the whole batch is reported failed; redelivered once it is back, it goes
// through.
func TestBootstrapOnRedis(t *testing.T) {
	lambdatest.SkipShort(t) // before starting a redis-server for nothing
	srv := redistest.Start(t, redistest.Password("s3cret"))
	fnEnv := []string{"REDIS_URL=" + srv.URL(), "REDIS_KEY_PREFIX=ingest-boot:"}
	one, two := startFunction(t, fnEnv...), startFunction(t, fnEnv...)
	b, err := broker.NewRedis(context.Background(), broker.RedisConfig{
		URL: srv.URL(), KeyPrefix: "ingest-boot:", Options: brokertest.Options(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	env := newTestEnv(t, b, srv) // its handler is not used: the bootstraps publish

	q := standardQueue()
	x, y := uuid.NewString(), uuid.NewString()
	watchX, watchY := env.watch(t, x), env.watch(t, y)
	xCreated := q.send(body(x, "Created"), "")
	if got := one.invoke(t, batch(xCreated, q.send(body(y, "Created"), ""), q.send(body(x, "Packed"), ""))); len(got) != 0 {
		t.Fatalf("failures %v", got)
	}
	// The other instance gets a redelivery, a stale message and a malformed one.
	bad := q.send(body(y, "Gone"), "")
	if got, want := two.invoke(t, batch(redeliver(xCreated), q.send(body(x, "Created"), ""), bad)), ids(bad); !slices.Equal(got, want) {
		t.Fatalf("failures %v, want %v", got, want)
	}

	srv.Stop()
	down := []events.SQSMessage{q.send(body(x, "Shipped"), ""), q.send(body(y, "Cancelled"), ""), q.send(body(x, "Delivered"), "")}
	if got, want := one.invoke(t, batch(down...)), ids(down...); !slices.Equal(got, want) {
		t.Fatalf("Redis down: failures %v, want the whole batch %v", got, want)
	}
	srv.Restart()
	deadline := time.Now().Add(wait)
	for { // the function's broker reconnects in its own time
		got := two.invoke(t, batch(redeliver(down[0]), redeliver(down[1]), redeliver(down[2])))
		if len(got) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Redis back: failures %v", got)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got, want := watchX.statuses(t), []string{"Created", "Packed", "Shipped", "Delivered"}; !slices.Equal(got, want) {
		t.Errorf("order X's subscriber saw %v, want %v", got, want)
	}
	if got, want := watchY.statuses(t), []string{"Created", "Cancelled"}; !slices.Equal(got, want) {
		t.Errorf("order Y's subscriber saw %v, want %v", got, want)
	}
	for _, f := range []*function{one, two} {
		if !strings.Contains(f.proc.Stdout(), `"broker":"redis"`) {
			t.Errorf("an instance did not start on Redis: %s", f.proc.Stdout())
		}
	}
}

// TestBootstrapInitError: a setting that can't work stops the instance at
// init with the reason posted to the Runtime API.
func TestBootstrapInitError(t *testing.T) {
	f := startFunction(t, "REDIS_URL=http://not-redis")
	ie, ok := f.rt.WaitInitError(wait)
	if !ok {
		t.Fatalf("no init error posted; stderr: %s", f.proc.Stderr())
	}
	if ie.Type != "Runtime.InitError" || !strings.Contains(string(ie.Body), "REDIS_URL") {
		t.Errorf("init error %s: %s", ie.Type, ie.Body)
	}
	if code := f.proc.Wait(wait); code != 1 {
		t.Errorf("exit status %d, want 1", code)
	}
}
