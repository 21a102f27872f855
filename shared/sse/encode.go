package sse

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Message is one event of an event stream.
type Message struct {
	ID    string // "" writes no id field
	Event string // "" writes no event field (clients then see type "message")
	Data  string
}

var (
	// ErrInvalidID reports an ID containing CR, LF or NUL.
	ErrInvalidID = errors.New("sse: id contains CR, LF or NUL")
	// ErrInvalidEvent reports an Event containing CR or LF.
	ErrInvalidEvent = errors.New("sse: event contains CR or LF")
	// ErrInvalidData reports Data containing CR. Unlike LF, which becomes
	// several data lines, a CR cannot be carried: every decoder reads it
	// as a line break and hands back LF.
	ErrInvalidData = errors.New("sse: data contains CR")
	// ErrLineTooLong is returned by the Decoder for a line longer than its limit.
	ErrLineTooLong = errors.New("sse: line too long")
	// ErrEventTooLarge is returned by the Decoder for an event larger than
	// its limit (SetMaxEventSize).
	ErrEventTooLarge = errors.New("sse: event too large")
)

// AppendMessage appends the wire form of m to b: an id line if m.ID is set,
// an event line if m.Event is set, one data line per LF-separated line of
// m.Data (a single empty one if m.Data is empty) and the blank line that
// dispatches the event. If m cannot be represented it returns b unchanged
// and ErrInvalidID, ErrInvalidEvent or ErrInvalidData, checked in that order.
func AppendMessage(b []byte, m Message) ([]byte, error) {
	switch {
	case strings.ContainsAny(m.ID, "\r\n\x00"):
		return b, ErrInvalidID
	case strings.ContainsAny(m.Event, "\r\n"):
		return b, ErrInvalidEvent
	case strings.IndexByte(m.Data, '\r') >= 0:
		return b, ErrInvalidData
	}

	// Grow once up front so a small b is reallocated at most once.
	n := len(m.Data) + (strings.Count(m.Data, "\n")+1)*len("data: \n") + 1
	if m.ID != "" {
		n += len("id: \n") + len(m.ID)
	}
	if m.Event != "" {
		n += len("event: \n") + len(m.Event)
	}
	b = slices.Grow(b, n)

	if m.ID != "" {
		b = append(b, "id: "...)
		b = append(b, m.ID...)
		b = append(b, '\n')
	}
	if m.Event != "" {
		b = append(b, "event: "...)
		b = append(b, m.Event...)
		b = append(b, '\n')
	}
	// Always write the space after the colon: the decoder strips exactly
	// one, so values that start with a space survive the round trip.
	data := m.Data
	for {
		line, rest, more := strings.Cut(data, "\n")
		b = append(b, "data: "...)
		b = append(b, line...)
		b = append(b, '\n')
		if !more {
			break
		}
		data = rest
	}
	return append(b, '\n'), nil
}

// AppendRetry appends a frame setting the client's reconnection time to d,
// truncated to whole milliseconds; a negative d is written as 0.
func AppendRetry(b []byte, d time.Duration) []byte {
	b = append(b, "retry: "...)
	b = strconv.AppendInt(b, max(d.Milliseconds(), 0), 10)
	return append(b, "\n\n"...)
}

// AppendComment appends text as comment lines. Each line break in text (CR,
// LF or CRLF) starts a new comment line, because a bare line break would
// end the comment and turn the rest of text into fields.
func AppendComment(b []byte, text string) []byte {
	for {
		i := strings.IndexAny(text, "\r\n")
		if i < 0 {
			break
		}
		b = append(b, ": "...)
		b = append(b, text[:i]...)
		b = append(b, '\n')
		if text[i] == '\r' && i+1 < len(text) && text[i+1] == '\n' {
			i++
		}
		text = text[i+1:]
	}
	b = append(b, ": "...)
	b = append(b, text...)
	return append(b, '\n')
}
