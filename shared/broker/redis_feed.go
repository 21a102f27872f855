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

// The live feed: one pub/sub connection per instance, subscribed to the
// channels of the orders that have local subscribers.
//
// Every order with local subscribers has a redisOrder holding a copy of its
// history that is always a gap-free prefix of the stream: events are appended
// only from the stream itself (XRANGE), or from a live message or this
// instance's own publish reply whose "previous id" is the copy's last id
// (the latter so that local subscribers have an event by the time Publish
// returns). A message that does not chain shows that some
// were missed; the order then catches up from the stream. Subscribers are
// served their history from the copy and then every event appended to it, so
// there is no boundary between history and live at which an event could fall
// through or arrive twice; each subscriber also skips ids at or before its
// position, which covers positions the copy has not reached yet.
//
// An order is "live" once Redis has confirmed the SUBSCRIBE for its channel
// on the current connection and it has caught up from the stream after that
// confirmation: from then on, nothing appended to the stream can escape it.
// A new connection makes every order subscribe and catch up again; until an
// order is live, its messages wait in a small buffer and new subscribers wait
// (up to the timeout).

type orderState uint8

const (
	orderSubscribing orderState = iota // waiting for Redis to confirm the SUBSCRIBE
	orderCatchingUp                    // reading the stream after the copy's last id
	orderLive
)

// maxBuffered bounds the messages an order keeps while it catches up; past
// it they are dropped and the order catches up once more.
const maxBuffered = 64

type redisOrder struct {
	id      uuid.UUID
	channel string

	// The copy of the history: a gap-free prefix of the stream.
	ids      []EventID
	events   []Event
	finished bool // the copy ends with a terminal event

	state    orderState
	epoch    uint64 // bumped when a catch-up under way becomes moot
	buffered []liveMessage
	again    bool // buffered messages were dropped: catch up once more

	subs    map[*redisSub]struct{} // receiving
	waiting map[*redisSub]struct{} // in Subscribe, until the order is live
}

func (o *redisOrder) tail() EventID {
	if len(o.ids) == 0 {
		return EventID{}
	}
	return o.ids[len(o.ids)-1]
}

type redisSub struct {
	sub   *Subscription
	pos   EventID       // the last id it has, as history or live
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

type psCommand struct {
	ps        *redis.PubSub
	subscribe bool // else unsubscribe
	channels  []string
}

func (r *Redis) Subscribe(ctx context.Context, id uuid.UUID, after EventID) (*Subscription, error) {
	r.mu.Lock()
	if r.closed.Load() {
		r.mu.Unlock()
		return nil, ErrClosed
	}
	if r.feed == feedDown {
		err := r.feedErr
		r.mu.Unlock()
		return nil, fmt.Errorf("%w: subscribe to order %s: live feed from %s is down: %w", ErrUnavailable, id, r.addr, err)
	}
	o := r.localOrder(id)
	s := &redisSub{sub: newSubscription(r.opts.SubscriberBuffer), pos: after}
	s.sub.cancel = func() { r.unsubscribe(o, s) }
	if o.state == orderLive {
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
	var err error
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
	return nil, fmt.Errorf("%w: subscribe to order %s at %s: %w", ErrUnavailable, id, r.addr, err)
}

// localOrder returns the order's entry, making it (and subscribing to its
// channel) if it has none. The caller holds r.mu.
func (r *Redis) localOrder(id uuid.UUID) *redisOrder {
	ch := r.channel(id)
	if o := r.orders[ch]; o != nil {
		return o
	}
	o := &redisOrder{
		id:      id,
		channel: ch,
		subs:    make(map[*redisSub]struct{}),
		waiting: make(map[*redisSub]struct{}),
	}
	r.orders[ch] = o
	if r.ps != nil {
		r.pendingConfirms[ch]++
		r.enqueue(psCommand{ps: r.ps, subscribe: true, channels: []string{ch}})
	}
	// Without a connection, the reader subscribes it when it connects.
	return o
}

// serve gives s its history from the order's copy and registers it, or ends
// it at once if the order is finished. The caller holds r.mu.
func (r *Redis) serve(o *redisOrder, s *redisSub) {
	for i, id := range o.ids {
		if id.Compare(s.pos) > 0 {
			s.sub.History = append([]Event(nil), o.events[i:]...)
			s.pos = o.tail()
			break
		}
	}
	if o.finished {
		s.sub.Finished = true
		s.sub.end(nil)
		return
	}
	o.subs[s] = struct{}{}
}

func (r *Redis) unsubscribe(o *redisOrder, s *redisSub) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s.sub.end(nil)
	delete(o.subs, s)
	delete(o.waiting, s)
	r.release(o)
}

// release forgets an order nobody local watches any more. The caller holds r.mu.
func (r *Redis) release(o *redisOrder) {
	if len(o.subs) > 0 || len(o.waiting) > 0 || r.orders[o.channel] != o {
		return
	}
	delete(r.orders, o.channel)
	o.epoch++ // a catch-up under way is moot
	if r.ps != nil {
		r.enqueue(psCommand{ps: r.ps, channels: []string{o.channel}})
	}
}

// enqueue hands a pub/sub command to the writer. The caller holds r.mu.
func (r *Redis) enqueue(c psCommand) {
	r.psQueue = append(r.psQueue, c)
	select {
	case r.psWake <- struct{}{}:
	default:
	}
}

// writeLoop sends SUBSCRIBE and UNSUBSCRIBE commands in queue order. A
// failed write closes the connection, so that the reader reconnects and
// every order catches up.
func (r *Redis) writeLoop() {
	defer r.wg.Done()
	for {
		select {
		case <-r.stop:
			return
		case <-r.psWake:
		}
		r.mu.Lock()
		queue := r.psQueue
		r.psQueue = nil
		r.mu.Unlock()
		for len(queue) > 0 {
			// Merge a run of like commands into one round of writes.
			c := psCommand{ps: queue[0].ps, subscribe: queue[0].subscribe}
			for len(queue) > 0 && queue[0].ps == c.ps && queue[0].subscribe == c.subscribe {
				c.channels = append(c.channels, queue[0].channels...)
				queue = queue[1:]
			}
			ctx, cancel := context.WithTimeout(r.ctx, r.timeout)
			var err error
			if c.subscribe {
				err = c.ps.Subscribe(ctx, c.channels...)
			} else {
				err = c.ps.Unsubscribe(ctx, c.channels...)
			}
			cancel()
			if err != nil && !r.closed.Load() {
				r.log.Debug("pub/sub command failed; reconnecting", "subscribe", c.subscribe, "channels", len(c.channels), "err", err)
				c.ps.Close()
			}
		}
	}
}

// readLoop owns the pub/sub connection: it dials (with capped backoff),
// receives, and after a failure reconnects and makes every order catch up.
func (r *Redis) readLoop() {
	defer r.wg.Done()
	b := backoff{min: 50 * time.Millisecond, max: time.Second}
	for {
		ps := r.connect(&b)
		if ps == nil {
			return // closed
		}
		err := r.receive(ps)
		ps.Close()
		if r.closed.Load() {
			return
		}
		r.disconnected(err)
	}
}

// connect dials until it gets a pub/sub connection, subscribes it to every
// local order's channel and returns it; nil once the broker is closed.
func (r *Redis) connect(b *backoff) *redis.PubSub {
	warned := false
	for {
		if r.closed.Load() {
			return nil
		}
		ps := r.client.Subscribe(r.ctx)
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
			wasDown := r.feed == feedDown
			r.ps, r.feed, r.feedErr = ps, feedUp, nil
			channels := make([]string, 0, len(r.orders))
			for ch := range r.orders {
				channels = append(channels, ch)
				r.pendingConfirms[ch] = 1
			}
			if len(channels) > 0 {
				r.enqueue(psCommand{ps: ps, subscribe: true, channels: channels})
			}
			r.mu.Unlock()
			if wasDown {
				r.log.Info("live feed reconnected", "orders", len(channels))
			}
			b.reset()
			return ps
		}
		ps.Close()
		if r.closed.Load() {
			return nil // the dial failed because Close canceled it
		}
		r.mu.Lock()
		r.feed, r.feedErr = feedDown, err
		r.mu.Unlock()
		if !warned {
			r.log.Warn("live feed cannot connect; retrying", "err", err)
			warned = true
		}
		select {
		case <-r.stop:
			return nil
		case <-time.After(b.next()):
		}
	}
}

// receive reads the connection until it fails. A connection that is silent
// for a while is pinged; no answer by the next check means it is dead.
func (r *Redis) receive(ps *redis.PubSub) error {
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
			if m.Kind == "subscribe" {
				r.confirmed(ps, m.Channel)
			}
		case *redis.Message:
			r.dispatch(m.Channel, m.Payload)
		}
	}
}

// disconnected forgets the connection: every order must subscribe and catch
// up again. Subscribers stay registered and get what they missed later.
func (r *Redis) disconnected(err error) {
	r.disconnects.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ps, r.feed, r.feedErr = nil, feedConnecting, err
	clear(r.pendingConfirms)
	r.psQueue = nil
	for _, o := range r.orders {
		o.state = orderSubscribing
		o.epoch++
		o.buffered, o.again = nil, false
	}
	r.log.Warn("live feed lost; reconnecting", "err", err, "orders", len(r.orders))
}

// confirmed records Redis's confirmation of a SUBSCRIBE.
func (r *Redis) confirmed(ps *redis.PubSub, ch string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ps != r.ps {
		return
	}
	if n := r.pendingConfirms[ch]; n > 1 {
		r.pendingConfirms[ch] = n - 1
		return // a later SUBSCRIBE of the same channel is still on its way
	}
	delete(r.pendingConfirms, ch)
	if o := r.orders[ch]; o != nil && o.state == orderSubscribing {
		r.catchUp(o)
	}
}

// catchUp reads the stream after the copy's last id, in a goroutine of its
// own so that the reader goes on. The caller holds r.mu.
func (r *Redis) catchUp(o *redisOrder) {
	o.state = orderCatchingUp
	o.epoch++
	epoch, from := o.epoch, o.tail()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		b := backoff{min: 50 * time.Millisecond, max: time.Second}
		warned := false
		for {
			evs, err := r.history(r.ctx, o.id, from)
			r.mu.Lock()
			if r.closed.Load() || o.epoch != epoch || r.orders[o.channel] != o {
				r.mu.Unlock()
				return
			}
			if err == nil {
				r.caughtUp(o, evs)
				r.release(o)
				r.mu.Unlock()
				return
			}
			r.mu.Unlock()
			if !warned {
				r.log.Warn("catching up from the stream failed; retrying", "order", o.id, "err", err)
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

// caughtUp appends what the stream had, serves the waiting subscribers and
// replays the messages that came meanwhile. The caller holds r.mu.
func (r *Redis) caughtUp(o *redisOrder, evs []Event) {
	tail := o.tail()
	for _, ev := range evs {
		id, _ := ParseEventID(ev.ID) // made from a parsed id
		if id.Compare(tail) > 0 {
			if len(o.subs) > 0 {
				r.recovered.Add(1)
			}
			r.appendEvent(o, id, ev)
			tail = id
		}
	}
	o.state = orderLive
	for s := range o.waiting {
		r.serve(o, s)
		close(s.ready)
	}
	clear(o.waiting)
	buffered, again := o.buffered, o.again
	o.buffered, o.again = nil, false
	for _, m := range buffered {
		r.apply(o, m)
	}
	if again && o.state == orderLive {
		r.catchUp(o)
	}
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
	if o := r.orders[ch]; o != nil {
		r.apply(o, m)
		r.release(o)
	}
}

// deliverOwn hands an event this instance just published to its local
// subscribers at once, if it chains onto the order's copy, so that they have
// it when Publish returns; its pub/sub message, arriving later, is then a
// duplicate. If it does not chain, the copy is behind and the feed brings
// both what is missing and this event.
func (r *Redis) deliverOwn(id uuid.UUID, prev EventID, ev Event) {
	evID, err := ParseEventID(ev.ID)
	if err != nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	o := r.orders[r.channel(id)]
	if o == nil || o.state != orderLive || o.tail() != prev {
		return
	}
	r.appendEvent(o, evID, ev)
	r.release(o)
}

// apply appends a live message that chains onto the copy, skips one it
// already has, and catches up on a gap. The caller holds r.mu.
func (r *Redis) apply(o *redisOrder, m liveMessage) {
	if o.state != orderLive {
		if len(o.buffered) >= maxBuffered {
			o.buffered, o.again = nil, true
		}
		o.buffered = append(o.buffered, m)
		return
	}
	tail := o.tail()
	switch {
	case m.id.Compare(tail) <= 0: // already in the copy
	case m.prev == tail:
		ev, err := newRedisEvent(o.id, m.id, m.status, m.ts)
		if err != nil {
			r.log.Warn("ignoring a live message", "order", o.id, "err", err)
			return
		}
		r.appendEvent(o, m.id, ev)
	default: // some were missed
		o.buffered = append(o.buffered, m)
		r.catchUp(o)
	}
}

// appendEvent adds ev to the copy and delivers it. The caller holds r.mu.
func (r *Redis) appendEvent(o *redisOrder, id EventID, ev Event) {
	o.ids = append(o.ids, id)
	o.events = append(o.events, ev)
	for s := range o.subs {
		if id.Compare(s.pos) <= 0 {
			continue // it resumed after this one
		}
		if !s.sub.deliver(ev) {
			delete(o.subs, s) // too slow: dropped
			continue
		}
		s.pos = id
	}
	if ev.Update.Status.Terminal() {
		o.finished = true
		for s := range o.subs {
			s.sub.end(nil)
		}
		clear(o.subs)
	}
}

// stats counts local orders and subscribers; tests use it to prove nothing leaks.
func (r *Redis) stats() (orders, subscribers int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, o := range r.orders {
		subscribers += len(o.subs) + len(o.waiting)
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
