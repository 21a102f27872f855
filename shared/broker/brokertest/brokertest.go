// Package brokertest is the conformance suite every broker.Broker passes:
// the behaviour the HTTP layer and the contract rely on, written once.
package brokertest

import (
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderstream/orderstream/shared/broker"
	"github.com/orderstream/orderstream/shared/order"
)

// Open returns a fresh broker with opts; the suite closes it.
type Open func(t *testing.T, opts broker.Options) broker.Broker

// Options are the required broker options with values for tests (a
// broker takes no defaults; the service's are shared/config's): long enough
// that nothing expires unless a test says so, and each different, so that
// a test can tell which one an expiry came from. Tests that open a broker
// themselves start from these too.
func Options() broker.Options {
	return broker.Options{Retention: time.Hour, IdleExpiry: 10 * time.Hour}
}

// wait bounds every wait for an event: generous, since the machines are
// shared and a broker may deliver through a network.
const wait = 10 * time.Second

// happyPath is an order's longest life.
var happyPath = []order.Status{order.Created, order.PaymentConfirmed, order.Packed, order.Shipped, order.OutForDelivery, order.Delivered}

var idChars = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// Run runs the whole suite against the brokers open makes.
func Run(t *testing.T, open Open) {
	tests := []struct {
		name string
		fn   func(*testing.T, Open)
	}{
		{"LatestOfUnknownOrder", testLatestUnknown},
		{"PublishAndLatest", testPublishAndLatest},
		{"Transitions", testTransitions},
		{"IDsIncreaseTimestampsNeverDecrease", testOrdering},
		{"HistoryThenLive", testHistoryThenLive},
		{"ResumeFromEveryID", testResumeFromEveryID},
		{"ResumeMidwayFromEveryID", testResumeMidway},
		{"SubscribeBeforeFirstEvent", testSubscribeBeforeFirst},
		{"ManySubscribersConcurrentPublish", testManySubscribers},
		{"RacingPublishersOneWins", testRacingPublishers},
		{"SlowSubscriberDroppedLosesNothing", testSlowSubscriber},
		{"SubscribeCloseCyclesLeaveNoGoroutines", testCycles},
		{"FinishedOrdersExpire", testRetention},
		{"CloseEndsSubscriptions", testClose},
		{"IdempotentRetries", testIdempotentRetries},
		{"IdempotencyKeyForAnotherStatus", testIdempotencyKeyConflict},
		{"ConcurrentRetriesMakeOneEvent", testConcurrentRetries},
		{"MalformedIdempotencyKey", testMalformedKey},
		{"HandoverLosesNothing", testHandover},
		{"HandoverAfterEnd", testHandoverAfterEnd},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open) })
	}
}

func openBroker(t *testing.T, open Open, opts broker.Options) broker.Broker {
	t.Helper()
	b := open(t, opts)
	t.Cleanup(func() { b.Close() })
	return b
}

func publish(t *testing.T, b broker.Broker, id uuid.UUID, s order.Status) broker.Event {
	t.Helper()
	ev, err := b.Publish(context.Background(), id, broker.PublishRequest{Status: s})
	if err != nil {
		t.Fatalf("publish %v: %v", s, err)
	}
	return ev
}

func subscribe(t *testing.T, b broker.Broker, id uuid.UUID, after broker.EventID) *broker.Subscription {
	t.Helper()
	sub, err := b.Subscribe(context.Background(), id, after)
	if err != nil {
		t.Fatalf("subscribe after %v: %v", after, err)
	}
	t.Cleanup(sub.Close)
	return sub
}

func parseID(t *testing.T, ev broker.Event) broker.EventID {
	t.Helper()
	id, err := broker.ParseEventID(ev.ID)
	if err != nil {
		t.Fatalf("event id %q does not parse: %v", ev.ID, err)
	}
	return id
}

// collect reads live events until the subscription ends or want have come.
func collect(t *testing.T, sub *broker.Subscription, want int) []broker.Event {
	t.Helper()
	var got []broker.Event
	timeout := time.After(wait)
	for len(got) < want {
		select {
		case ev, ok := <-sub.Events():
			if !ok {
				return got
			}
			got = append(got, ev)
		case <-timeout:
			t.Fatalf("timed out after %d of %d events", len(got), want)
		}
	}
	return got
}

// expectEnd waits for the subscription to end and returns its Err.
func expectEnd(t *testing.T, sub *broker.Subscription) error {
	t.Helper()
	select {
	case ev, ok := <-sub.Events():
		if ok {
			t.Fatalf("want the subscription to end, got event %s %v", ev.ID, ev.Update.Status)
		}
		return sub.Err()
	case <-time.After(wait):
		t.Fatal("subscription did not end")
		return nil
	}
}

func sameEvents(t *testing.T, what string, got, want []broker.Event) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d events %v, want %d %v", what, len(got), statuses(got), len(want), statuses(want))
	}
	for i := range got {
		if got[i].ID != want[i].ID || got[i].Data != want[i].Data || got[i].Update != want[i].Update {
			t.Fatalf("%s: event %d is %+v, want %+v", what, i, got[i], want[i])
		}
	}
}

func statuses(evs []broker.Event) []order.Status {
	out := make([]order.Status, len(evs))
	for i, ev := range evs {
		out[i] = ev.Update.Status
	}
	return out
}

func testLatestUnknown(t *testing.T, open Open) {
	b := openBroker(t, open, Options())
	if _, err := b.Latest(context.Background(), uuid.New()); !errors.Is(err, broker.ErrNotFound) {
		t.Fatalf("got %v, want ErrNotFound", err)
	}
	if err := b.Ping(context.Background()); err != nil {
		t.Fatalf("ping: %v", err)
	}
}

func testPublishAndLatest(t *testing.T, open Open) {
	b := openBroker(t, open, Options())
	id := uuid.New()
	before := time.Now().Add(-time.Minute)
	ev := publish(t, b, id, order.Packed) // an order may start anywhere
	if ev.Update.OrderID != id || ev.Update.Status != order.Packed {
		t.Fatalf("update is %+v", ev.Update)
	}
	if ts := ev.Update.Timestamp; ts.Location() != time.UTC || ts.Before(before) || ts.After(time.Now().Add(time.Minute)) {
		t.Fatalf("timestamp %v is not a current UTC time", ts)
	}
	if !idChars.MatchString(ev.ID) {
		t.Fatalf("id %q has characters outside [A-Za-z0-9._-]", ev.ID)
	}
	parseID(t, ev)
	want, _ := json.Marshal(ev.Update)
	if ev.Data != string(want) {
		t.Fatalf("Data = %s, want %s", ev.Data, want)
	}
	got, err := b.Latest(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	sameEvents(t, "latest", []broker.Event{got}, []broker.Event{ev})
}

func testTransitions(t *testing.T, open Open) {
	b := openBroker(t, open, Options())
	for _, from := range append([]order.Status{0}, order.Statuses()...) {
		for _, to := range order.Statuses() {
			id := uuid.New()
			if from != 0 {
				publish(t, b, id, from)
			}
			_, err := b.Publish(context.Background(), id, broker.PublishRequest{Status: to})
			want := order.CheckTransition(from, to)
			if want == nil {
				if err != nil {
					t.Errorf("%v -> %v: got %v, want accepted", from, to, err)
				}
				continue
			}
			var te *order.TransitionError
			if !errors.As(err, &te) || te.Current != from || te.Requested != to {
				t.Errorf("%v -> %v: got %v, want a TransitionError naming %v", from, to, err, from)
			}
			latest, err := b.Latest(context.Background(), id)
			if err != nil || latest.Update.Status != from {
				t.Errorf("%v -> %v: after refusal latest is %v, %v", from, to, latest.Update.Status, err)
			}
		}
	}
}

func testOrdering(t *testing.T, open Open) {
	b := openBroker(t, open, Options())
	// Several orders published back to back, so many events share a millisecond.
	for range 20 {
		id := uuid.New()
		var last broker.EventID
		var lastTS time.Time
		for _, s := range happyPath {
			ev := publish(t, b, id, s)
			cur := parseID(t, ev)
			if cur.Compare(last) <= 0 {
				t.Fatalf("id %v does not follow %v", cur, last)
			}
			if ev.Update.Timestamp.Before(lastTS) {
				t.Fatalf("timestamp %v before %v", ev.Update.Timestamp, lastTS)
			}
			last, lastTS = cur, ev.Update.Timestamp
		}
	}
}

func testHistoryThenLive(t *testing.T, open Open) {
	b := openBroker(t, open, Options())
	id := uuid.New()
	var all []broker.Event
	for _, s := range happyPath[:2] {
		all = append(all, publish(t, b, id, s))
	}
	sub := subscribe(t, b, id, broker.EventID{})
	if sub.Finished {
		t.Fatal("an unfinished order is marked finished")
	}
	sameEvents(t, "history", sub.History, all)
	for _, s := range happyPath[2:] {
		all = append(all, publish(t, b, id, s))
	}
	sameEvents(t, "live", collect(t, sub, len(happyPath)-2), all[2:])
	if err := expectEnd(t, sub); err != nil {
		t.Fatalf("after the terminal event: Err = %v, want nil", err)
	}
}

func testResumeFromEveryID(t *testing.T, open Open) {
	b := openBroker(t, open, Options())
	for _, path := range [][]order.Status{happyPath, {order.Created, order.Packed, order.Cancelled}} {
		id := uuid.New()
		var all []broker.Event
		for _, s := range path {
			all = append(all, publish(t, b, id, s))
		}
		positions := append([]broker.EventID{{}}, make([]broker.EventID, 0, len(all))...)
		for _, ev := range all {
			positions = append(positions, parseID(t, ev))
		}
		for i, pos := range positions {
			sub := subscribe(t, b, id, pos)
			if !sub.Finished {
				t.Fatalf("after %v: a delivered order is not finished", pos)
			}
			sameEvents(t, "resume after "+pos.String(), sub.History, all[i:])
			if err := expectEnd(t, sub); err != nil {
				t.Fatalf("finished subscription ended with %v", err)
			}
		}
	}
}

func testResumeMidway(t *testing.T, open Open) {
	b := openBroker(t, open, Options())
	id := uuid.New()
	var all []broker.Event
	for _, s := range happyPath[:3] {
		all = append(all, publish(t, b, id, s))
	}
	var subs []*broker.Subscription
	for i := 0; i <= 3; i++ {
		pos := broker.EventID{}
		if i > 0 {
			pos = parseID(t, all[i-1])
		}
		sub := subscribe(t, b, id, pos)
		sameEvents(t, "history after "+pos.String(), sub.History, all[i:])
		subs = append(subs, sub)
	}
	for _, s := range happyPath[3:] {
		all = append(all, publish(t, b, id, s))
	}
	for i, sub := range subs {
		sameEvents(t, "live", collect(t, sub, 3), all[3:])
		if err := expectEnd(t, sub); err != nil {
			t.Fatalf("subscriber %d ended with %v", i, err)
		}
	}
}

func testSubscribeBeforeFirst(t *testing.T, open Open) {
	b := openBroker(t, open, Options())
	id := uuid.New()
	sub := subscribe(t, b, id, broker.EventID{})
	if len(sub.History) != 0 || sub.Finished {
		t.Fatalf("new order: history %v, finished %v", statuses(sub.History), sub.Finished)
	}
	if _, err := b.Latest(context.Background(), id); !errors.Is(err, broker.ErrNotFound) {
		t.Fatalf("a subscriber alone made the order exist: %v", err)
	}
	ev := publish(t, b, id, order.Created)
	sameEvents(t, "first event", collect(t, sub, 1), []broker.Event{ev})
}

// testManySubscribers subscribes while a publisher runs, so subscriptions
// land on every side of every event: each must see exactly the events after
// its position, whether they came as history or live.
func testManySubscribers(t *testing.T, open Open) {
	b := openBroker(t, open, Options())
	const subscribers = 200
	for _, id := range []uuid.UUID{uuid.New(), uuid.New()} {
		var wg sync.WaitGroup
		results := make([][]broker.Event, subscribers)
		start := make(chan struct{})
		for i := range subscribers {
			wg.Go(func() {
				<-start
				sub, err := b.Subscribe(context.Background(), id, broker.EventID{})
				if err != nil {
					t.Errorf("subscribe: %v", err)
					return
				}
				defer sub.Close()
				got := append([]broker.Event(nil), sub.History...)
				if !sub.Finished {
					got = append(got, collect(t, sub, len(happyPath)-len(got))...)
				}
				results[i] = got
			})
		}
		close(start)
		var all []broker.Event
		for _, s := range happyPath {
			all = append(all, publish(t, b, id, s))
			runtime.Gosched()
		}
		wg.Wait()
		for _, got := range results {
			sameEvents(t, "subscriber", got, all)
		}
	}
}

func testRacingPublishers(t *testing.T, open Open) {
	b := openBroker(t, open, Options())
	const racers = 16
	id := uuid.New()
	// Each round, every racer asks for the same next status or a competing
	// one that may not follow it (Shipped and Cancelled exclude each other):
	// exactly one may win, the rest learn the status that beat them.
	rounds := [][]order.Status{
		{order.Created},
		{order.PaymentConfirmed},
		{order.Shipped, order.Cancelled},
		{order.Delivered},
	}
	for _, candidates := range rounds {
		var wg sync.WaitGroup
		var mu sync.Mutex
		var won []order.Status
		refused := 0
		for i := range racers {
			want := candidates[i%len(candidates)]
			wg.Go(func() {
				_, err := b.Publish(context.Background(), id, broker.PublishRequest{Status: want})
				mu.Lock()
				defer mu.Unlock()
				var te *order.TransitionError
				switch {
				case err == nil:
					won = append(won, want)
				case errors.As(err, &te):
					refused++
				default:
					t.Errorf("publish %v: %v", want, err)
				}
			})
		}
		wg.Wait()
		if len(won) != 1 || refused != racers-1 {
			t.Fatalf("round %v: %d won (%v), %d refused; want exactly one winner", candidates, len(won), won, refused)
		}
		latest, err := b.Latest(context.Background(), id)
		if err != nil || latest.Update.Status != won[0] {
			t.Fatalf("latest is %v, %v; want the winner %v", latest.Update.Status, err, won[0])
		}
		if won[0].Terminal() {
			break
		}
	}
}

func testSlowSubscriber(t *testing.T, open Open) {
	opts := Options()
	opts.SubscriberBuffer = 1
	b := openBroker(t, open, opts)
	id := uuid.New()
	stuck := subscribe(t, b, id, broker.EventID{})
	var all []broker.Event
	for _, s := range happyPath[:4] {
		all = append(all, publish(t, b, id, s))
	}
	// It read nothing: it got what fitted its buffer, then was dropped.
	got := collect(t, stuck, len(all))
	if len(got) == len(all) {
		t.Fatalf("a subscriber with a 1-event buffer received all %d events without reading", len(all))
	}
	if err := stuck.Err(); !errors.Is(err, broker.ErrSlowSubscriber) {
		t.Fatalf("Err = %v, want ErrSlowSubscriber", err)
	}
	sameEvents(t, "before the drop", got, all[:len(got)])
	// Resuming from the last event it did get loses nothing.
	pos := broker.EventID{}
	if len(got) > 0 {
		pos = parseID(t, got[len(got)-1])
	}
	again := subscribe(t, b, id, pos)
	sameEvents(t, "resumed", again.History, all[len(got):])
	// A reader that keeps up is not dropped.
	for _, s := range happyPath[4:] {
		ev := publish(t, b, id, s)
		sameEvents(t, "kept up", collect(t, again, 1), []broker.Event{ev})
	}
	if err := expectEnd(t, again); err != nil {
		t.Fatalf("Err = %v after the terminal event", err)
	}
}

func testCycles(t *testing.T, open Open) {
	b := openBroker(t, open, Options())
	id := uuid.New()
	publish(t, b, id, order.Created)
	// A broker may open a connection per node on first use (one per master
	// of a Redis Cluster): orders all over the key space open them first.
	for range 64 {
		sub, err := b.Subscribe(context.Background(), uuid.New(), broker.EventID{})
		if err != nil {
			t.Fatal(err)
		}
		sub.Close()
	}
	settle()
	before := runtime.NumGoroutine()
	for i := range 2000 {
		target := id
		if i%2 == 1 {
			target = uuid.New() // an order that never gets an event
		}
		sub, err := b.Subscribe(context.Background(), target, broker.EventID{})
		if err != nil {
			t.Fatal(err)
		}
		sub.Close()
		sub.Close() // twice is harmless
	}
	// Subscribers that closed must not receive, block or panic on later events.
	publish(t, b, id, order.Packed)
	settle()
	if after := runtime.NumGoroutine(); after > before+2 {
		t.Fatalf("goroutines grew from %d to %d over subscribe/close cycles", before, after)
	}
}

// settle gives goroutines that are finishing a moment to go.
func settle() {
	for range 10 {
		runtime.Gosched()
		time.Sleep(10 * time.Millisecond)
	}
}

func testRetention(t *testing.T, open Open) {
	const retention = 300 * time.Millisecond
	opts := Options()
	opts.Retention = retention
	b := openBroker(t, open, opts)
	finished, ongoing := uuid.New(), uuid.New()
	publish(t, b, finished, order.Created)
	publish(t, b, finished, order.Cancelled)
	publish(t, b, ongoing, order.Created)
	if _, err := b.Latest(context.Background(), finished); err != nil {
		t.Fatalf("finished order is gone at once: %v", err)
	}
	deadline := time.Now().Add(wait)
	for {
		_, err := b.Latest(context.Background(), finished)
		if errors.Is(err, broker.ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("finished order still readable %v after its retention of %v: %v", wait, retention, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	sub := subscribe(t, b, finished, broker.EventID{})
	if len(sub.History) != 0 || sub.Finished {
		t.Fatalf("forgotten order: history %v, finished %v", statuses(sub.History), sub.Finished)
	}
	if _, err := b.Latest(context.Background(), ongoing); err != nil {
		t.Fatalf("an unfinished order expired: %v", err)
	}
}

func testClose(t *testing.T, open Open) {
	b := open(t, Options())
	id := uuid.New()
	publish(t, b, id, order.Created)
	sub, err := b.Subscribe(context.Background(), id, broker.EventID{})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := expectEnd(t, sub); err == nil {
		t.Fatal("a subscription cut by Close reports no error: its client would think the order finished")
	}
	sub.Close()
	if _, err := b.Publish(context.Background(), id, broker.PublishRequest{Status: order.Packed}); err == nil {
		t.Fatal("publish after Close succeeded")
	}
	if err := b.Ping(context.Background()); err == nil {
		t.Fatal("ping after Close succeeded")
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
}

func publishKeyed(t *testing.T, b broker.Broker, id uuid.UUID, s order.Status, key string) broker.Event {
	t.Helper()
	ev, err := b.Publish(context.Background(), id, broker.PublishRequest{Status: s, IdempotencyKey: key})
	if err != nil {
		t.Fatalf("publish %v with key %q: %v", s, key, err)
	}
	return ev
}

// testIdempotentRetries: a retried request answers its first event, however
// far the order moved since, and appends nothing.
func testIdempotentRetries(t *testing.T, open Open) {
	b := openBroker(t, open, Options())
	id := uuid.New()
	sub := subscribe(t, b, id, broker.EventID{})
	created := publishKeyed(t, b, id, order.Created, "create-1")
	sameEvents(t, "retry at once", []broker.Event{publishKeyed(t, b, id, order.Created, "create-1")}, []broker.Event{created})
	packed := publishKeyed(t, b, id, order.Packed, "pack-1")
	sameEvents(t, "retry after the order moved on", []broker.Event{publishKeyed(t, b, id, order.Created, "create-1")}, []broker.Event{created})
	// The same key on another order is another request.
	other := uuid.New()
	publishKeyed(t, b, other, order.Created, "create-1")
	delivered := publishKeyed(t, b, id, order.Delivered, "deliver-1")
	for _, want := range []broker.Event{created, packed, delivered} {
		got := publishKeyed(t, b, id, want.Update.Status, map[order.Status]string{
			order.Created: "create-1", order.Packed: "pack-1", order.Delivered: "deliver-1",
		}[want.Update.Status])
		sameEvents(t, "retry after the order finished", []broker.Event{got}, []broker.Event{want})
	}
	// Without a key, a repeated status is a refused transition.
	var te *order.TransitionError
	if _, err := b.Publish(context.Background(), id, broker.PublishRequest{Status: order.Delivered}); !errors.As(err, &te) {
		t.Fatalf("repeat without a key: %v, want a TransitionError", err)
	}
	// Each event went out once.
	sameEvents(t, "live", collect(t, sub, 3), []broker.Event{created, packed, delivered})
	if err := expectEnd(t, sub); err != nil {
		t.Fatalf("Err = %v after the terminal event", err)
	}
	again := subscribe(t, b, id, broker.EventID{})
	sameEvents(t, "history", again.History, []broker.Event{created, packed, delivered})
}

func testIdempotencyKeyConflict(t *testing.T, open Open) {
	b := openBroker(t, open, Options())
	id := uuid.New()
	first := publishKeyed(t, b, id, order.Created, "k")
	_, err := b.Publish(context.Background(), id, broker.PublishRequest{Status: order.Packed, IdempotencyKey: "k"})
	var ke *broker.IdempotencyKeyError
	if !errors.As(err, &ke) || ke.Key != "k" || ke.Accepted != order.Created || ke.Requested != order.Packed {
		t.Fatalf("same key, other status: %v, want an IdempotencyKeyError naming Created and Packed", err)
	}
	latest, err := b.Latest(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	sameEvents(t, "latest after the conflict", []broker.Event{latest}, []broker.Event{first})
}

// testConcurrentRetries: copies of one request racing each other make one
// event, and every copy answers it.
func testConcurrentRetries(t *testing.T, open Open) {
	b := openBroker(t, open, Options())
	const copies = 16
	for _, s := range happyPath[:3] {
		id := uuid.New()
		if s != happyPath[0] {
			publish(t, b, id, order.Created)
		}
		results := make([]broker.Event, copies)
		var wg sync.WaitGroup
		for i := range copies {
			wg.Go(func() {
				ev, err := b.Publish(context.Background(), id, broker.PublishRequest{Status: s, IdempotencyKey: "retry"})
				if err != nil {
					t.Errorf("copy %d: %v", i, err)
				}
				results[i] = ev
			})
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		for i := range results {
			sameEvents(t, "copy", results[i:i+1], results[:1])
		}
		sub := subscribe(t, b, id, broker.EventID{})
		if n := len(sub.History); s == happyPath[0] && n != 1 || s != happyPath[0] && n != 2 {
			t.Fatalf("%d copies of one request made history %v", copies, statuses(sub.History))
		}
	}
}

func testMalformedKey(t *testing.T, open Open) {
	b := openBroker(t, open, Options())
	id := uuid.New()
	for _, key := range []string{"with space", "new\nline", string(make([]byte, broker.MaxIdempotencyKeyLen+1)), "\x7f", "é"} {
		if _, err := b.Publish(context.Background(), id, broker.PublishRequest{Status: order.Created, IdempotencyKey: key}); !errors.Is(err, broker.ErrBadIdempotencyKey) {
			t.Errorf("key %q: %v, want ErrBadIdempotencyKey", key, err)
		}
	}
	if _, err := b.Latest(context.Background(), id); !errors.Is(err, broker.ErrNotFound) {
		t.Fatalf("a refused key made the order exist: %v", err)
	}
}

// recorder is a Subscriber that keeps what it is handed; the hub calls it
// under its lock, the test reads it under mu once it has ended.
type recorder struct {
	mu    sync.Mutex
	got   []broker.Event
	ended chan error // one value: End's err
}

func (r *recorder) Deliver(ev broker.Event) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, ev)
	return true
}

func (r *recorder) End(err error) { r.ended <- err }

func (r *recorder) events() []broker.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]broker.Event(nil), r.got...)
}

// testHandover hands subscriptions over to another Subscriber while
// publishers race them, on many orders at once: every subscriber sees each
// order's events once and in order, across history, the channel, the
// buffered events Handover passes on and what the new Subscriber gets.
func testHandover(t *testing.T, open Open) {
	b := openBroker(t, open, Options())
	const orders, subscribers = 8, 25
	var wg sync.WaitGroup
	var handedOver atomic.Int64 // live handovers, not ErrNotLive
	defer func() {
		if handedOver.Load() == 0 {
			t.Error("no subscription was live when handed over: the test proved nothing")
		}
	}()
	for range orders {
		id := uuid.New()
		start := make(chan struct{})
		all := make([]broker.Event, 0, len(happyPath))
		results := make([][]broker.Event, subscribers)
		var subs sync.WaitGroup
		for i := range subscribers {
			subs.Go(func() {
				<-start
				sub, err := b.Subscribe(context.Background(), id, broker.EventID{})
				if err != nil {
					t.Errorf("subscribe: %v", err)
					return
				}
				defer sub.Close()
				got := append([]broker.Event(nil), sub.History...)
				if sub.Finished {
					results[i] = got
					return
				}
				// Read some from the channel first (i%3 of them), so the
				// handover comes at every point of the order's life.
				if n := min(i%3, len(happyPath)-len(got)); n > 0 {
					got = append(got, collect(t, sub, n)...)
				}
				rec := &recorder{ended: make(chan error, 1)}
				err = sub.Handover(func(buffered []broker.Event) broker.Subscriber {
					got = append(got, buffered...)
					return rec
				})
				if errors.Is(err, broker.ErrNotLive) {
					// Ended first (the order finished): the channel has the rest.
					results[i] = append(got, collect(t, sub, len(happyPath))...)
					return
				}
				if err != nil {
					t.Errorf("handover: %v", err)
					return
				}
				handedOver.Add(1)
				select {
				case err := <-rec.ended:
					if err != nil {
						t.Errorf("handed-over subscriber ended with %v after the order finished", err)
					}
				case <-time.After(wait):
					t.Errorf("handed-over subscriber not ended after the order finished")
				}
				results[i] = append(got, rec.events()...)
			})
		}
		wg.Go(func() {
			close(start)
			for _, s := range happyPath {
				all = append(all, publish(t, b, id, s))
				runtime.Gosched()
			}
			subs.Wait()
			for _, got := range results {
				sameEvents(t, "subscriber handed over", got, all)
			}
		})
	}
	wg.Wait()
}

// testHandoverAfterEnd: a subscription already ended refuses the handover
// and keeps its events; Close after a handover ends the new Subscriber once.
func testHandoverAfterEnd(t *testing.T, open Open) {
	b := openBroker(t, open, Options())
	id := uuid.New()
	publish(t, b, id, order.Created)
	sub := subscribe(t, b, id, broker.EventID{})
	last := publish(t, b, id, order.Cancelled)
	sameEvents(t, "before the end", collect(t, sub, 1), []broker.Event{last})
	if err := expectEnd(t, sub); err != nil {
		t.Fatalf("Err = %v after the terminal event", err)
	}
	called := false
	err := sub.Handover(func([]broker.Event) broker.Subscriber { called = true; return nil })
	if !errors.Is(err, broker.ErrNotLive) || called {
		t.Fatalf("Handover of an ended subscription = %v (next called: %v), want ErrNotLive without calling next", err, called)
	}

	other := uuid.New()
	publish(t, b, other, order.Created)
	live := subscribe(t, b, other, broker.EventID{})
	rec := &recorder{ended: make(chan error, 2)}
	if err := live.Handover(func(buffered []broker.Event) broker.Subscriber {
		if len(buffered) != 0 {
			t.Errorf("buffered = %v, want none", statuses(buffered))
		}
		return rec
	}); err != nil {
		t.Fatalf("handover: %v", err)
	}
	ev := publish(t, b, other, order.PaymentConfirmed)
	live.Close()
	live.Close()
	if err := <-rec.ended; err != nil {
		t.Fatalf("End(%v) on Close, want nil", err)
	}
	sameEvents(t, "handed over", rec.events(), []broker.Event{ev})
	if len(rec.ended) != 0 {
		t.Fatal("End called twice")
	}
}
