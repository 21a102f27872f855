package broker

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/orderstream/orderstream/shared/order"
)

// RedisConfig configures the broker that several instances share.
type RedisConfig struct {
	// URL is a redis:// or rediss:// (TLS) URL, as redis.ParseURL reads it,
	// with the password if any: redis://:secret@host:6379/0.
	URL string
	// KeyPrefix starts every key and channel the broker uses, so that
	// deployments can share one Redis (default "orderstream:").
	KeyPrefix string
	// Options are the knobs every broker honours.
	Options Options
	// Logger receives connection losses and recoveries (default slog.Default()).
	Logger *slog.Logger
	// Timeout bounds every round trip and every dial (default 2s), so that an
	// unreachable Redis is reported within a few seconds, and Ping fails
	// within the 3 s the contract allows /healthz.
	Timeout time.Duration
	// UnfinishedTTL is how long an order that never reaches a terminal
	// status is kept after its last event (default Options.IdleExpiry), so
	// that abandoned orders do not fill Redis. Finished orders are kept for
	// Options.Retention.
	UnfinishedTTL time.Duration
}

// DefaultKeyPrefix is RedisConfig.KeyPrefix's default.
const DefaultKeyPrefix = "orderstream:"

const (
	defaultRedisTimeout = 2 * time.Second
	// streamCap bounds a stream: an order has at most six events, so the cap
	// only guards against a bug or a hand-made key growing without bound.
	streamCap = 64
)

//go:embed redis_publish.lua
var publishLua string

var publishScript = redis.NewScript(publishLua)

// Redis is the broker that lets several instances share orders, on Redis 6.2
// or later or Valkey.
//
// Each order has a stream (its history; the stream ids are the event ids), a
// hash holding its latest event, and a pub/sub channel; all three are named
// KeyPrefix + "{<order id>}:…", the braces keeping them in one cluster slot.
// A Lua script checks the transition, stamps the time from Redis's clock,
// appends to the stream, updates the hash, sets the expiry and publishes the
// event, as one atomic step.
//
// Live delivery takes one pub/sub connection per instance, whatever the
// number of subscribers: it is subscribed to the channels of the orders that
// have local subscribers, and every event it receives is fanned out to them
// from a local copy of the order's history. The stream stays the source of
// truth: each live message names the event before it, so a missed message
// shows as a gap that is read back from the stream, and after a reconnection
// every local order is caught up from the stream. Subscriptions open during
// an outage stay open, receive nothing meanwhile and then every event they
// missed, exactly once, in order.
//
// Redis must not lose acknowledged events across its own restart: run it
// with "appendonly yes". With "appendfsync always" an event is on disk
// before Publish returns, so nothing acknowledged is ever lost, at the cost
// of an fsync per publish; "appendfsync everysec" (Redis's default with AOF)
// is much cheaper but may lose the last second of acknowledged events if the
// machine (not just the process) crashes. RDB snapshots alone ("save") lose
// everything since the last snapshot. A managed Redis with replication and
// failover may still lose the last writes on failover; see its documentation.
type Redis struct {
	client        *redis.Client
	addr          string
	opts          Options
	log           *slog.Logger
	prefix        string
	timeout       time.Duration
	unfinishedTTL time.Duration

	ctx    context.Context // canceled by Close: aborts background round trips
	cancel context.CancelFunc
	stop   chan struct{}
	closed atomic.Bool
	wg     sync.WaitGroup // the reader, the writer and every catch-up
	// recovered counts events that reached waiting subscribers from the
	// stream rather than live: the messages that a lost connection cost.
	recovered atomic.Int64
	// disconnects counts lost pub/sub connections.
	disconnects atomic.Int64

	mu     sync.Mutex
	orders map[string]*redisOrder // orders with local subscribers, by channel
	feed   feedState
	// feedErr is why the feed is down.
	feedErr error
	// ps is the pub/sub connection, nil while there is none.
	ps *redis.PubSub
	// pendingConfirms counts SUBSCRIBEs sent on ps per channel that Redis has
	// not confirmed yet: an order is subscribed once the last is confirmed.
	pendingConfirms map[string]int
	// psQueue holds SUBSCRIBE and UNSUBSCRIBE commands in the order the
	// local state changed; the writer sends them, so no lock is held over
	// the network and a channel's commands never overtake each other.
	psQueue []psCommand
	psWake  chan struct{}
}

// feedState is the state of the pub/sub connection.
type feedState uint8

const (
	feedConnecting feedState = iota // the first dial is under way
	feedUp
	feedDown // the last dial failed: subscribing fails at once
)

// NewRedis returns a broker on the Redis at cfg.URL. It does not fail when
// Redis is unreachable, so that a server (or a Lambda cold start) comes up
// anyway and answers /healthz with 503: the broker keeps dialling in the
// background, and until it gets through Publish, Latest, Subscribe and Ping
// answer errors wrapping ErrUnavailable. It does fail at once on a malformed
// URL or on credentials that Redis refuses, which no wait would cure.
//
// Close releases the broker.
func NewRedis(ctx context.Context, cfg RedisConfig) (*Redis, error) {
	opt, err := redis.ParseURL(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("redis broker: parse URL: %w", err)
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = defaultRedisTimeout
	}
	// Fail fast rather than queue: a caller learns of an outage within a
	// timeout and tells its client to retry.
	opt.DialTimeout = timeout
	opt.ReadTimeout = timeout
	opt.WriteTimeout = timeout
	opt.PoolTimeout = timeout
	opt.ContextTimeoutEnabled = true
	opt.DialerRetries = 1
	// No automatic retries: a publish whose reply was lost may have been
	// applied, and running it again would answer a conflict for an update
	// that was in fact accepted. The caller's client retries instead.
	opt.MaxRetries = -1
	// Redis and Valkey do not send maintenance notifications; don't ask on
	// every new connection.
	opt.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}

	prefix := cfg.KeyPrefix
	if prefix == "" {
		prefix = DefaultKeyPrefix
	}
	unfinished := cfg.UnfinishedTTL
	if unfinished <= 0 {
		unfinished = cfg.Options.withDefaults().IdleExpiry
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	logger = logger.With("broker", "redis", "addr", opt.Addr)

	client := redis.NewClient(opt)
	probeCtx, cancelProbe := context.WithTimeout(ctx, timeout)
	err = client.Ping(probeCtx).Err()
	cancelProbe()
	switch {
	case err != nil && isAuthError(err):
		client.Close()
		return nil, fmt.Errorf("redis broker: %s refused the credentials in the URL: %w", opt.Addr, err)
	case err != nil:
		logger.Warn("redis is unreachable; serving 503 until it answers", "err", err)
	}

	bgCtx, cancel := context.WithCancel(context.Background())
	r := &Redis{
		client:          client,
		addr:            opt.Addr,
		opts:            cfg.Options.withDefaults(),
		log:             logger,
		prefix:          prefix,
		timeout:         timeout,
		unfinishedTTL:   max(unfinished, cfg.Options.withDefaults().Retention),
		ctx:             bgCtx,
		cancel:          cancel,
		stop:            make(chan struct{}),
		orders:          make(map[string]*redisOrder),
		pendingConfirms: make(map[string]int),
		psWake:          make(chan struct{}, 1),
	}
	r.wg.Add(2)
	go r.readLoop()
	go r.writeLoop()
	return r, nil
}

// Key names. The order id in braces is a cluster hash tag: an order's keys
// share a slot, as a script's keys must.
func (r *Redis) streamKey(id uuid.UUID) string { return r.prefix + "{" + id.String() + "}:events" }
func (r *Redis) latestKey(id uuid.UUID) string { return r.prefix + "{" + id.String() + "}:latest" }
func (r *Redis) channel(id uuid.UUID) string   { return r.prefix + "{" + id.String() + "}:live" }

// opCtx bounds one round trip, whatever the caller's deadline.
func (r *Redis) opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, r.timeout)
}

func (r *Redis) Publish(ctx context.Context, id uuid.UUID, status order.Status) (Event, error) {
	if r.closed.Load() {
		return Event{}, ErrClosed
	}
	if !status.Valid() {
		return Event{}, order.CheckTransition(0, status) // the error Memory gives
	}
	ctx, cancel := r.opCtx(ctx)
	defer cancel()
	keys := []string{r.streamKey(id), r.latestKey(id)}
	res, err := publishScript.Run(ctx, r.client, keys,
		status.String(),
		max(r.opts.Retention.Milliseconds(), 1), // PEXPIRE 0 would delete at once
		r.unfinishedTTL.Milliseconds(),
		streamCap,
		r.channel(id),
	).Slice()
	if err != nil {
		return Event{}, r.fail(err, "publish %v to order %s", status, id)
	}
	ev, prev, err := parsePublishReply(id, status, res)
	if err != nil {
		return Event{}, fmt.Errorf("publish %v to order %s: %w", status, id, err)
	}
	r.deliverOwn(id, prev, ev)
	return ev, nil
}

// parsePublishReply turns the script's reply into the event and the id of
// the one before it, or into the *order.TransitionError of a refusal.
func parsePublishReply(id uuid.UUID, requested order.Status, res []any) (Event, EventID, error) {
	if len(res) < 2 {
		return Event{}, EventID{}, fmt.Errorf("unexpected script reply %v", res)
	}
	if ok, _ := res[0].(int64); ok == 0 {
		current, err := order.ParseStatus(fmt.Sprint(res[1]))
		if err != nil {
			return Event{}, EventID{}, fmt.Errorf("script refused with current status: %w", err)
		}
		return Event{}, EventID{}, &order.TransitionError{Current: current, Requested: requested}
	}
	if len(res) < 4 {
		return Event{}, EventID{}, fmt.Errorf("unexpected script reply %v", res)
	}
	evID, err1 := ParseEventID(fmt.Sprint(res[1]))
	ts, err2 := strconv.ParseInt(fmt.Sprint(res[2]), 10, 64)
	prev, err3 := ParseEventID(fmt.Sprint(res[3]))
	if err := errors.Join(err1, err2, err3); err != nil {
		return Event{}, EventID{}, fmt.Errorf("script reply %v: %w", res, err)
	}
	ev, err := newRedisEvent(id, evID, requested, ts)
	return ev, prev, err
}

// newRedisEvent builds an event from what Redis stores; every path (publish
// reply, latest hash, stream entry, live message) goes through it, so the
// same event is byte-identical whichever way it came, and to Memory's.
func newRedisEvent(id uuid.UUID, evID EventID, status order.Status, tsMicros int64) (Event, error) {
	return NewEvent(evID, order.Update{OrderID: id, Status: status, Timestamp: time.UnixMicro(tsMicros).UTC()})
}

// parseStored reads an event from the stored fields.
func parseStored(id uuid.UUID, rawID, rawStatus, rawTS string) (Event, error) {
	evID, err := ParseEventID(rawID)
	if err != nil {
		return Event{}, fmt.Errorf("stored event id %q: %w", rawID, err)
	}
	status, err := order.ParseStatus(rawStatus)
	if err != nil {
		return Event{}, fmt.Errorf("stored event %s: %w", rawID, err)
	}
	ts, err := strconv.ParseInt(rawTS, 10, 64)
	if err != nil {
		return Event{}, fmt.Errorf("stored event %s: timestamp %q: %w", rawID, rawTS, err)
	}
	return newRedisEvent(id, evID, status, ts)
}

func (r *Redis) Latest(ctx context.Context, id uuid.UUID) (Event, error) {
	if r.closed.Load() {
		return Event{}, ErrClosed
	}
	ctx, cancel := r.opCtx(ctx)
	defer cancel()
	vals, err := r.client.HMGet(ctx, r.latestKey(id), "id", "status", "ts").Result()
	if err != nil {
		return Event{}, r.fail(err, "read latest event of order %s", id)
	}
	if len(vals) != 3 || vals[0] == nil {
		return Event{}, ErrNotFound
	}
	ev, err := parseStored(id, fmt.Sprint(vals[0]), fmt.Sprint(vals[1]), fmt.Sprint(vals[2]))
	if err != nil {
		return Event{}, fmt.Errorf("read latest event of order %s: %w", id, err)
	}
	return ev, nil
}

// history reads the order's events after from, oldest first.
func (r *Redis) history(ctx context.Context, id uuid.UUID, from EventID) ([]Event, error) {
	ctx, cancel := r.opCtx(ctx)
	defer cancel()
	start := "-"
	if !from.IsZero() {
		start = "(" + from.String()
	}
	msgs, err := r.client.XRange(ctx, r.streamKey(id), start, "+").Result()
	if err != nil {
		return nil, r.fail(err, "read history of order %s", id)
	}
	evs := make([]Event, 0, len(msgs))
	for _, m := range msgs {
		ev, err := parseStored(id, m.ID, fmt.Sprint(m.Values["status"]), fmt.Sprint(m.Values["ts"]))
		if err != nil {
			return nil, fmt.Errorf("read history of order %s: %w", id, err)
		}
		evs = append(evs, ev)
	}
	return evs, nil
}

// Ping reports whether Redis answers and the live feed is connected (or
// still making its first connection).
func (r *Redis) Ping(ctx context.Context) error {
	if r.closed.Load() {
		return ErrClosed
	}
	ctx, cancel := r.opCtx(ctx)
	defer cancel()
	if err := r.client.Ping(ctx).Err(); err != nil {
		return r.fail(err, "ping")
	}
	r.mu.Lock()
	state, feedErr := r.feed, r.feedErr
	r.mu.Unlock()
	if state == feedDown {
		return fmt.Errorf("%w: live feed from %s is down: %w", ErrUnavailable, r.addr, feedErr)
	}
	return nil
}

// Close ends every subscription with ErrClosed, stops the background
// goroutines and closes the connections.
func (r *Redis) Close() error {
	if r.closed.Swap(true) {
		return nil
	}
	close(r.stop)
	r.cancel()
	r.mu.Lock()
	ps := r.ps
	r.ps = nil
	for _, o := range r.orders {
		o.epoch++
		for s := range o.subs {
			s.sub.end(ErrClosed)
		}
		for s := range o.waiting {
			s.sub.end(ErrClosed)
		}
	}
	clear(r.orders)
	r.psQueue = nil
	r.mu.Unlock()
	if ps != nil {
		ps.Close() // unblocks the reader
	}
	r.wg.Wait()
	if err := r.client.Close(); err != nil {
		return fmt.Errorf("close redis client: %w", err)
	}
	return nil
}

// fail wraps err, saying what was being done; a Redis that cannot serve now
// (unreachable, loading, read-only, out of memory, refusing credentials) is
// ErrUnavailable, so callers answer 503 and clients retry.
func (r *Redis) fail(err error, format string, args ...any) error {
	what := fmt.Sprintf(format, args...)
	if r.closed.Load() {
		return fmt.Errorf("%s: %w", what, ErrClosed)
	}
	if unavailable(err) {
		return fmt.Errorf("%w: %s at %s: %w", ErrUnavailable, what, r.addr, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// unavailable tells an outage from a reply that says the request was wrong.
func unavailable(err error) bool {
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		return true // network errors, timeouts, a closed pool
	}
	for _, p := range []string{"LOADING", "READONLY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "BUSY", "OOM", "NOAUTH", "WRONGPASS", "NOPERM"} {
		if redis.HasErrorPrefix(err, p) {
			return true
		}
	}
	return false
}

func isAuthError(err error) bool {
	return redis.HasErrorPrefix(err, "WRONGPASS") || redis.HasErrorPrefix(err, "NOAUTH") ||
		redis.HasErrorPrefix(err, "invalid password") || redis.HasErrorPrefix(err, "AUTH")
}
