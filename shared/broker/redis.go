package broker

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
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
	// deployments can share one Redis; required (the default is the
	// settings', shared/config).
	KeyPrefix string
	// Options are the knobs every broker honours, with their required values.
	Options Options
	// Logger receives connection losses and recoveries (default slog.Default()).
	Logger *slog.Logger
	// Timeout bounds every round trip and every dial (default 2s), so that an
	// unreachable Redis is reported within a few seconds, and Ping fails
	// within the 3 s the contract allows /healthz. A tuning knob, not a
	// setting: it follows from that bound, so it keeps a default here.
	Timeout time.Duration
	// Cluster makes URL a seed node of a Redis Cluster (7.0 or later), with
	// more seeds as addr=host:port query parameters, as
	// redis.ParseClusterURL reads it. Live messages then go through sharded
	// pub/sub, one connection per master.
	Cluster bool
	// WaitReplicas, if positive, makes Publish wait (Redis's WAIT, up to
	// Timeout) until this many replicas of the order's master have the
	// event; if fewer do in time, Publish answers an error wrapping
	// ErrUnavailable (the event may well survive; the publisher retries with
	// its idempotency key).
	WaitReplicas int
}

// check reports a required value that is missing: a caller's mistake, not
// a user's (shared/config reports theirs).
func (c RedisConfig) check() error {
	errs := []error{c.Options.check()}
	if c.KeyPrefix == "" {
		errs = append(errs, errors.New("RedisConfig.KeyPrefix is empty"))
	}
	return errors.Join(errs...)
}

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
// or later or Valkey, or on a Redis Cluster (7.0 or later: sharded pub/sub).
//
// Each order has a stream (its history; the stream ids are the event ids), a
// hash holding its latest event, a hash of the idempotency keys it accepted
// (each with the event it made) and a live channel; all are named
// KeyPrefix + "{<order id>}:…", the braces keeping them in one cluster slot.
// A Lua script checks the idempotency key and the transition, stamps the
// time from Redis's clock, appends to the stream, updates the hashes, sets
// the expiry and publishes the event (SPUBLISH on a cluster), as one atomic
// step on that slot.
//
// Live delivery takes one pub/sub connection per instance on a single
// Redis, one per master on a cluster, whatever the number of subscribers:
// each is subscribed to the channels of the orders that have local
// subscribers (on a cluster, those in its master's slots), and every event
// it receives is added to a local copy of the order's history and handed to
// the hub (hub.go) that Memory fans out through too. The stream stays the
// source of truth: each live message names the event before it, so a
// missed message shows as a gap that is read back from the stream, and
// after a reconnection (or a failover or slot migration, which move orders
// to another master's connection) every affected order is caught up from
// the stream. Subscriptions open during an outage stay open, receive
// nothing meanwhile and then every event they missed, exactly once, in
// order.
//
// Redis must not lose acknowledged events across its own restart: run it
// with "appendonly yes". With "appendfsync always" an event is on disk
// before Publish returns, so nothing acknowledged is ever lost, at the cost
// of an fsync per publish; "appendfsync everysec" (Redis's default with AOF)
// is much cheaper but may lose the last second of acknowledged events if the
// machine (not just the process) crashes. RDB snapshots alone ("save") lose
// everything since the last snapshot. A managed Redis with replication and
// failover may still lose the last writes on failover unless publishes wait
// for replicas (RedisConfig.WaitReplicas).
type Redis struct {
	client        redis.UniversalClient
	cluster       *redis.ClusterClient // nil on a single Redis
	single        *redis.Client        // nil on a cluster
	addr          string               // the node, or the cluster's seeds, for messages
	opts          Options
	log           *slog.Logger
	prefix        string
	timeout       time.Duration
	unfinishedTTL time.Duration // IdleExpiry, and never less than Retention
	// publishCommand is what the script publishes live messages with.
	publishCommand string
	waitReplicas   int

	ctx    context.Context // canceled by Close: aborts background round trips
	cancel context.CancelFunc
	stop   chan struct{}
	closed atomic.Bool
	wg     sync.WaitGroup // every connection's reader and writer, every catch-up
	// recovered counts events that reached waiting subscribers from the
	// stream rather than live: the messages that a lost connection cost.
	recovered atomic.Int64
	// disconnects counts lost pub/sub connections.
	disconnects atomic.Int64

	// hub holds the local subscribers of every order; the feed hands it
	// events under mu.
	hub *hub

	mu     sync.Mutex
	orders map[string]*redisOrder // orders with local subscribers, by channel
	conns  map[string]*feedConn   // the live feed's connections, by node address
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
// URL, on credentials that Redis refuses, which no wait would cure, or on a
// cfg without its required values.
//
// Close releases the broker.
func NewRedis(ctx context.Context, cfg RedisConfig) (*Redis, error) {
	if err := cfg.check(); err != nil {
		return nil, fmt.Errorf("redis broker: %w", err)
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = defaultRedisTimeout
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	opts := cfg.Options.withDefaults()
	bgCtx, cancel := context.WithCancel(context.Background())
	r := &Redis{
		opts:           opts,
		prefix:         cfg.KeyPrefix,
		timeout:        timeout,
		unfinishedTTL:  max(opts.IdleExpiry, opts.Retention),
		publishCommand: "PUBLISH",
		waitReplicas:   cfg.WaitReplicas,
		ctx:            bgCtx,
		cancel:         cancel,
		stop:           make(chan struct{}),
		hub:            newHub(),
		orders:         make(map[string]*redisOrder),
		conns:          make(map[string]*feedConn),
	}
	if err := r.open(cfg.URL, cfg.Cluster); err != nil {
		cancel()
		return nil, err
	}
	r.log = logger.With("broker", "redis", "addr", r.addr)

	probeCtx, cancelProbe := context.WithTimeout(ctx, timeout)
	err := r.client.Ping(probeCtx).Err()
	cancelProbe()
	switch {
	case err != nil && isAuthError(err):
		r.client.Close()
		cancel()
		return nil, fmt.Errorf("redis broker: %s refused the credentials in the URL: %w", r.addr, err)
	case err != nil:
		r.log.Warn("redis is unreachable; serving 503 until it answers", "err", err)
	}
	if r.single != nil {
		// One connection for every order, dialled at once so that Ping
		// reports a feed that cannot connect. A cluster's are made as
		// orders need them, one per master.
		r.mu.Lock()
		r.connFor(feedRoute{addr: r.addr, node: r.single})
		r.mu.Unlock()
	}
	return r, nil
}

// CheckRedisURL reports whether url is a Redis URL NewRedis can use: a
// redis:// or rediss:// URL of one node, or with cluster of a cluster's
// seed, more seeds as addr=host:port parameters.
func CheckRedisURL(url string, cluster bool) error {
	var err error
	if cluster {
		_, err = redis.ParseClusterURL(url)
	} else {
		_, err = redis.ParseURL(url)
	}
	return err
}

// open makes the client for url: a single node, or with cluster a Redis
// Cluster that url names a seed of (more seeds as addr parameters).
func (r *Redis) open(url string, cluster bool) error {
	if !cluster {
		opt, err := redis.ParseURL(url)
		if err != nil {
			return fmt.Errorf("redis broker: parse URL: %w", err)
		}
		r.tune(opt)
		r.single = redis.NewClient(opt)
		r.client, r.addr = r.single, opt.Addr
		return nil
	}
	opt, err := redis.ParseClusterURL(url)
	if err != nil {
		return fmt.Errorf("redis broker: parse cluster URL: %w", err)
	}
	// Every node's client is tuned as a single node's. go-redis still
	// follows MOVED and ASK within MaxRedirects, and retries a command cut
	// off by a lost connection or CLUSTERDOWN: a publish may then run
	// twice, which its Idempotency-Key makes harmless (without one, the
	// second run answers 409 for an update that was accepted).
	opt.NewClient = func(o *redis.Options) *redis.Client {
		r.tune(o)
		return redis.NewClient(o)
	}
	r.cluster = redis.NewClusterClient(opt)
	r.client, r.addr = r.cluster, strings.Join(opt.Addrs, ",")
	r.publishCommand = "SPUBLISH"
	return nil
}

// tune sets what a client of one node needs here.
func (r *Redis) tune(opt *redis.Options) {
	// Fail fast rather than queue: a caller learns of an outage within a
	// timeout and tells its client to retry.
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout, opt.PoolTimeout = r.timeout, r.timeout, r.timeout, r.timeout
	opt.ContextTimeoutEnabled = true
	opt.DialerRetries = 1
	// No automatic retries: a publish whose reply was lost may have been
	// applied, and running it again would answer a conflict for an update
	// that was in fact accepted. The caller's client retries instead, with
	// its Idempotency-Key.
	opt.MaxRetries = -1
	// Redis and Valkey do not send maintenance notifications; don't ask on
	// every new connection.
	opt.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
}

// Key names. The order id in braces is a cluster hash tag: an order's keys
// share a slot, as a script's keys must.
func (r *Redis) streamKey(id uuid.UUID) string { return r.prefix + "{" + id.String() + "}:events" }
func (r *Redis) latestKey(id uuid.UUID) string { return r.prefix + "{" + id.String() + "}:latest" }
func (r *Redis) channel(id uuid.UUID) string   { return r.prefix + "{" + id.String() + "}:live" }
func (r *Redis) idempotencyKey(id uuid.UUID) string {
	return r.prefix + "{" + id.String() + "}:idempotency"
}

// opCtx bounds one round trip, whatever the caller's deadline.
func (r *Redis) opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, r.timeout)
}

func (r *Redis) Publish(ctx context.Context, id uuid.UUID, req PublishRequest) (Event, error) {
	if r.closed.Load() {
		return Event{}, ErrClosed
	}
	if err := req.check(); err != nil {
		return Event{}, err // the errors Memory gives
	}
	ctx, cancel := r.opCtx(ctx)
	defer cancel()
	res, err := r.runPublish(ctx, id, req.Status.String(), req.IdempotencyKey)
	if err != nil {
		return Event{}, r.fail(err, "publish %v to order %s", req.Status, id)
	}
	reply, err := parsePublishReply(id, req, res)
	if err != nil {
		return Event{}, fmt.Errorf("publish %v to order %s: %w", req.Status, id, err)
	}
	if !reply.replayed {
		r.deliverOwn(id, reply.prev, reply.event)
	}
	return reply.event, nil
}

// runPublish runs the publish script for the named status (a name, so that
// tests can also send what order.Status can't hold), and with WaitReplicas
// waits for the replicas.
func (r *Redis) runPublish(ctx context.Context, id uuid.UUID, status, idempotencyKey string) ([]any, error) {
	keys := []string{r.streamKey(id), r.latestKey(id), r.idempotencyKey(id)}
	args := []any{
		status,
		max(r.opts.Retention.Milliseconds(), 1), // PEXPIRE 0 would delete at once
		r.unfinishedTTL.Milliseconds(),
		streamCap,
		r.channel(id),
		idempotencyKey,
		r.publishCommand,
	}
	if r.waitReplicas <= 0 {
		return publishScript.Run(ctx, r.client, keys, args...).Slice()
	}
	return r.runPublishAndWait(ctx, keys, args)
}

// runPublishAndWait sends the script and WAIT in one pipeline to the master
// that owns the order's slot: WAIT is refused inside a script, and a
// cluster client's Wait asks every master and answers the least. A replay
// (a retried request) waits too, so that a retry after a 503 answers 201
// once the replicas have the event.
func (r *Redis) runPublishAndWait(ctx context.Context, keys []string, args []any) ([]any, error) {
	node := r.single
	if r.cluster != nil {
		var err error
		if node, err = r.cluster.MasterForKey(ctx, keys[0]); err != nil {
			return nil, err
		}
	}
	// WAIT's own limit, well inside the connection's read timeout.
	waitFor := r.timeout / 2
	run := func(eval func(redis.Pipeliner) *redis.Cmd) (*redis.Cmd, *redis.IntCmd, error) {
		pipe := node.Pipeline()
		script := eval(pipe)
		// Pipeliner has no Wait method: the command by hand.
		acked := redis.NewIntCmd(ctx, "wait", r.waitReplicas, waitFor.Milliseconds())
		_ = pipe.Process(ctx, acked)
		_, err := pipe.Exec(ctx)
		return script, acked, err
	}
	script, acked, err := run(func(p redis.Pipeliner) *redis.Cmd {
		return publishScript.EvalSha(ctx, p, keys, args...)
	})
	if err != nil && redis.HasErrorPrefix(script.Err(), "NOSCRIPT") {
		script, acked, err = run(func(p redis.Pipeliner) *redis.Cmd { return publishScript.Eval(ctx, p, keys, args...) })
	}
	if err := script.Err(); err != nil {
		return nil, err
	}
	res, err := script.Slice()
	if err != nil {
		return nil, err
	}
	if code, _ := res[0].(int64); code != replyAccepted && code != replyReplayed {
		return res, nil // a refusal wrote nothing to wait for
	}
	n, err := acked.Result()
	if err != nil {
		return nil, fmt.Errorf("wait for %d replicas: %w", r.waitReplicas, err)
	}
	if n < int64(r.waitReplicas) {
		return nil, fmt.Errorf("%w: %d of %d replicas of %s acknowledged the event within %v (it may survive: retry with the same Idempotency-Key)",
			ErrUnavailable, n, r.waitReplicas, node.Options().Addr, waitFor)
	}
	return res, nil
}

// publishReply is what the publish script answered.
type publishReply struct {
	event    Event
	prev     EventID // the event before; zero for a replay
	replayed bool    // the idempotency key had already made event
}

// Script reply codes (redis_publish.lua).
const (
	replyRefused     = 0
	replyAccepted    = 1
	replyReplayed    = 2
	replyKeyConflict = 3
)

// parsePublishReply turns the script's reply into the event (with the id of
// the one before it), or into the *order.TransitionError or
// *IdempotencyKeyError of a refusal.
func parsePublishReply(id uuid.UUID, req PublishRequest, res []any) (publishReply, error) {
	if len(res) < 2 {
		return publishReply{}, fmt.Errorf("unexpected script reply %v", res)
	}
	code, _ := res[0].(int64)
	switch code {
	case replyRefused, replyKeyConflict:
		current, err := order.ParseStatus(fmt.Sprint(res[1]))
		if err != nil {
			return publishReply{}, fmt.Errorf("script refused with stored status: %w", err)
		}
		if code == replyKeyConflict {
			return publishReply{}, &IdempotencyKeyError{Key: req.IdempotencyKey, Accepted: current, Requested: req.Status}
		}
		return publishReply{}, &order.TransitionError{Current: current, Requested: req.Status}
	case replyAccepted, replyReplayed:
	default:
		return publishReply{}, fmt.Errorf("unexpected script reply %v", res)
	}
	if len(res) < 3 || code == replyAccepted && len(res) < 4 {
		return publishReply{}, fmt.Errorf("unexpected script reply %v", res)
	}
	evID, err1 := ParseEventID(fmt.Sprint(res[1]))
	ts, err2 := strconv.ParseInt(fmt.Sprint(res[2]), 10, 64)
	var prev EventID
	var err3 error
	if code == replyAccepted {
		prev, err3 = ParseEventID(fmt.Sprint(res[3]))
	}
	if err := errors.Join(err1, err2, err3); err != nil {
		return publishReply{}, fmt.Errorf("script reply %v: %w", res, err)
	}
	ev, err := newRedisEvent(id, evID, req.Status, ts)
	return publishReply{event: ev, prev: prev, replayed: code == replyReplayed}, err
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
//
// On a cluster it reports whether this instance can reach the cluster: the
// slot map loads and at least one master answers. A shard that is down (a
// master failing over) makes the requests for its own orders answer 503,
// but not /healthz: every instance shares the cluster, so taking them all
// out of the load balancer would turn an outage of a third of the orders
// into an outage of all of them.
func (r *Redis) Ping(ctx context.Context) error {
	if r.closed.Load() {
		return ErrClosed
	}
	ctx, cancel := r.opCtx(ctx)
	defer cancel()
	if r.cluster != nil {
		return r.pingCluster(ctx)
	}
	if err := r.client.Ping(ctx).Err(); err != nil {
		return r.fail(err, "ping")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.conns {
		if c.state == feedDown {
			return fmt.Errorf("%w: live feed from %s is down: %w", ErrUnavailable, c.addr, c.err)
		}
	}
	return nil
}

func (r *Redis) pingCluster(ctx context.Context) error {
	var answered atomic.Int32
	var mu sync.Mutex
	var errs []error
	err := r.cluster.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		if err := node.Ping(ctx).Err(); err != nil {
			mu.Lock()
			errs = append(errs, fmt.Errorf("%s: %w", node.Options().Addr, err))
			mu.Unlock()
			return nil
		}
		answered.Add(1)
		return nil
	})
	if err == nil && answered.Load() > 0 {
		return nil
	}
	return r.fail(errors.Join(append(errs, err)...), "ping the cluster's masters")
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
	var pss []*redis.PubSub
	for _, c := range r.conns {
		if c.ps != nil {
			pss = append(pss, c.ps)
		}
		c.ps, c.queue = nil, nil
	}
	for _, o := range r.orders {
		o.feed.forget()
		for s := range o.waiting {
			s.sub.live.End(ErrClosed)
		}
	}
	clear(r.orders)
	r.hub.close(ErrClosed)
	r.mu.Unlock()
	for _, ps := range pss {
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
		if r.cluster != nil {
			// go-redis reloads its slot map on MOVED but not when a master
			// is unreachable or the cluster is down: without this, requests
			// for a failed-over shard would go to the dead master until the
			// periodic reload, a minute later. The reload is coalesced and
			// runs in the background; the client retries.
			r.cluster.ReloadState(r.ctx)
		}
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
	for _, p := range []string{"LOADING", "READONLY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "MOVED", "ASK", "BUSY", "OOM", "NOAUTH", "WRONGPASS", "NOPERM"} {
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
