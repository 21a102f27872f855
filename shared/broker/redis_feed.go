package broker

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/orderstream/orderstream/shared/order"
)

// The live feed: one pub/sub connection per instance on a single Redis, one
// per master on a cluster (feedConn), subscribed to the channels of the
// orders that have local subscribers.
//
// Every order with local subscribers has a redisOrder: its feed state (an
// orderFeed, feed_state.go: a gap-free copy of its history and the catch-up
// logic), the connection that carries its channel, and the subscribers
// waiting for it to go live. Its receiving subscribers are in the hub
// (hub.go), which the feed hands every event appended to the copy, under
// r.mu. Subscribers are served their history from the copy and added to the
// hub in one step under r.mu, so there is no boundary between history and
// live at which an event could fall through or arrive twice; the hub also
// skips, for each subscriber, ids at or before its position, which covers
// positions the copy has not reached yet. Until the order is live, new
// subscribers wait (up to the timeout).

type redisOrder struct {
	feed    orderFeed
	channel string
	conn    *feedConn // the connection that carries its channel

	waiting map[*redisSub]struct{} // in Subscribe, until the order is live
}

// redisSub is a subscriber in Subscribe, until it is served and added to the
// hub.
type redisSub struct {
	sub   *Subscription
	pos   EventID       // the position it asked for
	ready chan struct{} // closed when a waiting subscriber is served
}

// liveMessage is what the publish script PUBLISHes: "id prev status ts".
type liveMessage struct {
	id, prev EventID
	status   order.Status
	ts       int64
}

func parseLiveMessage(payload string) (liveMessage, error) {
	f := strings.Fields(payload)
	if len(f) != 4 {
		return liveMessage{}, fmt.Errorf("live message %q: want 4 fields", payload)
	}
	id, err1 := ParseEventID(f[0])
	prev, err2 := ParseEventID(f[1])
	status, err3 := order.ParseStatus(f[2])
	ts, err4 := strconv.ParseInt(f[3], 10, 64)
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return liveMessage{}, fmt.Errorf("live message %q: %w", payload, err)
	}
	return liveMessage{id: id, prev: prev, status: status, ts: ts}, nil
}

// psCommand is a SUBSCRIBE (or SSUBSCRIBE) or its undoing, queued for a
// connection's writer.
type psCommand struct {
	ps        *redis.PubSub
	subscribe bool // else unsubscribe
	channels  []string
}

// feedConn is one pub/sub connection of the live feed: the only one on a
// single Redis; on a cluster, one per master that owns the slot of a local
// order, subscribed with SSUBSCRIBE to the shard channels of the orders in
// its slots. Its fields are guarded by r.mu.
type feedConn struct {
	addr    string        // the node it reads from
	node    *redis.Client // the client of that node
	sharded bool          // SSUBSCRIBE (cluster) rather than SUBSCRIBE

	ps    *redis.PubSub // nil while there is none
	state feedState
	err   error // why the connection is down
	// pendingConfirms counts SUBSCRIBEs sent on ps per channel that Redis
	// has not confirmed yet: an order is subscribed once the last is
	// confirmed.
	pendingConfirms map[string]int
	// pendingUnsubs counts our UNSUBSCRIBEs per channel that Redis has not
	// confirmed yet; an unsubscribe beyond them is Redis's own, sent when
	// the channel's slot migrated to another master.
	pendingUnsubs map[string]int
	// queue holds SUBSCRIBE and UNSUBSCRIBE commands in the order the local
	// state changed; the writer sends them, so no lock is held over the
	// network and a channel's commands never overtake each other.
	queue []psCommand
	wake  chan struct{}
	// retired is closed when the connection has no orders left and its
	// goroutines go (on a cluster, after its orders moved to other masters).
	retired chan struct{}
}

// feedRoute names the node whose connection carries an order's channel.
type feedRoute struct {
	addr string
	node *redis.Client
}

// route finds the node that carries ch: the one Redis, or on a cluster the
// master that owns ch's slot as the client's slot map says.
func (r *Redis) route(ctx context.Context, ch string) (feedRoute, error) {
	if r.cluster == nil {
		return feedRoute{addr: r.addr, node: r.single}, nil
	}
	ctx, cancel := r.opCtx(ctx)
	defer cancel()
	node, err := r.cluster.MasterForKey(ctx, ch)
	if err != nil {
		return feedRoute{}, err
	}
	return feedRoute{addr: node.Options().Addr, node: node}, nil
}

// connFor returns the connection to rt's node, starting one if there is
// none. The caller holds r.mu.
func (r *Redis) connFor(rt feedRoute) *feedConn {
	if c := r.conns[rt.addr]; c != nil {
		return c
	}
	c := &feedConn{
		addr:            rt.addr,
		node:            rt.node,
		sharded:         r.cluster != nil,
		pendingConfirms: make(map[string]int),
		pendingUnsubs:   make(map[string]int),
		wake:            make(chan struct{}, 1),
		retired:         make(chan struct{}),
	}
	r.conns[rt.addr] = c
	r.wg.Add(2)
	go r.readLoop(c)
	go r.writeLoop(c)
	return c
}

func (r *Redis) Subscribe(ctx context.Context, id uuid.UUID, after EventID) (*Subscription, error) {
	ch := r.channel(id)
	rt, err := r.route(ctx, ch)
	if err != nil {
		return nil, r.fail(err, "subscribe to order %s: find the node of its channel", id)
	}
	r.mu.Lock()
	if r.closed.Load() {
		r.mu.Unlock()
		return nil, ErrClosed
	}
	o := r.localOrder(id, ch, rt)
	if c := o.conn; c.state == feedDown {
		err := c.err
		r.release(o)
		r.mu.Unlock()
		return nil, fmt.Errorf("%w: subscribe to order %s: live feed from %s is down: %w", ErrUnavailable, id, c.addr, err)
	}
	s := &redisSub{sub: newSubscription(r.opts.SubscriberBuffer), pos: after}
	s.sub.cancel = func() { r.unsubscribe(o, s) }
	if o.feed.live() {
		r.serve(o, s)
		r.release(o)
		r.mu.Unlock()
		return s.sub, nil
	}
	s.ready = make(chan struct{})
	o.waiting[s] = struct{}{}
	r.mu.Unlock()

	timer := time.NewTimer(r.timeout)
	defer timer.Stop()
	select {
	case <-s.ready:
		return s.sub, nil
	case <-ctx.Done():
		err = ctx.Err()
	case <-timer.C:
		err = fmt.Errorf("order's live feed not ready within %v", r.timeout)
	case <-r.stop:
		return nil, ErrClosed
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-s.ready: // served while we gave up
		return s.sub, nil
	default:
	}
	delete(o.waiting, s)
	r.release(o)
	return nil, fmt.Errorf("%w: subscribe to order %s at %s: %w", ErrUnavailable, id, o.conn.addr, err)
}

// localOrder returns the order's entry, making it (and subscribing to its
// channel on rt's connection) if it has none. The caller holds r.mu.
func (r *Redis) localOrder(id uuid.UUID, ch string, rt feedRoute) *redisOrder {
	if o := r.orders[ch]; o != nil {
		return o
	}
	o := &redisOrder{
		feed:    orderFeed{id: id},
		channel: ch,
		waiting: make(map[*redisSub]struct{}),
	}
	r.orders[ch] = o
	r.attach(o, r.connFor(rt))
	return o
}

// attach puts o on c: it subscribes there and catches up once confirmed.
// Without a connection yet, c's reader subscribes it when it connects. The
// caller holds r.mu.
func (r *Redis) attach(o *redisOrder, c *feedConn) {
	o.conn = c
	o.feed.reset()
	if c.ps != nil {
		c.pendingConfirms[o.channel]++
		r.enqueue(c, psCommand{ps: c.ps, subscribe: true, channels: []string{o.channel}})
	}
}

// serve gives s its history from the order's copy and adds it to the hub
// after it, or ends it at once if the order is finished. The caller holds
// r.mu.
func (r *Redis) serve(o *redisOrder, s *redisSub) {
	pos := s.pos
	if s.sub.History = o.feed.after(pos); len(s.sub.History) > 0 {
		pos = o.feed.tail()
	}
	if o.feed.finished {
		s.sub.Finished = true
		s.sub.live.End(nil)
		return
	}
	if err := r.hub.add(o.feed.id, s.sub.live, pos); err != nil {
		s.sub.live.End(err) // closed meanwhile
		return
	}
	s.sub.inHub(r.hub, o.feed.id)
}

func (r *Redis) unsubscribe(o *redisOrder, s *redisSub) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := o.waiting[s]; ok {
		delete(o.waiting, s)
		s.sub.live.End(nil)
	} else {
		r.hub.remove(o.feed.id, s.sub.live)
	}
	r.release(o)
}

// release forgets an order nobody local watches any more. The caller holds r.mu.
func (r *Redis) release(o *redisOrder) {
	if len(o.waiting) > 0 || r.orders[o.channel] != o || r.hub.watchers(o.feed.id) > 0 {
		return
	}
	delete(r.orders, o.channel)
	o.feed.forget()
	if c := o.conn; c.ps != nil {
		c.pendingUnsubs[o.channel]++
		r.enqueue(c, psCommand{ps: c.ps, channels: []string{o.channel}})
	}
}

// enqueue hands a pub/sub command to c's writer; on a cluster one command
// per channel, since an SSUBSCRIBE may only name channels of one slot. The
// caller holds r.mu.
func (r *Redis) enqueue(c *feedConn, cmd psCommand) {
	if c.sharded && len(cmd.channels) > 1 {
		for _, ch := range cmd.channels {
			c.queue = append(c.queue, psCommand{ps: cmd.ps, subscribe: cmd.subscribe, channels: []string{ch}})
		}
	} else {
		c.queue = append(c.queue, cmd)
	}
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// writeLoop sends c's SUBSCRIBE and UNSUBSCRIBE commands in queue order. A
// failed write closes the connection, so that the reader reconnects and
// every order on it catches up.
func (r *Redis) writeLoop(c *feedConn) {
	defer r.wg.Done()
	for {
		select {
		case <-r.stop:
			return
		case <-c.retired:
			return
		case <-c.wake:
		}
		r.mu.Lock()
		queue := c.queue
		c.queue = nil
		r.mu.Unlock()
		for len(queue) > 0 {
			// Merge a run of like commands into one round of writes; not on
			// a cluster, where one SSUBSCRIBE may only name channels of one
			// slot (CROSSSLOT otherwise).
			cmd := queue[0]
			queue = queue[1:]
			for !c.sharded && len(queue) > 0 && queue[0].ps == cmd.ps && queue[0].subscribe == cmd.subscribe {
				cmd.channels = append(cmd.channels, queue[0].channels...)
				queue = queue[1:]
			}
			ctx, cancel := context.WithTimeout(r.ctx, r.timeout)
			var err error
			switch {
			case cmd.subscribe && c.sharded:
				err = cmd.ps.SSubscribe(ctx, cmd.channels...)
			case cmd.subscribe:
				err = cmd.ps.Subscribe(ctx, cmd.channels...)
			case c.sharded:
				err = cmd.ps.SUnsubscribe(ctx, cmd.channels...)
			default:
				err = cmd.ps.Unsubscribe(ctx, cmd.channels...)
			}
			cancel()
			if err != nil && !r.closed.Load() {
				r.log.Debug("pub/sub command failed; reconnecting", "node", c.addr, "subscribe", cmd.subscribe, "channels", len(cmd.channels), "err", err)
				cmd.ps.Close()
			}
		}
	}
}

// readLoop owns c's pub/sub connection: it dials (with capped backoff),
// receives, and after a failure reconnects and makes every order on it
// catch up.
func (r *Redis) readLoop(c *feedConn) {
	defer r.wg.Done()
	b := backoff{min: 50 * time.Millisecond, max: time.Second}
	for {
		ps := r.connect(c, &b)
		if ps == nil {
			return // closed or retired
		}
		up := time.Now()
		err := r.receive(c, ps)
		ps.Close()
		if r.closed.Load() {
			return
		}
		r.disconnected(c, err)
		// A connection that fails as soon as it is made (a node that
		// refuses our commands, a slot map still stale) is retried with
		// backoff, not in a tight loop.
		if time.Since(up) >= time.Second {
			b.reset()
			continue
		}
		select {
		case <-r.stop:
			return
		case <-time.After(b.next()):
		}
	}
}

// connect dials until it gets a pub/sub connection, subscribes it to the
// channel of every local order on c and returns it; nil once the broker is
// closed or c retired. On a cluster, each attempt first moves the orders
// whose slot another master now owns to that master's connection.
func (r *Redis) connect(c *feedConn, b *backoff) *redis.PubSub {
	warned := false
	for {
		if r.closed.Load() {
			return nil
		}
		if r.cluster != nil && !r.reroute(c) {
			return nil
		}
		ps := c.node.Subscribe(r.ctx)
		ctx, cancel := context.WithTimeout(r.ctx, r.timeout)
		err := ps.Ping(ctx) // dials; the PONG is read by receive
		cancel()
		if err == nil {
			r.mu.Lock()
			if r.closed.Load() {
				r.mu.Unlock()
				ps.Close()
				return nil
			}
			wasDown := c.state == feedDown
			c.ps, c.state, c.err = ps, feedUp, nil
			var channels []string
			for ch, o := range r.orders {
				if o.conn == c {
					channels = append(channels, ch)
					c.pendingConfirms[ch] = 1
				}
			}
			if len(channels) > 0 {
				r.enqueue(c, psCommand{ps: ps, subscribe: true, channels: channels})
			}
			r.mu.Unlock()
			if wasDown {
				r.log.Info("live feed reconnected", "node", c.addr, "orders", len(channels))
			}
			return ps
		}
		ps.Close()
		if r.closed.Load() {
			return nil // the dial failed because Close canceled it
		}
		r.mu.Lock()
		c.state, c.err = feedDown, err
		r.mu.Unlock()
		if !warned {
			r.log.Warn("live feed cannot connect; retrying", "node", c.addr, "err", err)
			warned = true
		}
		select {
		case <-r.stop:
			return nil
		case <-time.After(b.next()):
		}
	}
}

// reroute reloads the cluster's slot map and moves every order on c whose
// slot another master owns now to that master's connection; it retires c
// and returns false if no order is left on it. Called before every dial,
// so that a feed whose master died follows its slots to the promoted
// replica as soon as the cluster has promoted it: each attempt reloads the
// map again, since one taken before the promotion still names the dead
// master.
func (r *Redis) reroute(c *feedConn) bool {
	ctx, cancel := context.WithTimeout(r.ctx, r.timeout)
	defer cancel()
	// ForEachMaster reloads the slot map before it returns; the function
	// itself has nothing to do.
	_ = r.cluster.ForEachMaster(ctx, func(context.Context, *redis.Client) error { return nil })

	r.mu.Lock()
	var mine []*redisOrder
	for _, o := range r.orders {
		if o.conn == c {
			mine = append(mine, o)
		}
	}
	r.mu.Unlock()
	routes := make(map[*redisOrder]feedRoute, len(mine))
	for _, o := range mine {
		if rt, err := r.route(ctx, o.channel); err == nil && rt.addr != c.addr {
			routes[o] = rt
		}
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	left := 0
	for _, o := range r.orders {
		if o.conn != c {
			continue
		}
		if rt, ok := routes[o]; ok {
			r.attach(o, r.connFor(rt))
			continue
		}
		left++
	}
	if left > 0 || r.closed.Load() {
		return left > 0
	}
	if r.conns[c.addr] == c {
		delete(r.conns, c.addr)
	}
	close(c.retired)
	if len(routes) > 0 {
		r.log.Info("live feed moved with its slots", "from", c.addr, "orders", len(routes))
	}
	return false
}

// receive reads the connection until it fails. A connection that is silent
// for a while is pinged; no answer by the next check means it is dead. On a
// cluster, Redis ending a shard channel's subscription itself means its slot
// moved: the connection is dropped, so that its orders follow their slots
// and catch up.
func (r *Redis) receive(c *feedConn, ps *redis.PubSub) error {
	check := max(r.timeout/2, 100*time.Millisecond)
	pinged := false
	for {
		msg, err := ps.ReceiveTimeout(context.Background(), check)
		if err != nil {
			var nerr net.Error
			if !errors.As(err, &nerr) || !nerr.Timeout() {
				return err
			}
			if pinged {
				return fmt.Errorf("no answer to ping within %v", check)
			}
			if err := ps.Ping(r.ctx); err != nil {
				return err
			}
			pinged = true
			continue
		}
		pinged = false // anything received shows the connection works
		switch m := msg.(type) {
		case *redis.Subscription:
			switch m.Kind {
			case "subscribe", "ssubscribe":
				r.confirmed(c, ps, m.Channel)
			case "unsubscribe", "sunsubscribe":
				if !r.unsubscribed(c, ps, m.Channel) {
					return fmt.Errorf("redis ended the subscription to %s: its slot moved", m.Channel)
				}
			}
		case *redis.Message:
			r.dispatch(m.Channel, m.Payload)
		}
	}
}

// disconnected forgets c's connection: every order on it must subscribe and
// catch up again. Subscribers stay registered and get what they missed
// later.
func (r *Redis) disconnected(c *feedConn, err error) {
	r.disconnects.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	c.ps, c.state, c.err = nil, feedConnecting, err
	clear(c.pendingConfirms)
	clear(c.pendingUnsubs)
	c.queue = nil
	n := 0
	for _, o := range r.orders {
		if o.conn == c {
			r.attach(o, c)
			n++
		}
	}
	r.log.Warn("live feed lost; reconnecting", "node", c.addr, "err", err, "orders", n)
}

// confirmed records Redis's confirmation of a SUBSCRIBE.
func (r *Redis) confirmed(c *feedConn, ps *redis.PubSub, ch string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ps != c.ps {
		return
	}
	if n := c.pendingConfirms[ch]; n > 1 {
		c.pendingConfirms[ch] = n - 1
		return // a later SUBSCRIBE of the same channel is still on its way
	}
	delete(c.pendingConfirms, ch)
	if o := r.orders[ch]; o != nil && o.conn == c {
		r.act(o, o.feed.confirmed())
	}
}

// unsubscribed records Redis's confirmation of an UNSUBSCRIBE; false if we
// sent none for ch: Redis ended the subscription itself.
func (r *Redis) unsubscribed(c *feedConn, ps *redis.PubSub, ch string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ps != c.ps {
		return true
	}
	n := c.pendingUnsubs[ch]
	if n == 0 {
		return false
	}
	if n == 1 {
		delete(c.pendingUnsubs, ch)
	} else {
		c.pendingUnsubs[ch] = n - 1
	}
	return true
}

// act carries out what a step of o's feed asks for. The caller holds r.mu.
func (r *Redis) act(o *redisOrder, a feedAction) {
	if a.recovered > 0 && r.hub.watchers(o.feed.id) > 0 {
		r.recovered.Add(int64(a.recovered))
	}
	for _, ev := range a.appended {
		r.hub.publish(ev)
	}
	if a.wentLive {
		for s := range o.waiting {
			r.serve(o, s)
			close(s.ready)
		}
		clear(o.waiting)
	}
	if a.catchUp {
		r.catchUp(o, a.epoch, a.from)
	}
}

// catchUp reads the stream after from, in a goroutine of its own so that
// the reader goes on, retrying until it succeeds or the read is moot. The
// caller holds r.mu.
func (r *Redis) catchUp(o *redisOrder, epoch uint64, from EventID) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		b := backoff{min: 50 * time.Millisecond, max: time.Second}
		warned := false
		for {
			evs, err := r.history(r.ctx, o.feed.id, from)
			r.mu.Lock()
			if r.closed.Load() || o.feed.epoch != epoch || r.orders[o.channel] != o {
				r.mu.Unlock()
				return
			}
			if err == nil {
				r.act(o, o.feed.caughtUp(epoch, evs))
				r.release(o)
				r.mu.Unlock()
				return
			}
			r.mu.Unlock()
			if !warned {
				r.log.Warn("catching up from the stream failed; retrying", "order", o.feed.id, "err", err)
				warned = true
			}
			select {
			case <-r.stop:
				return
			case <-time.After(b.next()):
			}
		}
	}()
}

// dispatch hands a live message to its order.
func (r *Redis) dispatch(ch, payload string) {
	m, err := parseLiveMessage(payload)
	if err != nil {
		r.log.Warn("ignoring a malformed live message", "channel", ch, "err", err)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	o := r.orders[ch]
	if o == nil {
		return
	}
	a, err := o.feed.message(m)
	if err != nil {
		r.log.Warn("ignoring a live message", "order", o.feed.id, "err", err)
	}
	r.act(o, a)
	r.release(o)
}

// deliverOwn hands an event this instance just published to its local
// subscribers at once if it chains onto the order's copy (orderFeed.own).
func (r *Redis) deliverOwn(id uuid.UUID, prev EventID, ev Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if o := r.orders[r.channel(id)]; o != nil {
		r.act(o, o.feed.own(prev, ev))
		r.release(o)
	}
}

// stats counts local orders and subscribers; tests use it to prove nothing leaks.
func (r *Redis) stats() (orders, subscribers int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, o := range r.orders {
		subscribers += r.hub.watchers(o.feed.id) + len(o.waiting)
	}
	return len(r.orders), subscribers
}

// backoff doubles a delay from min to max, with jitter so that instances
// that lost Redis together don't all come back in the same millisecond.
type backoff struct {
	min, max, cur time.Duration
}

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	return b.cur/2 + rand.N(b.cur/2+1)
}

func (b *backoff) reset() { b.cur = 0 }
