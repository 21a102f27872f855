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
	// Publish appends status to the order's history if order.CheckTransition
	// allows it from the current status. Check and append are one atomic step:
	// of two racing publishers at most one moves the order.
	Publish(ctx context.Context, id uuid.UUID, status order.Status) (Event, error)

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

// Options are the knobs every implementation honours.
type Options struct {
	// SubscriberBuffer is how many live events may wait for a subscriber
	// before it is dropped as too slow (default 8: more than an order's whole
	// life, so only a reader that is stuck is ever dropped).
	SubscriberBuffer int
	// Retention is how long a finished order stays readable (default 24h).
	Retention time.Duration
	// IdleExpiry is how long an order that never finishes is kept after its
	// last event (default 30 days), so that abandoned orders do not fill
	// the broker. The in-process broker keeps one while it has subscribers.
	IdleExpiry time.Duration
}

// defaultIdleExpiry is Options.IdleExpiry's default.
const defaultIdleExpiry = 30 * 24 * time.Hour

func (o Options) withDefaults() Options {
	if o.SubscriberBuffer <= 0 {
		o.SubscriberBuffer = 8
	}
	if o.Retention <= 0 {
		o.Retention = 24 * time.Hour
	}
	if o.IdleExpiry <= 0 {
		o.IdleExpiry = defaultIdleExpiry
	}
	return o
}

// Event is one entry of an order's history.
type Event struct {
	ID     string // EventID.String(): opaque to clients
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
	return Event{ID: id.String(), Update: u, Data: string(data)}, nil
}
