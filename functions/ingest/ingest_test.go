package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/google/uuid"

	"github.com/orderstream/orderstream/shared/broker"
	"github.com/orderstream/orderstream/shared/broker/brokertest"
)

// TestMixedBatch: one batch with good, repeated, stale, malformed and
// key-conflict messages, direct and through EventBridge, gives exactly the
// expected batchItemFailures, and the core's subscribers see exactly the
// accepted events, in order.
func TestMixedBatch(t *testing.T) {
	brokers(t, func(t *testing.T, env *testEnv) {
		q := standardQueue()
		a, b := uuid.NewString(), uuid.NewString()
		watchA, watchB := env.watch(t, a), env.watch(t, b)

		var (
			aCreated     = q.send(body(a, "Created"), "")
			aCreatedTwin = q.send(body(a, "Created"), "") // the shop sent it twice
			aPacked      = q.send(body(a, "Packed", "pack-1"), "")
			aStale       = q.send(body(a, "PaymentConfirmed"), "")
			notJSON      = q.send(`{"orderId":`, "")
			badID        = q.send(body("42", "Created"), "")
			badStatus    = q.send(body(a, "Lost"), "")
			keyConflict  = q.send(body(a, "Shipped", "pack-1"), "")
			bViaBus      = q.send(eventBridgeBody(uuid.NewString(), map[string]string{"orderId": b, "status": "Created"}), "")
			busNoOrder   = q.send(eventBridgeBody(uuid.NewString(), map[string]string{"status": "Packed"}), "")
			emptyKey     = q.send(body(b, "Packed", ""), "")
			numberStatus = q.send(`{"orderId":"`+b+`","status":3}`, "")
			twoValues    = q.send(body(b, "Packed")+body(b, "Shipped"), "")
			tooLarge     = q.send(`{"orderId":"`+b+`","status":"Packed","pad":"`+strings.Repeat("x", 64<<10)+`"}`, "")
		)
		res := env.run(t, batch(aCreated, aCreatedTwin, aPacked, aStale, notJSON, badID, badStatus, keyConflict,
			bViaBus, busNoOrder, emptyKey, numberStatus, twoValues, tooLarge))

		want := ids(notJSON, badID, badStatus, keyConflict, busNoOrder, emptyKey, numberStatus, twoValues, tooLarge)
		if got := failures(res); !slices.Equal(got, want) {
			t.Errorf("batchItemFailures %v\nwant %v", got, want)
		}
		m := env.lastTally(t)
		if m.IngestAccepted != 4 || m.IngestStale != 1 || m.IngestFailed != 9 || m.IngestMalformed != 8 || m.IngestConflict != 1 || m.IngestUnavailable != 0 || m.IngestSkipped != 0 {
			t.Errorf("metrics: %v", m)
		}
		logs := env.logs.String()
		if !strings.Contains(logs, `"msg":"stale message dropped: the order is past its status"`) ||
			!strings.Contains(logs, `"messageId":"`+aStale.MessageId+`"`) || !strings.Contains(logs, `"current":"Packed"`) {
			t.Errorf("the stale message is not logged with its order's status:\n%s", logs)
		}

		// The orders end, so that their streams end and can be compared whole.
		if got := failures(env.run(t, batch(q.send(body(a, "Delivered"), ""), q.send(body(b, "Cancelled"), "")))); len(got) != 0 {
			t.Fatalf("ending the orders: failures %v", got)
		}
		if got, want := watchA.statuses(t), []string{"Created", "Packed", "Delivered"}; !slices.Equal(got, want) {
			t.Errorf("order A's subscriber saw %v, want %v", got, want)
		}
		if got, want := watchB.statuses(t), []string{"Created", "Cancelled"}; !slices.Equal(got, want) {
			t.Errorf("order B's subscriber saw %v, want %v", got, want)
		}
	})
}

// TestRedeliveryPublishesOnce: the same message delivered twice (SQS), the
// same EventBridge event delivered twice (two SQS messages), and a
// redelivery after the order moved on all publish once and are done.
func TestRedeliveryPublishesOnce(t *testing.T) {
	brokers(t, func(t *testing.T, env *testEnv) {
		q := standardQueue()
		c := uuid.NewString()
		watch := env.watch(t, c)
		created := q.send(body(c, "Created"), "")
		eventID := uuid.NewString()
		packed := q.send(eventBridgeBody(eventID, map[string]string{"orderId": c, "status": "Packed"}), "")
		packedAgain := q.send(eventBridgeBody(eventID, map[string]string{"orderId": c, "status": "Packed"}), "")
		keyed := q.send(body(c, "Shipped", "ship-77"), "")

		for i, ev := range []events.SQSEvent{
			batch(created, packed),
			batch(redeliver(created), packedAgain, keyed),
			batch(redeliver(redeliver(created)), redeliver(packed), redeliver(keyed)), // after the order moved on
		} {
			if got := failures(env.run(t, ev)); len(got) != 0 {
				t.Fatalf("delivery %d: failures %v", i+1, got)
			}
			if m := env.lastTally(t); m.IngestAccepted != len(ev.Records) || m.IngestStale != 0 {
				t.Errorf("delivery %d: %v; want every message accepted (a repeat), none stale", i+1, m)
			}
		}
		if got, want := env.history(t, c), []string{"Created", "Packed", "Shipped"}; !slices.Equal(got, want) {
			t.Errorf("history %v, want %v: something was published twice", got, want)
		}
		env.run(t, batch(q.send(body(c, "Delivered"), "")))
		if got, want := watch.statuses(t), []string{"Created", "Packed", "Shipped", "Delivered"}; !slices.Equal(got, want) {
			t.Errorf("subscriber saw %v, want %v", got, want)
		}
	})
}

// TestFIFOStopsAtFirstFailure: a FIFO batch with a failure in the middle
// reports it and every later message, and publishes none of them; a stale
// message is done and does not stop the batch. Redelivered, the rest goes
// through in order.
func TestFIFOStopsAtFirstFailure(t *testing.T) {
	brokers(t, func(t *testing.T, env *testEnv) {
		q := fifoQueue()
		d, e := uuid.NewString(), uuid.NewString()
		watchD := env.watch(t, d)
		dCreated := q.send(body(d, "Created"), d)
		dPacked := q.send(body(d, "Packed"), d)
		dStale := q.send(body(d, "PaymentConfirmed"), d)
		dBroken := q.send(`{"orderId":"`+d+`","status":"Shipped"`, d)
		dShipped := q.send(body(d, "Shipped"), d)
		eCreated := q.send(body(e, "Created"), e)

		res := env.run(t, batch(dCreated, dPacked, dStale, dBroken, dShipped, eCreated))
		if got, want := failures(res), ids(dBroken, dShipped, eCreated); !slices.Equal(got, want) {
			t.Fatalf("batchItemFailures %v, want the broken message and every later one %v", got, want)
		}
		if m := env.lastTally(t); m.IngestAccepted != 2 || m.IngestStale != 1 || m.IngestMalformed != 1 || m.IngestSkipped != 2 {
			t.Errorf("metrics: %v", m)
		}
		if got, want := env.history(t, d), []string{"Created", "Packed"}; !slices.Equal(got, want) {
			t.Errorf("order D's history %v, want %v: a message after the failure was published", got, want)
		}
		if _, err := env.b.Latest(context.Background(), uuid.MustParse(e)); !errors.Is(err, broker.ErrNotFound) {
			t.Errorf("order E was published after the failure: %v", err)
		}

		// SQS redelivers the failed messages in order (the broken one would
		// go on failing until it reaches the dead-letter queue).
		if got := failures(env.run(t, batch(redeliver(dShipped), redeliver(eCreated), q.send(body(d, "Delivered"), d)))); len(got) != 0 {
			t.Fatalf("redelivery: failures %v", got)
		}
		if got, want := watchD.statuses(t), []string{"Created", "Packed", "Shipped", "Delivered"}; !slices.Equal(got, want) {
			t.Errorf("order D's subscriber saw %v, want %v", got, want)
		}
	})
}

// TestBrokerDownFailsTheBatch: with the broker unreachable every message of
// the batch is reported failed, the first after trying it and the others
// without waiting for the same broker again; once it is back the redelivered
// batch goes through.
func TestBrokerDownFailsTheBatch(t *testing.T) {
	brokers(t, func(t *testing.T, env *testEnv) {
		q := standardQueue()
		f := uuid.NewString()
		msgs := []events.SQSMessage{q.send(body(f, "Created"), ""), q.send(body(f, "Packed"), ""), q.send(body(uuid.NewString(), "Created"), "")}
		if env.redis == nil {
			env.b.Close() // the in-process broker has no "back": closed is down
		} else {
			env.redis.Stop()
		}
		res := env.run(t, batch(msgs...))
		if got, want := failures(res), ids(msgs...); !slices.Equal(got, want) {
			t.Fatalf("batchItemFailures %v, want the whole batch %v", got, want)
		}
		if m := env.lastTally(t); m.IngestUnavailable != 1 || m.IngestSkipped != 2 || m.IngestFailed != 3 {
			t.Errorf("metrics: %v", m)
		}
		if env.redis == nil {
			return
		}
		env.redis.Restart()
		// The broker reconnects in its own time; a stream opened before
		// would be answered 503.
		deadline := time.Now().Add(wait)
		for env.b.Ping(context.Background()) != nil {
			if time.Now().After(deadline) {
				t.Fatal("the broker did not reconnect")
			}
			time.Sleep(50 * time.Millisecond)
		}
		watch := env.watch(t, f)
		var res2 events.SQSEventResponse
		deadline = time.Now().Add(wait)
		for { // each connection of the pool reconnects in its own time
			res2 = env.run(t, batch(redeliver(msgs[0]), redeliver(msgs[1]), redeliver(msgs[2]), q.send(body(f, "Delivered"), "")))
			if len(res2.BatchItemFailures) == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if got := failures(res2); len(got) != 0 {
			t.Fatalf("after the broker came back: failures %v", got)
		}
		if got, want := watch.statuses(t), []string{"Created", "Packed", "Delivered"}; !slices.Equal(got, want) {
			t.Errorf("subscriber saw %v, want %v", got, want)
		}
	})
}

// TestDeadlineNear: a batch whose invocation is about to time out is
// reported failed without being tried, rather than cut off by Lambda (which
// would make SQS retry everything, done messages too).
func TestDeadlineNear(t *testing.T) {
	b := broker.NewMemory(brokertest.Options())
	defer b.Close()
	env := newTestEnv(t, b, nil)
	q := standardQueue()
	msgs := []events.SQSMessage{q.send(body(uuid.NewString(), "Created"), ""), q.send(body(uuid.NewString(), "Created"), "")}
	ctx, cancel := context.WithTimeout(context.Background(), deadlineMargin/2)
	defer cancel()
	res, err := env.handle(ctx, batch(msgs...))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := failures(res), ids(msgs...); !slices.Equal(got, want) {
		t.Errorf("batchItemFailures %v, want %v", got, want)
	}
	if m := env.lastTally(t); m.IngestSkipped != 2 {
		t.Errorf("metrics: %v", m)
	}
}

// TestConcurrentDeliveries: standard queues deliver at least once, and the
// event source mapping runs several invocations at once. Every order's
// batch is handed to three concurrent invocations, with subscribers on every
// order: each status is published exactly once, in order, and no message is
// stale or failed (a concurrent duplicate is a repeat, by its derived key).
func TestConcurrentDeliveries(t *testing.T) {
	brokers(t, func(t *testing.T, env *testEnv) {
		q := standardQueue()
		const orders, copies = 12, 3
		lifecycle := []string{"Created", "PaymentConfirmed", "Packed", "Shipped", "OutForDelivery", "Delivered"}
		var batches []events.SQSEvent
		var watchers []*watcher
		for range orders {
			id := uuid.NewString()
			watchers = append(watchers, env.watch(t, id))
			var msgs []events.SQSMessage
			for _, s := range lifecycle {
				msgs = append(msgs, q.send(body(id, s), ""))
			}
			batches = append(batches, batch(msgs...))
		}
		var wg sync.WaitGroup
		errs := make(chan error, orders*copies)
		for _, ev := range batches {
			for range copies {
				wg.Go(func() {
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					defer cancel()
					res, err := env.handle(ctx, ev)
					if err == nil && len(res.BatchItemFailures) > 0 {
						err = fmt.Errorf("failures %v", failures(res))
					}
					if err != nil {
						errs <- err
					}
				})
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		for _, m := range env.tallies(t) {
			if m.IngestStale != 0 || m.IngestAccepted != len(lifecycle) {
				t.Errorf("an invocation counted %v: a concurrent duplicate must be a repeat", m)
			}
		}
		for _, w := range watchers {
			if got := w.statuses(t); !slices.Equal(got, lifecycle) {
				t.Errorf("order %s's subscriber saw %v, want %v", w.id, got, lifecycle)
			}
		}
	})
}
