package sse

import (
	"bufio"
	"bytes"
	"io"
	"math"
	"time"
)

const (
	defaultMaxLineLength = 1 << 20
	defaultMaxEventSize  = 4 << 20
)

var bom = []byte("\xEF\xBB\xBF")

// Decoder reads an event stream following the "event stream interpretation"
// rules of the WHATWG HTML standard. It works on bytes and does not
// validate UTF-8. It is not safe for concurrent use.
type Decoder struct {
	// OnComment, if set, is called with the text of each comment line,
	// after the ":" and one optional leading space.
	OnComment func(text string)

	r        *bufio.Reader
	maxLine  int
	maxEvent int
	err      error // sticky: after an error the position in the stream is unknown
	started  bool  // the BOM check has been done
	// skipLF is set after a line ending in CR. Waiting for the next byte
	// to tell CR from CRLF would stall a live stream, so the line is
	// handled at once and an LF that arrives later is dropped instead.
	skipLF bool

	line  []byte // a line that spans more than one buffer fill
	data  []byte // data buffer
	event []byte // event type buffer
	id    []byte // last event ID buffer

	lastID    string // last event ID string, set when an event is dispatched
	lastEvent string // event type of the last event, kept to avoid reallocating it
	retry     time.Duration
	hasRetry  bool
}

// NewDecoder returns a Decoder reading from r.
func NewDecoder(r io.Reader) *Decoder {
	return &Decoder{r: bufio.NewReader(r), maxLine: defaultMaxLineLength, maxEvent: defaultMaxEventSize}
}

// SetMaxEventSize sets the most an event may hold (default 4 MiB): its data
// (the data lines joined with LF, plus one LF), event type and id together.
// A line is capped by SetMaxLineLength, but an event may have any number of
// data lines, so without this cap a stream of short lines that never ends
// its event grows the decoder's memory without bound. Next returns
// ErrEventTooLarge for a larger one. n <= 0 restores the default.
func (d *Decoder) SetMaxEventSize(n int) {
	if n <= 0 {
		n = defaultMaxEventSize
	}
	d.maxEvent = n
}

// SetMaxLineLength sets the longest line, excluding its line ending, that
// the decoder accepts (default 1 MiB); Next returns ErrLineTooLong for a
// longer one. n <= 0 restores the default.
func (d *Decoder) SetMaxLineLength(n int) {
	if n <= 0 {
		n = defaultMaxLineLength
	}
	d.maxLine = n
}

// Retry returns the reconnection time from the last valid retry field, and
// whether there was one.
func (d *Decoder) Retry() (time.Duration, bool) {
	return d.retry, d.hasRetry
}

// LastEventID returns the ID a reconnecting client should send as
// Last-Event-ID: the last event ID buffer as of the last blank line. An id
// field of an event that was never completed does not count, as in browsers.
func (d *Decoder) LastEventID() string {
	return d.lastID
}

// Next returns the next dispatched event. Its ID is the last event ID at
// dispatch, which carries over from earlier events until an id field
// changes it; Event is "" when the event had no event field; Data has no
// trailing LF. At the end of input Next returns io.EOF, discarding an
// unterminated final event; other read errors are returned as they are.
// Once Next has returned an error it keeps returning it.
//
// In the steady state Next allocates once per event.
func (d *Decoder) Next() (Message, error) {
	if d.err != nil {
		return Message{}, d.err
	}
	if !d.started {
		d.started = true
		if err := d.skipBOM(); err != nil {
			d.err = err
			return Message{}, err
		}
	}
	for {
		line, err := d.readLine()
		if err != nil {
			d.err = err
			return Message{}, err
		}
		if len(line) == 0 {
			if m, ok := d.dispatch(); ok {
				return m, nil
			}
			continue
		}
		d.processLine(line)
		if len(d.data)+len(d.event)+len(d.id) > d.maxEvent {
			d.err = ErrEventTooLarge
			return Message{}, d.err
		}
	}
}

// skipBOM drops a byte order mark at the start of the stream. It waits for
// more input only while what has arrived is still a prefix of the BOM, so
// a stream that starts with anything else is never held up.
func (d *Decoder) skipBOM() error {
	for n := 1; n <= len(bom); n++ {
		p, err := d.r.Peek(n)
		if len(p) < n {
			return err
		}
		if p[n-1] != bom[n-1] {
			return nil
		}
	}
	_, err := d.r.Discard(len(bom))
	return err
}

// readLine returns the next line without its line ending. The result
// aliases either the bufio buffer or d.line and is valid only until the next
// read.
func (d *Decoder) readLine() ([]byte, error) {
	d.line = d.line[:0]
	for {
		if d.r.Buffered() == 0 {
			// Peek(1) returns as soon as any input is available.
			if _, err := d.r.Peek(1); err != nil {
				return nil, err
			}
		}
		buf, _ := d.r.Peek(d.r.Buffered())
		if d.skipLF {
			d.skipLF = false
			if buf[0] == '\n' {
				d.r.Discard(1)
				continue
			}
		}
		i := bytes.IndexAny(buf, "\r\n")
		if i < 0 {
			if len(d.line)+len(buf) > d.maxLine {
				return nil, ErrLineTooLong
			}
			d.line = append(d.line, buf...)
			d.r.Discard(len(buf))
			continue
		}
		if len(d.line)+i > d.maxLine {
			return nil, ErrLineTooLong
		}
		d.skipLF = buf[i] == '\r'
		line := buf[:i]
		if len(d.line) > 0 {
			d.line = append(d.line, line...)
			line = d.line
		}
		// Discard only advances the read position; line stays intact
		// until the next Peek refills the buffer.
		d.r.Discard(i + 1)
		return line, nil
	}
}

func (d *Decoder) processLine(line []byte) {
	if line[0] == ':' {
		if d.OnComment != nil {
			d.OnComment(string(trimSpace(line[1:])))
		}
		return
	}
	name, value := line, []byte(nil)
	if i := bytes.IndexByte(line, ':'); i >= 0 {
		name, value = line[:i], trimSpace(line[i+1:])
	}
	switch string(name) {
	case "event":
		d.event = append(d.event[:0], value...)
	case "data":
		d.data = append(d.data, value...)
		d.data = append(d.data, '\n')
	case "id":
		if bytes.IndexByte(value, 0) < 0 {
			d.id = append(d.id[:0], value...)
		}
	case "retry":
		if r, ok := parseRetry(value); ok {
			d.retry, d.hasRetry = r, true
		}
	}
}

// dispatch handles a blank line and reports whether it produced an event.
func (d *Decoder) dispatch() (Message, bool) {
	idChanged := string(d.id) != d.lastID
	if len(d.data) == 0 {
		if idChanged {
			d.lastID = string(d.id)
		}
		d.event = d.event[:0]
		return Message{}, false
	}

	// Ids usually change with every event, so rather than a string each
	// for data, id and event type, build one string holding all that
	// changed and slice it. A cached id or type may then keep one earlier
	// event's data alive, which is no more than d.data already retains.
	buf := d.data[:len(d.data)-1] // drop the final LF
	dataEnd := len(buf)
	eventChanged := string(d.event) != d.lastEvent
	if eventChanged {
		buf = append(buf, d.event...)
	}
	eventEnd := len(buf)
	if idChanged {
		buf = append(buf, d.id...)
	}
	s := string(buf)
	if eventChanged {
		d.lastEvent = s[dataEnd:eventEnd]
	}
	if idChanged {
		d.lastID = s[eventEnd:]
	}
	d.data = buf[:0]
	d.event = d.event[:0]
	return Message{ID: d.lastID, Event: d.lastEvent, Data: s[:dataEnd]}, true
}

// parseRetry accepts only ASCII digits, as the standard requires; values
// too large for a time.Duration saturate rather than wrap.
func parseRetry(v []byte) (time.Duration, bool) {
	const maxMS = math.MaxInt64 / int64(time.Millisecond)
	if len(v) == 0 {
		return 0, false
	}
	var ms int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		ms = min(ms*10+int64(c-'0'), maxMS)
	}
	return time.Duration(ms) * time.Millisecond, true
}

func trimSpace(b []byte) []byte {
	if len(b) > 0 && b[0] == ' ' {
		return b[1:]
	}
	return b
}
