package broker

import (
	"errors"
	"strconv"
	"strings"
)

// EventID orders an order's events: milliseconds since the epoch, then a
// sequence number within that millisecond. It has the form of a Redis stream
// id, so both brokers issue and accept the same ids, and an id issued by any
// instance is a valid position on all of them. The zero value is "before
// everything".
type EventID struct {
	MS  uint64
	Seq uint64
}

var errEventID = errors.New(`event id must look like "<milliseconds>-<sequence>"`)

// ParseEventID parses the String form. It is strict (digits and one dash),
// so anything the service could not have issued is refused.
func ParseEventID(s string) (EventID, error) {
	ms, seq, ok := strings.Cut(s, "-")
	if !ok || !digits(ms) || !digits(seq) {
		return EventID{}, errEventID
	}
	m, err1 := strconv.ParseUint(ms, 10, 64)
	q, err2 := strconv.ParseUint(seq, 10, 64)
	if err1 != nil || err2 != nil {
		return EventID{}, errEventID
	}
	return EventID{MS: m, Seq: q}, nil
}

func digits(s string) bool {
	if s == "" || len(s) > 20 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func (id EventID) String() string {
	b := make([]byte, 0, 24)
	b = strconv.AppendUint(b, id.MS, 10)
	b = append(b, '-')
	return string(strconv.AppendUint(b, id.Seq, 10))
}

// IsZero reports whether id is the position before every event.
func (id EventID) IsZero() bool { return id == EventID{} }

// Compare returns -1, 0 or +1 as id is before, equal to or after other.
func (id EventID) Compare(other EventID) int {
	switch {
	case id.MS < other.MS, id.MS == other.MS && id.Seq < other.Seq:
		return -1
	case id == other:
		return 0
	}
	return 1
}

// next returns the id for an event appended at nowMS after last: the clock's
// millisecond if it moved on, else last's millisecond with the next sequence,
// so ids increase strictly even when the clock stalls or steps back.
func next(last EventID, nowMS uint64) EventID {
	if nowMS > last.MS {
		return EventID{MS: nowMS}
	}
	return EventID{MS: last.MS, Seq: last.Seq + 1}
}
