package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/orderstream/orderstream/shared/broker"
	"github.com/orderstream/orderstream/shared/httpapi"
)

// fields are an order's status change as a shop sends it: an SQS message's
// body, or an EventBridge event's detail.
type fields struct {
	OrderID        *string `json:"orderId"`
	Status         *string `json:"status"`
	IdempotencyKey *string `json:"idempotencyKey"`
}

// envelope is a message body read both ways: the fields at the top (a message
// sent to the queue), or an EventBridge event routed to the queue, whose
// detail-type and detail are set.
type envelope struct {
	fields
	DetailType *string         `json:"detail-type"`
	Detail     json.RawMessage `json:"detail"`
}

// derivedKeyPrefix starts the idempotency key of a message that brings none.
const derivedKeyPrefix = "ingest:"

// derivedKey is the idempotency key of a message without one: its status.
// Keys are per order, and an order takes each status at most once in its
// life (statuses only move forward), so the order and the status name the
// update itself. The key is therefore the same whenever the same update comes
// again: SQS delivering a message twice, EventBridge delivering an event
// twice (each time a new SQS message with a new message id), or the shop
// sending it twice (a new message id, and on EventBridge a new event id). A
// message id or an event id would miss the last two, and a hash of the raw
// body would miss any difference in whitespace, field order or extra fields.
// See README.md.
func derivedKey(status string) string { return derivedKeyPrefix + status }

// parseMessage reads a message body into the input Publish takes, holding it
// to what POST /orders/{id}/events accepts: one JSON object within
// httpapi.MaxBodyBytes. Its errors are *httpapi.InputError.
func parseMessage(body string) (httpapi.PublishInput, error) {
	malformed := func(err error) (httpapi.PublishInput, error) {
		return httpapi.PublishInput{}, &httpapi.InputError{Field: "body", Err: err}
	}
	if len(body) > httpapi.MaxBodyBytes {
		return malformed(fmt.Errorf("%d bytes is over the limit of %d", len(body), httpapi.MaxBodyBytes))
	}
	var env envelope
	if err := decodeOne([]byte(body), &env); err != nil {
		return malformed(err)
	}
	f := env.fields
	if env.DetailType != nil && env.Detail != nil {
		// An EventBridge event: the fields are its detail's, whatever the
		// event carries beside them.
		f = fields{}
		if err := decodeOne(env.Detail, &f); err != nil {
			return malformed(fmt.Errorf("the EventBridge event's detail: %w", err))
		}
	}
	in := httpapi.PublishInput{Status: f.Status}
	if f.OrderID != nil {
		in.OrderID = *f.OrderID
	}
	switch {
	case f.IdempotencyKey != nil && *f.IdempotencyKey == "":
		// Present but empty is malformed, as an empty header is; Publish
		// would read "" as no key.
		return httpapi.PublishInput{}, &httpapi.InputError{Field: "idempotencyKey", Err: broker.CheckIdempotencyKey("")}
	case f.IdempotencyKey != nil:
		in.IdempotencyKey = *f.IdempotencyKey
	case f.Status != nil:
		// A status Publish refuses is named before the key is checked.
		in.IdempotencyKey = derivedKey(*f.Status)
	}
	return in, nil
}

// decodeOne decodes exactly one JSON object from b into v.
func decodeOne(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	err := dec.Decode(v)
	if err == nil {
		// Exactly one value: trailing data means the sender meant something else.
		if err = dec.Decode(&struct{}{}); err == io.EOF {
			return nil
		} else if err == nil {
			return errors.New("more than one JSON value")
		}
	}
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return errors.New("empty; want a JSON object")
	case errors.As(err, &typeErr) && typeErr.Field == "":
		return errors.New("not a JSON object")
	case errors.As(err, &typeErr):
		return fmt.Errorf("field %q must be a JSON %s", typeErr.Field, typeErr.Type)
	default:
		return fmt.Errorf("not JSON: %w", err)
	}
}
