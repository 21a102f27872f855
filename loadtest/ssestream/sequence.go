package ssestream

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// statusRank is each status's place on the way to Delivered (0: unknown).
// The loadtest module may import only shared/sse from the service, so the
// contract's list is repeated here rather than taken from shared/order.
var statusRank = map[string]int{
	"Created":          1,
	"PaymentConfirmed": 2,
	"Packed":           3,
	"Shipped":          4,
	"OutForDelivery":   5,
	"Delivered":        6,
	"Cancelled":        7,
}

const rankDelivered = 6

// Update is the part of an event's data the load test reads.
type Update struct {
	OrderID   string    `json:"orderId"`
	Status    string    `json:"status"`
	Timestamp time.Time `json:"timestamp"`
}

// ParseUpdate reads an event's data.
func ParseUpdate(data string) (Update, error) {
	var u Update
	if err := json.Unmarshal([]byte(data), &u); err != nil {
		return Update{}, fmt.Errorf("event data is not an update: %w", err)
	}
	if statusRank[u.Status] == 0 {
		return Update{}, fmt.Errorf("event data has unknown status %q", u.Status)
	}
	if u.Timestamp.IsZero() {
		return Update{}, errors.New("event data has no timestamp")
	}
	return u, nil
}

// Terminal reports whether nothing follows status.
func Terminal(status string) bool { return status == "Delivered" || status == "Cancelled" }

// Sequence checks one order's events as one subscriber sees them across
// reconnects. Event ids are opaque, so duplicates are found by remembering
// every id (an order has at most seven); gaps are found by status, which is
// possible only when a simulation publishes every status from Created on
// (expectAll).
type Sequence struct {
	// ExpectAll: every status from Created on is published.
	ExpectAll bool
	seen      []string
	last      int // rank of the highest status seen
}

// Verdict is what one event tells about the stream.
type Verdict struct {
	Duplicate bool // its id was seen before: do not count it again
	Gaps      int  // statuses missing before it
	Backwards bool // a new id with a status at or before one seen already
}

// Observe checks the next event.
func (s *Sequence) Observe(id, status string) Verdict {
	for _, old := range s.seen {
		if old == id {
			return Verdict{Duplicate: true}
		}
	}
	s.seen = append(s.seen, id)
	var v Verdict
	rank := statusRank[status]
	if !s.ExpectAll || rank == 0 {
		return v
	}
	switch {
	case rank > rankDelivered: // Cancelled ends the walk anywhere
	case rank <= s.last:
		v.Backwards = true
	case rank > s.last+1:
		v.Gaps = rank - s.last - 1
	}
	s.last = max(s.last, rank)
	return v
}
