package httpapi

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/orderstream/orderstream/shared/broker"
	"github.com/orderstream/orderstream/shared/order"
)

// MaxBodyBytes is the largest publish body the contract accepts (413 beyond);
// a queue message carrying one update is held to the same bound.
const MaxBodyBytes = 64 << 10

// PublishInput is one status change as a publisher sends it, before any
// check: over HTTP the path's {id}, the body's status and the Idempotency-Key
// header; from a queue (functions/ingest) a message's fields. Both go
// through Publish, so that they accept and refuse exactly the same things.
type PublishInput struct {
	OrderID        string
	Status         *string // nil: absent
	IdempotencyKey string  // "": none
}

// InputError is a PublishInput that can never be published, whatever the
// broker's state: a 400 over HTTP, a message that retrying cannot help.
type InputError struct {
	Field string // "orderId", "status" or "idempotencyKey"
	Err   error
}

func (e *InputError) Error() string { return e.Field + ": " + e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }

// errStatusRequired is the problem with an input that names no status.
var errStatusRequired = errors.New("is required")

// Check returns the order and the broker request that in names, or an
// *InputError for the first field that is wrong (id, status, key: the order
// POST /orders/{id}/events has always checked them in).
func (in PublishInput) Check() (uuid.UUID, broker.PublishRequest, error) {
	id, err := order.ParseID(in.OrderID)
	if err != nil {
		return uuid.Nil, broker.PublishRequest{}, &InputError{"orderId", err}
	}
	if in.Status == nil {
		return uuid.Nil, broker.PublishRequest{}, &InputError{"status", errStatusRequired}
	}
	status, err := order.ParseStatus(*in.Status)
	if err != nil {
		return uuid.Nil, broker.PublishRequest{}, &InputError{"status", err}
	}
	if in.IdempotencyKey != "" {
		if err := broker.CheckIdempotencyKey(in.IdempotencyKey); err != nil {
			return uuid.Nil, broker.PublishRequest{}, &InputError{"idempotencyKey", err}
		}
	}
	return id, broker.PublishRequest{Status: status, IdempotencyKey: in.IdempotencyKey}, nil
}

// Publish is the one path by which a status change enters the service,
// whichever way it came: it checks in, then publishes it. Its errors are an
// *InputError (malformed), or what broker.Publish answers: an
// *order.TransitionError (the rules refuse it: 409), a
// *broker.IdempotencyKeyError (the key was used for another status: 422),
// or anything else: the broker cannot serve now (503, retry).
func Publish(ctx context.Context, b broker.Broker, in PublishInput) (broker.Event, error) {
	id, req, err := in.Check()
	if err != nil {
		return broker.Event{}, err
	}
	ev, err := b.Publish(ctx, id, req)
	if err != nil {
		return broker.Event{}, fmt.Errorf("publish %s to order %s: %w", req.Status, id, err)
	}
	return ev, nil
}
