package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/orderstream/orderstream/shared/broker/redistest"
	"github.com/orderstream/orderstream/shared/order"
)

// The conformance suite runs against Redis in redis_conformance_test.go;
// these tests cover what only a shared broker has: several instances, a
// Redis that goes away and comes back, credentials, keys and expiry.

var happy = []order.Status{order.Created, order.PaymentConfirmed, order.Packed, order.Shipped, order.OutForDelivery, order.Delivered}

// eventually bounds waits for things that happen over the network.
const eventually = 10 * time.Second

func newTestRedis(t *testing.T, srv *redistest.Server, cfg RedisConfig) *Redis {
	t.Helper()
	if cfg.URL == "" {
		cfg.URL = srv.URL()
	}
	if cfg.KeyPrefix == "" {
		cfg.KeyPrefix = "test:" + t.Name() + ":"
	}
	cfg.Options = withTestOptions(cfg.Options)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	r, err := NewRedis(context.Background(), cfg)
	if err != nil {
		t.Fatalf("NewRedis: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// rawClient talks to the test server directly, to look behind the broker.
func rawClient(t *testing.T, srv *redistest.Server) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	return c
}

func mustPublish(t *testing.T, b Broker, id uuid.UUID, s order.Status) Event {
	t.Helper()
	ev, err := b.Publish(context.Background(), id, PublishRequest{Status: s})
	if err != nil {
		t.Fatalf("publish %v: %v", s, err)
	}
	return ev
}

// publishRetrying publishes through an outage's end: ErrUnavailable is
// retried, anything else is fatal.
func publishRetrying(t *testing.T, b Broker, id uuid.UUID, s order.Status) Event {
	t.Helper()
	deadline := time.Now().Add(eventually)
	for {
		ev, err := b.Publish(context.Background(), id, PublishRequest{Status: s})
		if err == nil {
			return ev
		}
		if !errors.Is(err, ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("publish %v: %v", s, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func mustSubscribe(t *testing.T, b Broker, id uuid.UUID, after EventID) *Subscription {
	t.Helper()
	sub, err := b.Subscribe(context.Background(), id, after)
	if err != nil {
		t.Fatalf("subscribe after %v: %v", after, err)
	}
	t.Cleanup(sub.Close)
	return sub
}

// receive reads n live events, failing if the subscription ends first.
func receive(t *testing.T, sub *Subscription, n int) []Event {
	t.Helper()
	var got []Event
	timeout := time.After(eventually)
	for len(got) < n {
		select {
		case ev, ok := <-sub.Events():
			if !ok {
				t.Fatalf("subscription ended (%v) after %d of %d events", sub.Err(), len(got), n)
			}
			got = append(got, ev)
		case <-timeout:
			t.Fatalf("timed out after %d of %d events", len(got), n)
		}
	}
	return got
}

func waitEnd(t *testing.T, sub *Subscription) error {
	t.Helper()
	select {
	case ev, ok := <-sub.Events():
		if ok {
			t.Fatalf("want the end, got event %s %v", ev.ID, ev.Update.Status)
		}
		return sub.Err()
	case <-time.After(eventually):
		t.Fatal("subscription did not end")
		return nil
	}
}

func idOf(t testing.TB, ev Event) EventID {
	t.Helper()
	id, err := ParseEventID(ev.ID)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func same(t testing.TB, what string, got, want []Event) {
	t.Helper()
	if err := diffEvents(got, want); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func diffEvents(got, want []Event) error {
	if len(got) != len(want) {
		return fmt.Errorf("got %d events %v, want %d %v", len(got), statusesOf(got), len(want), statusesOf(want))
	}
	for i := range got {
		if got[i].ID != want[i].ID || got[i].Data != want[i].Data || got[i].Update != want[i].Update {
			return fmt.Errorf("event %d is %+v, want %+v", i, got[i], want[i])
		}
	}
	return nil
}

func statusesOf(evs []Event) []order.Status {
	out := make([]order.Status, len(evs))
	for i, ev := range evs {
		out[i] = ev.Update.Status
	}
	return out
}

// TestRedisScriptMatchesCheckTransition puts every current status (none,
// the seven, and one Redis could only hold by corruption) in an order's
// latest-event hash and asks the script for every requested status: its
// verdict must be order.CheckTransition's.
func TestRedisScriptMatchesCheckTransition(t *testing.T) {
	srv := redistest.Start(t)
	r := newTestRedis(t, srv, RedisConfig{})
	ctx := context.Background()
	run := func(id uuid.UUID, to string) ([]any, error) { return r.runPublish(ctx, id, to, "") }
	for _, from := range append([]order.Status{0}, order.Statuses()...) {
		for _, to := range order.Statuses() {
			id := uuid.New()
			if from != 0 {
				r.client.HSet(ctx, r.latestKey(id), "id", "1-0", "status", from.String(), "ts", "1")
			}
			res, err := run(id, to.String())
			if err != nil {
				t.Fatalf("%v -> %v: %v", from, to, err)
			}
			want := order.CheckTransition(from, to)
			accepted := res[0] == int64(1)
			if accepted != (want == nil) {
				t.Errorf("%v -> %v: script accepted=%v, CheckTransition says %v", from, to, accepted, want)
			}
			if !accepted && res[1] != from.String() {
				t.Errorf("%v -> %v: refusal names %v", from, to, res[1])
			}
		}
	}
	// What the Go side never sends and Redis should never hold is an error,
	// not a verdict.
	if _, err := run(uuid.New(), "Lost"); err == nil || !strings.Contains(err.Error(), "unknown status") {
		t.Errorf("unknown requested status: %v", err)
	}
	id := uuid.New()
	r.client.HSet(ctx, r.latestKey(id), "id", "1-0", "status", "Lost", "ts", "1")
	if _, err := run(id, "Cancelled"); err == nil || !strings.Contains(err.Error(), "stored status") {
		t.Errorf("corrupt stored status: %v", err)
	}
	if _, err := r.Publish(ctx, uuid.New(), PublishRequest{Status: order.Status(42)}); !errors.Is(err, order.ErrUnknownStatus) {
		t.Errorf("Publish of an invalid status: %v", err)
	}
}

func TestRedisTwoInstances(t *testing.T) {
	srv := redistest.Start(t)
	cfg := RedisConfig{KeyPrefix: "shared:"}
	a, b := newTestRedis(t, srv, cfg), newTestRedis(t, srv, cfg)
	id := uuid.New()

	onA := mustSubscribe(t, a, id, EventID{})
	var all []Event
	for _, s := range happy {
		all = append(all, mustPublish(t, b, id, s))
	}
	same(t, "published on B, received on A", receive(t, onA, len(all)), all)
	if err := waitEnd(t, onA); err != nil {
		t.Fatalf("A's subscription ended with %v", err)
	}
	latest, err := a.Latest(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	same(t, "latest on A", []Event{latest}, all[len(all)-1:])

	// An id A delivered is a position on B.
	for i := range all {
		onB := mustSubscribe(t, b, id, idOf(t, all[i]))
		if !onB.Finished {
			t.Fatal("finished order not Finished on B")
		}
		same(t, "resumed on B after "+all[i].ID, onB.History, all[i+1:])
	}

	// Midway: resume on B with what A got, while the order goes on.
	id = uuid.New()
	all = all[:0]
	onA = mustSubscribe(t, a, id, EventID{})
	for _, s := range happy[:3] {
		all = append(all, mustPublish(t, a, id, s))
	}
	got := receive(t, onA, 2)
	onB := mustSubscribe(t, b, id, idOf(t, got[1]))
	same(t, "history on B", onB.History, all[2:3])
	for _, s := range happy[3:] {
		all = append(all, mustPublish(t, a, id, s))
	}
	same(t, "live on B", receive(t, onB, 3), all[3:])
	same(t, "live on A", append(got, receive(t, onA, 4)...), all)
}

func TestRedisRacingInstances(t *testing.T) {
	srv := redistest.Start(t)
	cfg := RedisConfig{KeyPrefix: "race:"}
	brokers := []*Redis{newTestRedis(t, srv, cfg), newTestRedis(t, srv, cfg), newTestRedis(t, srv, cfg)}
	// In each round, no candidate may follow another, so exactly one wins.
	rounds := [][]order.Status{{order.Created}, {order.Packed}, {order.Shipped, order.Cancelled}, {order.OutForDelivery}, {order.Delivered, order.Cancelled}}
	for range 20 {
		id := uuid.New()
		var winners []Event
		for _, candidates := range rounds {
			var wg sync.WaitGroup
			var mu sync.Mutex
			var won []Event
			for i := range 12 {
				b, want := brokers[i%len(brokers)], candidates[i%len(candidates)]
				wg.Go(func() {
					ev, err := b.Publish(context.Background(), id, PublishRequest{Status: want})
					var te *order.TransitionError
					mu.Lock()
					defer mu.Unlock()
					switch {
					case err == nil:
						won = append(won, ev)
					case !errors.As(err, &te):
						t.Errorf("publish %v: %v", want, err)
					}
				})
			}
			wg.Wait()
			if len(won) != 1 {
				t.Fatalf("round %v: %d winners %v", candidates, len(won), statusesOf(won))
			}
			winners = append(winners, won[0])
			if won[0].Update.Status.Terminal() {
				break
			}
		}
		for i := 1; i < len(winners); i++ {
			if idOf(t, winners[i]).Compare(idOf(t, winners[i-1])) <= 0 {
				t.Fatalf("ids not increasing across instances: %s then %s", winners[i-1].ID, winners[i].ID)
			}
			if winners[i].Update.Timestamp.Before(winners[i-1].Update.Timestamp) {
				t.Fatalf("timestamp went back across instances: %v then %v", winners[i-1].Update.Timestamp, winners[i].Update.Timestamp)
			}
		}
		// Every instance sees the one history.
		for _, b := range brokers {
			sub := mustSubscribe(t, b, id, EventID{})
			same(t, "history", sub.History, winners)
		}
	}
}

// TestRedisSubscribeRacesRemotePublishers subscribes on two instances at
// random moments and from random positions while a third publishes: every
// subscriber must get exactly the events after its position, whether they
// came as history or live.
func TestRedisSubscribeRacesRemotePublishers(t *testing.T) {
	srv := redistest.Start(t)
	// A generous timeout: subscribers wait for the feed to confirm their
	// channel, which on a loaded machine can take longer than the default 2s;
	// this test is about order and gaps, not speed.
	cfg := RedisConfig{KeyPrefix: "subrace:", Timeout: 10 * time.Second}
	pub := newTestRedis(t, srv, cfg)
	subscribers := []*Redis{newTestRedis(t, srv, cfg), newTestRedis(t, srv, cfg)}
	const orders, perOrder = 40, 12
	var wg sync.WaitGroup
	var mixed, historyOnly, liveOnly atomic.Int64 // where subscriptions landed
	for range orders {
		id := uuid.New()
		var mu sync.Mutex
		var published []Event // grows as the publisher goes
		done := make(chan struct{})
		wg.Go(func() {
			defer close(done)
			for _, s := range happy {
				ev, err := pub.Publish(context.Background(), id, PublishRequest{Status: s})
				if err != nil {
					t.Errorf("publish: %v", err)
					return
				}
				mu.Lock()
				published = append(published, ev)
				mu.Unlock()
				time.Sleep(time.Duration(rand.IntN(1500)) * time.Microsecond)
			}
		})
		for i := range perOrder {
			b := subscribers[i%len(subscribers)]
			wg.Go(func() {
				time.Sleep(time.Duration(rand.IntN(8000)) * time.Microsecond)
				mu.Lock()
				var after EventID
				skip := 0
				if n := len(published); n > 0 && i%3 != 0 {
					skip = rand.IntN(n + 1)
					if skip > 0 {
						after, _ = ParseEventID(published[skip-1].ID)
					}
				}
				mu.Unlock()
				sub, err := b.Subscribe(context.Background(), id, after)
				if err != nil {
					t.Errorf("subscribe: %v", err)
					return
				}
				defer sub.Close()
				got := append([]Event(nil), sub.History...)
				fromHistory := len(got)
				timeout := time.After(eventually)
			read:
				for !sub.Finished {
					select {
					case ev, ok := <-sub.Events():
						if !ok {
							break read
						}
						got = append(got, ev)
					case <-timeout:
						t.Errorf("subscriber after %v: timed out with %v", after, statusesOf(got))
						return
					}
				}
				if sub.Err() != nil {
					t.Errorf("subscriber after %v ended with %v", after, sub.Err())
				}
				<-done
				mu.Lock()
				want := published[skip:]
				mu.Unlock()
				if err := diffEvents(got, want); err != nil {
					t.Errorf("subscriber after %v: %v", after, err)
				}
				switch {
				case fromHistory > 0 && fromHistory < len(got):
					mixed.Add(1)
				case fromHistory > 0:
					historyOnly.Add(1)
				default:
					liveOnly.Add(1)
				}
			})
		}
	}
	wg.Wait()
	t.Logf("subscriptions: %d history then live, %d history only, %d live only", mixed.Load(), historyOnly.Load(), liveOnly.Load())
	if mixed.Load() == 0 {
		t.Error("no subscription straddled the history/live boundary")
	}
}

// TestRedisFeedReconnectCatchesUp cuts the instances' pub/sub connections
// (CLIENT KILL) while events are published: subscriptions stay open and get
// each event exactly once, read back from the stream.
func TestRedisFeedReconnectCatchesUp(t *testing.T) {
	srv := redistest.Start(t)
	cfg := RedisConfig{KeyPrefix: "cut:"}
	a, b := newTestRedis(t, srv, cfg), newTestRedis(t, srv, cfg)
	raw := rawClient(t, srv)
	ctx := context.Background()
	for range 10 {
		id := uuid.New()
		all := []Event{mustPublish(t, b, id, order.Created)}
		sub := mustSubscribe(t, a, id, EventID{})
		same(t, "history", sub.History, all)
		for _, s := range happy[1:] {
			if err := raw.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
				t.Fatal(err)
			}
			all = append(all, mustPublish(t, b, id, s))
		}
		same(t, "across cut connections", receive(t, sub, len(happy)-1), all[1:])
		if err := waitEnd(t, sub); err != nil {
			t.Fatalf("ended with %v", err)
		}
	}
	// Most of those events were published while A was reconnecting.
	if n := a.recovered.Load(); n == 0 {
		t.Fatal("no event was read back from the stream: the catch-up went untested")
	} else {
		t.Logf("%d of 50 events reached A from the stream after a reconnection", n)
	}
}

// TestRedisOnePubSubConnection checks that subscribers share one connection.
func TestRedisOnePubSubConnection(t *testing.T) {
	srv := redistest.Start(t)
	r := newTestRedis(t, srv, RedisConfig{})
	for range 200 {
		mustSubscribe(t, r, uuid.New(), EventID{})
	}
	list, err := rawClient(t, srv).ClientList(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	pubsub := 0
	for line := range strings.SplitSeq(strings.TrimSpace(list), "\n") {
		if !strings.Contains(" "+line+" ", " sub=0 ") {
			pubsub++ // subscribed to at least one channel
		}
	}
	if pubsub != 1 {
		t.Fatalf("%d connections subscribed to channels for 200 subscribers, want 1:\n%s", pubsub, list)
	}
	if orders, subs := r.stats(); orders != 200 || subs != 200 {
		t.Fatalf("stats: %d orders, %d subscribers", orders, subs)
	}
}

// TestRedisRestartLosesNothing kills redis-server (SIGKILL, as a crash)
// mid-order and starts it again on its append-only file: every event
// acknowledged before is still there, and a subscription open across the
// restart gets every later event exactly once.
func TestRedisRestartLosesNothing(t *testing.T) {
	srv := redistest.Start(t, redistest.AppendOnly("always"))
	cfg := RedisConfig{KeyPrefix: "restart:"}
	a, b := newTestRedis(t, srv, cfg), newTestRedis(t, srv, cfg)
	ctx := context.Background()
	id := uuid.New()
	var all []Event
	for _, s := range happy[:2] {
		all = append(all, mustPublish(t, b, id, s))
	}
	open := mustSubscribe(t, a, id, EventID{})
	same(t, "history", open.History, all)

	for i, s := range happy[2:] {
		if i%2 == 0 {
			srv.Kill()
			srv.Restart()
			// Still there after the crash: the latest event and the stream.
			var latest Event
			var err error
			deadline := time.Now().Add(eventually)
			for latest, err = b.Latest(ctx, id); errors.Is(err, ErrUnavailable) && time.Now().Before(deadline); latest, err = b.Latest(ctx, id) {
				time.Sleep(20 * time.Millisecond)
			}
			if err != nil {
				t.Fatalf("latest after restart: %v", err)
			}
			same(t, "latest after restart", []Event{latest}, all[len(all)-1:])
			hist, err := b.history(ctx, id, EventID{})
			if err != nil {
				t.Fatal(err)
			}
			same(t, "stream after restart", hist, all)
		}
		// Published while A's feed is probably still reconnecting: A gets it
		// from the stream.
		all = append(all, publishRetrying(t, b, id, s))
	}
	same(t, "open across restarts", receive(t, open, len(all)-2), all[2:])
	if err := waitEnd(t, open); err != nil {
		t.Fatalf("ended with %v", err)
	}
	t.Logf("%d events reached A from the stream after a reconnection", a.recovered.Load())
}

// TestRedisUnavailable kills Redis under an instance: calls fail promptly
// with ErrUnavailable, Ping within the contract's 3 s; once Redis is back,
// Ping recovers and the open subscription goes on.
func TestRedisUnavailable(t *testing.T) {
	srv := redistest.Start(t, redistest.AppendOnly("always"))
	r := newTestRedis(t, srv, RedisConfig{})
	ctx := context.Background()
	id := uuid.New()
	first := mustPublish(t, r, id, order.Created)
	open := mustSubscribe(t, r, id, EventID{})
	same(t, "history", open.History, []Event{first})

	srv.Kill()
	killed := time.Now()
	prompt := func(what string, err error, start time.Time) {
		t.Helper()
		if !errors.Is(err, ErrUnavailable) {
			t.Errorf("%s while Redis is down: %v, want ErrUnavailable", what, err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("%s took %v to fail", what, d)
		}
	}
	for {
		err := r.Ping(ctx)
		if err != nil {
			prompt("Ping", err, killed)
			break
		}
		if time.Since(killed) > 3*time.Second {
			t.Fatal("Ping still succeeds 3 s after Redis died")
		}
		time.Sleep(50 * time.Millisecond)
	}
	start := time.Now()
	_, err := r.Publish(ctx, id, PublishRequest{Status: order.Packed})
	prompt("Publish", err, start)
	start = time.Now()
	_, err = r.Latest(ctx, id)
	prompt("Latest", err, start)
	start = time.Now()
	_, err = r.Subscribe(ctx, uuid.New(), EventID{})
	prompt("Subscribe", err, start)
	start = time.Now()
	_, err = r.Subscribe(ctx, id, EventID{}) // an order with local subscribers
	prompt("Subscribe to a watched order", err, start)
	select {
	case ev, ok := <-open.Events():
		t.Fatalf("open subscription during the outage: %v %v (err %v)", ev.Update.Status, ok, open.Err())
	default:
	}

	srv.Restart()
	deadline := time.Now().Add(eventually)
	for r.Ping(ctx) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("Ping has not recovered %v after Redis came back: %v", eventually, r.Ping(ctx))
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("Ping recovered %v after the restart", time.Since(deadline.Add(-eventually)))
	next := publishRetrying(t, r, id, order.Packed)
	same(t, "after the outage", receive(t, open, 1), []Event{next})
	sub := mustSubscribe(t, r, uuid.New(), EventID{})
	if len(sub.History) != 0 {
		t.Fatal("new order has history")
	}
}

// TestRedisHungServer pauses redis-server (SIGSTOP): connections stay open
// and nothing answers, as across a partition. Calls still fail within 3 s,
// and once it resumes the open subscription gets exactly what the stream has.
func TestRedisHungServer(t *testing.T) {
	srv := redistest.Start(t)
	r := newTestRedis(t, srv, RedisConfig{})
	ctx := context.Background()
	id := uuid.New()
	first := mustPublish(t, r, id, order.Created)
	open := mustSubscribe(t, r, id, EventID{})

	srv.Pause()
	paused := time.Now()
	for r.Ping(ctx) == nil {
		if time.Since(paused) > 3*time.Second {
			t.Fatal("Ping still succeeds 3 s after Redis hung")
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("Ping failed %v after Redis hung", time.Since(paused))
	start := time.Now()
	// Its outcome is unknown to the caller: Redis may run it on resuming.
	if _, err := r.Publish(ctx, id, PublishRequest{Status: order.Packed}); !errors.Is(err, ErrUnavailable) || time.Since(start) > 3*time.Second {
		t.Errorf("Publish to a hung Redis: %v after %v", err, time.Since(start))
	}
	deadline := time.Now().Add(eventually)
	for r.disconnects.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the feed did not notice its connection hung")
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("feed gave up on its connection %v after Redis hung", time.Since(paused))

	srv.Resume()
	last := publishRetrying(t, r, id, order.Delivered)
	var got []Event
	for ev := range open.Events() {
		got = append(got, ev)
	}
	if open.Err() != nil {
		t.Fatalf("ended with %v", open.Err())
	}
	stream, err := r.history(ctx, id, idOf(t, first))
	if err != nil {
		t.Fatal(err)
	}
	same(t, "after the hang", got, stream)
	same(t, "last", got[len(got)-1:], []Event{last})
}

// TestRedisIdleFeedStaysUp: an idle connection is pinged, not dropped.
func TestRedisIdleFeedStaysUp(t *testing.T) {
	srv := redistest.Start(t)
	// A health check every 500ms; the silence outlasts the read timeout
	// twice. Shorter timeouts made a ping's answer late on a loaded machine.
	cfg := RedisConfig{KeyPrefix: "idle:", Timeout: time.Second}
	a, b := newTestRedis(t, srv, cfg), newTestRedis(t, srv, cfg)
	id := uuid.New()
	sub := mustSubscribe(t, a, id, EventID{})
	time.Sleep(2500 * time.Millisecond)
	ev := mustPublish(t, b, id, order.Created)
	same(t, "after 2.5s of silence", receive(t, sub, 1), []Event{ev})
	if n := a.disconnects.Load(); n != 0 {
		t.Fatalf("an idle feed reconnected %d times", n)
	}
}

// TestRedisStartsWhileRedisIsDown: a server (or a Lambda) comes up without
// Redis, answers "unavailable", and serves once Redis is there.
func TestRedisStartsWhileRedisIsDown(t *testing.T) {
	srv := redistest.Start(t)
	srv.Stop()
	ctx := context.Background()
	start := time.Now()
	r := newTestRedis(t, srv, RedisConfig{})
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("NewRedis took %v with Redis down", d)
	}
	if err := r.Ping(ctx); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Ping with Redis down: %v", err)
	}
	id := uuid.New()
	if _, err := r.Publish(ctx, id, PublishRequest{Status: order.Created}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Publish with Redis down: %v", err)
	}
	if _, err := r.Subscribe(ctx, id, EventID{}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Subscribe with Redis down: %v", err)
	}
	srv.Restart()
	deadline := time.Now().Add(eventually)
	for r.Ping(ctx) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("Ping has not recovered: %v", r.Ping(ctx))
		}
		time.Sleep(50 * time.Millisecond)
	}
	sub := mustSubscribe(t, r, id, EventID{})
	ev := mustPublish(t, r, id, order.Created)
	same(t, "live", receive(t, sub, 1), []Event{ev})
}

func TestRedisPassword(t *testing.T) {
	srv := redistest.Start(t, redistest.Password("s3cr3t"))
	r := newTestRedis(t, srv, RedisConfig{})
	id := uuid.New()
	sub := mustSubscribe(t, r, id, EventID{})
	ev := mustPublish(t, r, id, order.Created)
	same(t, "live", receive(t, sub, 1), []Event{ev})

	for name, user := range map[string]*url.Userinfo{
		"wrong password": url.UserPassword("", "guess"),
		"no password":    nil,
	} {
		u, _ := url.Parse(srv.URL())
		u.User = user
		_, err := NewRedis(context.Background(), RedisConfig{URL: u.String(), KeyPrefix: "auth:", Options: testOptions()})
		if err == nil {
			t.Fatalf("%s: NewRedis succeeded", name)
		}
		if !strings.Contains(err.Error(), "credentials") || strings.Contains(err.Error(), "guess") {
			t.Errorf("%s: unclear error: %v", name, err)
		}
		t.Logf("%s: %v", name, err)
	}
	if _, err := NewRedis(context.Background(), RedisConfig{URL: "http://" + srv.Addr(), KeyPrefix: "auth:", Options: testOptions()}); err == nil {
		t.Error("an http:// URL was accepted")
	}
}

// TestRedisIdleExpiryOption: Options.IdleExpiry, the setting both brokers
// share, is how long an unfinished order's keys live.
func TestRedisIdleExpiryOption(t *testing.T) {
	srv := redistest.Start(t)
	const idle = 2 * time.Hour
	r := newTestRedis(t, srv, RedisConfig{Options: Options{Retention: time.Hour, IdleExpiry: idle}})
	mustPublish(t, r, uuid.New(), order.Created)
	raw := rawClient(t, srv)
	keys, err := raw.Keys(context.Background(), "*").Result()
	if err != nil || len(keys) == 0 {
		t.Fatalf("keys %v, %v", keys, err)
	}
	for _, k := range keys {
		ttl, err := raw.PTTL(context.Background(), k).Result()
		if err != nil {
			t.Fatal(err)
		}
		if ttl <= idle-time.Minute || ttl > idle {
			t.Errorf("key %q expires in %v, want %v", k, ttl, idle)
		}
	}
}

// TestRedisKeysAndExpiry checks that every key carries the prefix, that a
// finished order expires after the retention and an unfinished one lives on.
func TestRedisKeysAndExpiry(t *testing.T) {
	srv := redistest.Start(t)
	const retention = time.Hour
	r := newTestRedis(t, srv, RedisConfig{KeyPrefix: "tenant-a:", Options: Options{Retention: retention}})
	other := newTestRedis(t, srv, RedisConfig{KeyPrefix: "tenant-b:"})
	ctx := context.Background()
	finished, ongoing := uuid.New(), uuid.New()
	mustPublish(t, r, finished, order.Created)
	// A key stored by an earlier event takes the retention with the order's last.
	if _, err := r.Publish(ctx, finished, PublishRequest{Status: order.Delivered, IdempotencyKey: "done"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Publish(ctx, ongoing, PublishRequest{Status: order.Packed, IdempotencyKey: "pack"}); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Latest(ctx, ongoing); !errors.Is(err, ErrNotFound) {
		t.Fatalf("another prefix sees the order: %v", err)
	}
	raw := rawClient(t, srv)
	keys, err := raw.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 6 {
		t.Errorf("keys %v, want a stream, a latest hash and an idempotency hash per order", keys)
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, "tenant-a:") {
			t.Errorf("key %q lacks the prefix", k)
		}
		ttl, err := raw.PTTL(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		want := testOptions().IdleExpiry
		if strings.Contains(k, finished.String()) {
			want = retention
		}
		if ttl <= 0 || ttl > want || ttl < want-time.Minute {
			t.Errorf("key %q expires in %v, want %v", k, ttl, want)
		}
	}
	// Timestamps come from Redis's clock.
	now, err := raw.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	latest, _ := r.Latest(ctx, ongoing)
	if d := now.Sub(latest.Update.Timestamp); d < 0 || d > 5*time.Second {
		t.Errorf("timestamp %v is not Redis's time %v", latest.Update.Timestamp, now)
	}
}

// TestRedisLeavesNothingBehind: subscribe/close cycles and dropped
// subscribers leave no local entry and no subscribed channel.
func TestRedisLeavesNothingBehind(t *testing.T) {
	srv := redistest.Start(t)
	r := newTestRedis(t, srv, RedisConfig{Options: Options{SubscriberBuffer: 1}})
	ctx := context.Background()
	live := uuid.New()
	mustPublish(t, r, live, order.Created)
	for i := range 1000 {
		id := live
		if i%2 == 0 {
			id = uuid.New()
		}
		sub, err := r.Subscribe(ctx, id, EventID{})
		if err != nil {
			t.Fatal(err)
		}
		sub.Close()
	}
	stuck := mustSubscribe(t, r, live, EventID{})
	for _, s := range happy[1:4] {
		mustPublish(t, r, live, s)
	}
	// Delivery is asynchronous: wait for the drop before reading, or the
	// reader would keep up.
	deadline := time.Now().Add(eventually)
	for _, subs := r.stats(); subs > 0; _, subs = r.stats() {
		if time.Now().After(deadline) {
			t.Fatal("a subscriber that reads nothing was not dropped")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for range stuck.Events() { // what fitted its buffer
	}
	if err := stuck.Err(); !errors.Is(err, ErrSlowSubscriber) {
		t.Fatalf("stuck subscriber: %v", err)
	}
	if orders, subs := r.stats(); orders != 0 || subs != 0 {
		t.Fatalf("%d orders, %d subscribers left", orders, subs)
	}
	raw := rawClient(t, srv)
	deadline = time.Now().Add(eventually)
	for {
		chans, err := raw.PubSubChannels(ctx, "*").Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(chans) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("channels still subscribed: %v", chans)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRedisCloseLeavesNoGoroutines runs brokers through subscriptions and an
// outage, closes them, and counts goroutines.
func TestRedisCloseLeavesNoGoroutines(t *testing.T) {
	srv := redistest.Start(t, redistest.AppendOnly("everysec"))
	ctx := context.Background()
	time.Sleep(50 * time.Millisecond) // let earlier tests' goroutines finish
	before := settleGoroutines(runtime.NumGoroutine())
	var subs []*Subscription
	var brokers []*Redis
	for range 3 {
		r, err := NewRedis(ctx, RedisConfig{URL: srv.URL(), KeyPrefix: "leak:", Options: testOptions(), Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		brokers = append(brokers, r)
		for range 20 {
			id := uuid.New()
			sub, err := r.Subscribe(ctx, id, EventID{})
			if err != nil {
				t.Fatal(err)
			}
			subs = append(subs, sub)
			mustPublish(t, r, id, order.Created)
		}
	}
	srv.Kill()
	for _, r := range brokers {
		r.Ping(ctx)
		r.Publish(ctx, uuid.New(), PublishRequest{Status: order.Created})
	}
	srv.Restart()
	for _, r := range brokers {
		publishRetrying(t, r, uuid.New(), order.Created)
	}
	for _, r := range brokers {
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
	}
	for _, sub := range subs {
		if _, ok := <-sub.Events(); ok {
			continue // a live event before the end
		}
		if !errors.Is(sub.Err(), ErrClosed) {
			t.Errorf("subscription cut by Close: %v", sub.Err())
		}
		sub.Close()
	}
	if after := settleGoroutines(before); after > before {
		buf := make([]byte, 1<<20)
		t.Fatalf("goroutines grew from %d to %d:\n%s", before, after, buf[:runtime.Stack(buf, true)])
	}
}

// settleGoroutines waits (up to a few seconds: go-redis's dial prober sleeps
// a second between tries) for the goroutine count to come down to want.
func settleGoroutines(want int) int {
	deadline := time.Now().Add(5 * time.Second)
	for {
		runtime.GC()
		n := runtime.NumGoroutine()
		if n <= want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestParseLiveMessage(t *testing.T) {
	good := "1732456800123-1 1732456800100-0 Shipped 1732456800123456"
	m, err := parseLiveMessage(good)
	if err != nil || m.id != (EventID{1732456800123, 1}) || m.prev != (EventID{1732456800100, 0}) || m.status != order.Shipped || m.ts != 1732456800123456 {
		t.Fatalf("parse %q: %+v, %v", good, m, err)
	}
	for _, bad := range []string{"", "1-0 0-0 Shipped", "1-0 0-0 Lost 1", "x 0-0 Shipped 1", "1-0 0-0 Shipped 1.5", "1-0 0-0 Shipped 1 extra"} {
		if _, err := parseLiveMessage(bad); err == nil {
			t.Errorf("parse %q: no error", bad)
		}
	}
}

// go-redis logs every failed dial; the outage tests cause many on purpose.
func init() { redis.SetLogger(quietLogger{}) }

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}
