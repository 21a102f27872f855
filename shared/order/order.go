// Package order holds the domain of orderstream: an order's statuses, the
// rules for moving between them, and the update that is published and streamed.
package order

import (
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// Status is where an order stands. It is serialized as its name, never as a
// number, so that clients and stored history don't depend on declaration order.
// The zero value means "no status yet".
type Status uint8

const (
	Created Status = iota + 1
	PaymentConfirmed
	Packed
	Shipped
	OutForDelivery
	Delivered
	Cancelled
)

var names = [...]string{
	Created:          "Created",
	PaymentConfirmed: "PaymentConfirmed",
	Packed:           "Packed",
	Shipped:          "Shipped",
	OutForDelivery:   "OutForDelivery",
	Delivered:        "Delivered",
	Cancelled:        "Cancelled",
}

// Statuses lists every status in contract order.
func Statuses() []Status {
	return []Status{Created, PaymentConfirmed, Packed, Shipped, OutForDelivery, Delivered, Cancelled}
}

// ErrUnknownStatus is returned for a name that is not a status.
var ErrUnknownStatus = errors.New("unknown status")

// ParseStatus returns the status with exactly this name (case-sensitive, as
// the contract spells them).
func ParseStatus(name string) (Status, error) {
	for s := Created; s <= Cancelled; s++ {
		if names[s] == name {
			return s, nil
		}
	}
	return 0, fmt.Errorf("%w %q (want one of Created, PaymentConfirmed, Packed, Shipped, OutForDelivery, Delivered, Cancelled)", ErrUnknownStatus, name)
}

// Valid reports whether s is one of the seven statuses.
func (s Status) Valid() bool { return s >= Created && s <= Cancelled }

func (s Status) String() string {
	if !s.Valid() {
		return fmt.Sprintf("Status(%d)", uint8(s))
	}
	return names[s]
}

// Terminal reports whether nothing may follow s.
func (s Status) Terminal() bool { return s == Delivered || s == Cancelled }

// Next is the status a simulation publishes after s: the next one on the way
// to Delivered. It reports false when s is terminal.
func (s Status) Next() (Status, bool) {
	switch {
	case s == 0:
		return Created, true
	case s.Terminal() || !s.Valid():
		return 0, false
	default:
		return s + 1, true
	}
}

// MarshalText writes the status's name; JSON uses it too.
func (s Status) MarshalText() ([]byte, error) {
	if !s.Valid() {
		return nil, fmt.Errorf("marshal %v: %w", s, ErrUnknownStatus)
	}
	return []byte(names[s]), nil
}

// UnmarshalText accepts exactly the names ParseStatus accepts.
func (s *Status) UnmarshalText(b []byte) error {
	v, err := ParseStatus(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// TransitionError says why an order may not move from Current to Requested.
type TransitionError struct {
	Current   Status // 0 if the order has no status yet (never the case for a refusal)
	Requested Status
}

func (e *TransitionError) Error() string {
	if e.Current.Terminal() {
		return fmt.Sprintf("order is %s, which is final: it cannot become %s", e.Current, e.Requested)
	}
	if e.Requested == Cancelled {
		return fmt.Sprintf("order is %s: it can only be cancelled before it is Shipped", e.Current)
	}
	return fmt.Sprintf("order is %s: it cannot go back or stay at %s", e.Current, e.Requested)
}

// CheckTransition returns nil if an order whose current status is from (0 for
// a new order) may move to to, and a *TransitionError otherwise.
//
// The rules: a new order may start anywhere (the service may join a pipeline
// midway); statuses move forward along Created..Delivered, skipping allowed;
// Cancelled may follow anything before Shipped; Delivered and Cancelled end it.
func CheckTransition(from, to Status) error {
	if !to.Valid() {
		return fmt.Errorf("transition to %v: %w", to, ErrUnknownStatus)
	}
	switch {
	case from == 0:
		return nil
	case from.Terminal():
	case to == Cancelled:
		if from < Shipped {
			return nil
		}
	case to > from:
		return nil
	}
	return &TransitionError{Current: from, Requested: to}
}

// ParseID parses an order id in any form uuid.Parse accepts. Callers print
// it with String, which gives the lowercase 36-character form.
func ParseID(s string) (uuid.UUID, error) {
	id, err := uuid.Parse(s)
	if err != nil {
		return uuid.Nil, fmt.Errorf("order id %q is not a UUID: %w", s, err)
	}
	return id, nil
}

// Update is one accepted status change: the data of every stream event and
// the body of publish answers.
type Update struct {
	OrderID   uuid.UUID `json:"orderId"`
	Status    Status    `json:"status"`
	Timestamp time.Time `json:"timestamp"` // UTC; when the service accepted it
}
