// Package broker stores each order's history and fans its events out to
// subscribers. Memory serves one process; Redis (see redis.go) lets several
// instances share orders. Both pass the same conformance suite (brokertest).
package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/orderstream/orderstream/shared/order"
)

// Broker is what the HTTP layer needs from an event store.
//
// Publish refusals are *order.TransitionError; an order that has no events is
// ErrNotFound; a broker that cannot be reached answers errors wrapping
// ErrUnavailable, so callers can tell "try again" from "you asked wrongly".
type Broker interface {
	// Publish appends req.Status to the order's history if
	// order.CheckTransition allows it from the current status. Check and
	// append are one atomic step: of two racing publishers at most one moves
	// the order. A request whose IdempotencyKey the order already accepted
	// answers that first event again (or an *IdempotencyKeyError if it was
	// for another status) and appends nothing; the key is stored with the
	// event in the same atomic step and kept as long as the order.
	Publish(ctx context.Context, id uuid.UUID, req PublishRequest) (Event, error)

	// Latest returns the order's last event.
	Latest(ctx context.Context, id uuid.UUID) (Event, error)

	// Subscribe returns the order's events after position (the zero EventID:
	// all of them) as History, then delivers every later event, in order, none
	// twice, on the subscription's channel. The caller must Close it.
	Subscribe(ctx context.Context, id uuid.UUID, after EventID) (*Subscription, error)

	// Ping reports whether the broker can serve.
	Ping(ctx context.Context) error

	// Close ends every subscription and releases the broker's resources.
	Close() error
}

var (
	ErrNotFound       = errors.New("order not found")
	ErrUnavailable    = errors.New("broker unavailable")
	ErrClosed         = fmt.Errorf("broker closed: %w", ErrUnavailable)
	ErrSlowSubscriber = errors.New("subscriber fell behind and was dropped")
)

// PublishRequest is one status update to publish.
type PublishRequest struct {
	Status order.Status
	// IdempotencyKey, if not empty, names this request so that a publisher
	// retrying it (after a timeout, a lost reply, a 503) gets the event it
	// first made instead of a refused transition. CheckIdempotencyKey says
	// what a key may hold.
	IdempotencyKey string
}

// MaxIdempotencyKeyLen is the longest IdempotencyKey the contract allows.
const MaxIdempotencyKeyLen = 255

// ErrBadIdempotencyKey is the error CheckIdempotencyKey wraps.
var ErrBadIdempotencyKey = errors.New("idempotency key must be 1 to 255 visible ASCII characters")

// CheckIdempotencyKey returns nil if k may be used as an IdempotencyKey:
// 1 to MaxIdempotencyKeyLen visible ASCII characters (0x21 to 0x7e), so that
// it survives every header, log line and Redis field unchanged.
func CheckIdempotencyKey(k string) error {
	if k == "" || len(k) > MaxIdempotencyKeyLen {
		return fmt.Errorf("%w: it has %d", ErrBadIdempotencyKey, len(k))
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x21 || k[i] > 0x7e {
			return fmt.Errorf("%w: byte %d is %#02x", ErrBadIdempotencyKey, i, k[i])
		}
	}
	return nil
}

// check refuses what no broker may store: an unknown status (the
// error order.CheckTransition gives) or a malformed key.
func (req PublishRequest) check() error {
	if !req.Status.Valid() {
		return order.CheckTransition(0, req.Status)
	}
	if req.IdempotencyKey != "" {
		return CheckIdempotencyKey(req.IdempotencyKey)
	}
	return nil
}

// IdempotencyKeyError refuses a publish whose IdempotencyKey the order
// already accepted for another status: the key names a different request.
type IdempotencyKeyError struct {
	Key       string
	Accepted  order.Status // what the key was first used for
	Requested order.Status
}

func (e *IdempotencyKeyError) Error() string {
	return fmt.Sprintf("idempotency key %q was already used for status %s, not %s", e.Key, e.Accepted, e.Requested)
}

// Options are the knobs every implementation honours. Retention and
// IdleExpiry are required (NewMemory panics without them, NewRedis fails):
// their defaults are the settings' (shared/config), which say how long
// users' orders live, so a broker never makes that choice on its own.
type Options struct {
	// SubscriberBuffer is how many live events may wait for a subscriber
	// before it is dropped as too slow (default 8: more than an order's whole
	// life, so only a reader that is stuck is ever dropped). It is a tuning
	// knob, not a setting: no user chooses it, so it keeps a default here.
	SubscriberBuffer int
	// Retention is how long a finished order stays readable; positive.
	Retention time.Duration
	// IdleExpiry is how long an order that never finishes is kept after its
	// last event, so that abandoned orders do not fill the broker; positive.
	// The in-process broker keeps one while it has subscribers; Redis keeps
	// one at least as long as Retention.
	IdleExpiry time.Duration
}

// defaultSubscriberBuffer is Options.SubscriberBuffer's default.
const defaultSubscriberBuffer = 8

// check reports a required value that is missing: a caller's mistake, not
// a user's (shared/config reports theirs).
func (o Options) check() error {
	var errs []error
	if o.Retention <= 0 {
		errs = append(errs, fmt.Errorf("Options.Retention must be positive, got %v", o.Retention))
	}
	if o.IdleExpiry <= 0 {
		errs = append(errs, fmt.Errorf("Options.IdleExpiry must be positive, got %v", o.IdleExpiry))
	}
	return errors.Join(errs...)
}

func (o Options) withDefaults() Options {
	if o.SubscriberBuffer <= 0 {
		o.SubscriberBuffer = defaultSubscriberBuffer
	}
	return o
}

// Event is one entry of an order's history.
type Event struct {
	ID string // Pos.String(): opaque to clients
	// Pos is ID as a value, so that brokers order and compare events
	// without parsing the strings they just built.
	Pos    EventID
	Update order.Update
	// Data is Update as JSON, marshalled once when the event is made, so a
	// fan-out to many subscribers doesn't marshal it once per subscriber.
	Data string
}

// NewEvent builds the event for u with the given id.
func NewEvent(id EventID, u order.Update) (Event, error) {
	data, err := json.Marshal(u)
	if err != nil {
		return Event{}, fmt.Errorf("encode update: %w", err)
	}
	return Event{ID: id.String(), Pos: id, Update: u, Data: string(data)}, nil
}
