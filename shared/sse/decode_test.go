package sse

import (
	"errors"
	"io"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// result is everything observable from decoding a whole stream.
type result struct {
	Msgs     []Message
	Comments []string
	LastID   string
	Retry    time.Duration
	HasRetry bool
	Err      error
}

// decodeAll runs d to its first error. It fails the test if Next returns
// more events than the input has bytes, which would mean it does not
// terminate.
func decodeAll(t *testing.T, r io.Reader, inputLen, maxLine, maxEvent int) result {
	t.Helper()
	d := NewDecoder(r)
	d.SetMaxLineLength(maxLine) // 0: the default
	d.SetMaxEventSize(maxEvent)
	var res result
	d.OnComment = func(s string) { res.Comments = append(res.Comments, s) }
	for {
		m, err := d.Next()
		if err != nil {
			res.Err = err
			break
		}
		res.Msgs = append(res.Msgs, m)
		if len(res.Msgs) > inputLen {
			t.Fatalf("more events than input bytes (%d)", inputLen)
		}
	}
	if _, err := d.Next(); err != res.Err {
		t.Errorf("Next after error = %v, want the same error %v", err, res.Err)
	}
	res.LastID = d.LastEventID()
	res.Retry, res.HasRetry = d.Retry()
	return res
}

// readers delivers in through differently chunked readers, so line endings
// and the BOM also get split across reads.
func readers(in string) map[string]io.Reader {
	return map[string]io.Reader{
		"whole":    strings.NewReader(in),
		"one byte": iotest.OneByteReader(strings.NewReader(in)),
		"data+EOF": iotest.DataErrReader(iotest.HalfReader(strings.NewReader(in))),
	}
}

func TestDecoder(t *testing.T) {
	type M = Message
	tests := []struct {
		name     string
		in       string
		maxLine  int
		maxEvent int
		want     result // Err nil means io.EOF
	}{
		{name: "empty stream", in: ""},
		{name: "LF", in: "data: a\n\n", want: result{Msgs: []M{{Data: "a"}}}},
		{name: "CRLF", in: "data: a\r\n\r\n", want: result{Msgs: []M{{Data: "a"}}}},
		{name: "CR", in: "data: a\r\r", want: result{Msgs: []M{{Data: "a"}}}},
		{name: "mixed endings", in: "data: a\r\ndata: b\rdata: c\n\r\n", want: result{Msgs: []M{{Data: "a\nb\nc"}}}},
		{name: "CR then CRLF", in: "data: a\r\r\ndata: b\n\n", want: result{Msgs: []M{{Data: "a"}, {Data: "b"}}}},
		{name: "LF then CR", in: "data: a\n\rdata: b\r\n\n", want: result{Msgs: []M{{Data: "a"}, {Data: "b"}}}},
		{name: "CR at EOF ends the line", in: "data: a\n\r", want: result{Msgs: []M{{Data: "a"}}}},
		{name: "BOM", in: "\xEF\xBB\xBFdata: a\n\n", want: result{Msgs: []M{{Data: "a"}}}},
		{name: "only one BOM stripped", in: "\xEF\xBB\xBF\xEF\xBB\xBFdata: a\n\ndata: b\n\n", want: result{Msgs: []M{{Data: "b"}}}},
		{name: "BOM later is not stripped", in: "data: a\n\n\xEF\xBB\xBFdata: b\n\n", want: result{Msgs: []M{{Data: "a"}}}},
		{name: "partial BOM", in: "\xEF\xBBdata: a\n\ndata: b\n\n", want: result{Msgs: []M{{Data: "b"}}}},
		{name: "data without colon", in: "data\n\n", want: result{Msgs: []M{{Data: ""}}}},
		{name: "two data without colon", in: "data\ndata\n\n", want: result{Msgs: []M{{Data: "\n"}}}},
		{name: "no space", in: "data:x\n\n", want: result{Msgs: []M{{Data: "x"}}}},
		{name: "one space", in: "data: x\n\n", want: result{Msgs: []M{{Data: "x"}}}},
		{name: "two spaces", in: "data:  x\n\n", want: result{Msgs: []M{{Data: " x"}}}},
		{name: "trailing space kept", in: "data: x \n\n", want: result{Msgs: []M{{Data: "x "}}}},
		{name: "colon in value", in: "data: a:b\n\n", want: result{Msgs: []M{{Data: "a:b"}}}},
		{name: "data lines joined", in: "data: a\ndata: b\ndata:\n\n", want: result{Msgs: []M{{Data: "a\nb\n"}}}},
		{
			name: "comments",
			in:   ": one\n:two\n:  three\n:\ndata: a\n: four\n\n",
			want: result{Msgs: []M{{Data: "a"}}, Comments: []string{"one", "two", " three", "", "four"}},
		},
		{name: "event type", in: "event: order\ndata: a\n\ndata: b\n\n", want: result{Msgs: []M{{Event: "order", Data: "a"}, {Data: "b"}}}},
		{name: "event type is not message", in: "event: message\ndata: a\n\n", want: result{Msgs: []M{{Event: "message", Data: "a"}}}},
		{name: "last event field wins", in: "event: a\nevent: b\ndata: x\n\n", want: result{Msgs: []M{{Event: "b", Data: "x"}}}},
		{name: "event without data resets type", in: "event: x\n\ndata: a\n\n", want: result{Msgs: []M{{Data: "a"}}}},
		{
			name: "sticky id",
			in:   "id: 7\ndata: a\n\ndata: b\n\n",
			want: result{Msgs: []M{{ID: "7", Data: "a"}, {ID: "7", Data: "b"}}, LastID: "7"},
		},
		{
			name: "empty id resets",
			in:   "id: 7\ndata: a\n\nid\ndata: b\n\nid: 8\ndata: c\n\nid:\ndata: d\n\n",
			want: result{Msgs: []M{{ID: "7", Data: "a"}, {Data: "b"}, {ID: "8", Data: "c"}, {Data: "d"}}},
		},
		{
			name: "id with NUL ignored",
			in:   "id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n",
			want: result{Msgs: []M{{ID: "1", Data: "a"}, {ID: "1", Data: "b"}}, LastID: "1"},
		},
		{name: "id with leading space", in: "id:  x\ndata: a\n\n", want: result{Msgs: []M{{ID: " x", Data: "a"}}, LastID: " x"}},
		{
			name: "id-only event not dispatched but sets id",
			in:   "id: 5\n\ndata: a\n\n",
			want: result{Msgs: []M{{ID: "5", Data: "a"}}, LastID: "5"},
		},
		{name: "id-only stream", in: "id: 5\n\n", want: result{LastID: "5"}},
		{name: "unterminated id not used", in: "id: 1\ndata: a\n\nid: 2\ndata: b\n", want: result{Msgs: []M{{ID: "1", Data: "a"}}, LastID: "1"}},
		{name: "retry", in: "retry: 3000\n\n", want: result{Retry: 3 * time.Second, HasRetry: true}},
		{name: "retry without blank line", in: "retry: 10\n", want: result{Retry: 10 * time.Millisecond, HasRetry: true}},
		{name: "retry no space", in: "retry:0\n", want: result{HasRetry: true}},
		{name: "retry 3a ignored", in: "retry: 3a\n"},
		{name: "retry empty ignored", in: "retry:\nretry\n"},
		{name: "retry leading space ignored", in: "retry:  30\n"},
		{name: "retry negative ignored", in: "retry: -1\n"},
		{name: "retry invalid keeps previous", in: "retry: 100\nretry: x\n", want: result{Retry: 100 * time.Millisecond, HasRetry: true}},
		{name: "retry saturates", in: "retry: 99999999999999999999999\n", want: result{Retry: math.MaxInt64 / time.Millisecond * time.Millisecond, HasRetry: true}},
		{name: "unknown fields", in: "foo: bar\nDATA: x\ndata : y\ndata: a\n\n", want: result{Msgs: []M{{Data: "a"}}}},
		{name: "unterminated event discarded", in: "data: a\n\ndata: b\n", want: result{Msgs: []M{{Data: "a"}}}},
		{name: "unterminated line discarded", in: "data: a\n\ndata: b", want: result{Msgs: []M{{Data: "a"}}}},
		{name: "line at limit", in: "data: 12\n\n", maxLine: 8, want: result{Msgs: []M{{Data: "12"}}}},
		{name: "line too long", in: "data: a\n\ndata: 123\n\n", maxLine: 8, want: result{Msgs: []M{{Data: "a"}}, Err: ErrLineTooLong}},
		{name: "comment too long", in: ":123456789\n", maxLine: 8, want: result{Err: ErrLineTooLong}},
		{name: "long line across buffer fills", in: "data: " + strings.Repeat("x", 10000) + "\n\n", want: result{Msgs: []M{{Data: strings.Repeat("x", 10000)}}}},
		{name: "long line too long", in: "data: " + strings.Repeat("x", 10000) + "\n\n", maxLine: 9000, want: result{Err: ErrLineTooLong}},
		// An event's size: data lines joined with LF plus one LF, event type and id.
		{name: "event at limit", in: "id: 1\nevent: e\ndata: ab\ndata: c\n\n", maxEvent: 7, want: result{Msgs: []M{{ID: "1", Event: "e", Data: "ab\nc"}}, LastID: "1"}},
		{name: "event over limit", in: "data: a\n\nid: 1\nevent: e\ndata: ab\ndata: cd\n\n", maxEvent: 7, want: result{Msgs: []M{{Data: "a"}}, Err: ErrEventTooLarge}},
		{name: "many short lines never ending the event", in: strings.Repeat("data: xxxxxxxx\n", 2000), maxLine: 64, maxEvent: 10000, want: result{Err: ErrEventTooLarge}},
		{name: "limit applies per event", in: strings.Repeat("data: abcd\n\n", 100), maxEvent: 5, want: result{Msgs: slices.Repeat([]M{{Data: "abcd"}}, 100)}},
		{name: "comments do not count", in: ":" + strings.Repeat("c", 100) + "\ndata: a\n\n", maxEvent: 4, want: result{Comments: []string{strings.Repeat("c", 100)}, Msgs: []M{{Data: "a"}}}},
	}
	for _, tt := range tests {
		if tt.want.Err == nil {
			tt.want.Err = io.EOF
		}
		for rname, r := range readers(tt.in) {
			t.Run(tt.name+"/"+rname, func(t *testing.T) {
				got := decodeAll(t, r, len(tt.in), tt.maxLine, tt.maxEvent)
				if !reflect.DeepEqual(got, tt.want) {
					t.Errorf("decoding %q\n got %+v\nwant %+v", tt.in, got, tt.want)
				}
			})
		}
	}
}

func TestDecoderReadError(t *testing.T) {
	errBoom := errors.New("boom")
	r := io.MultiReader(strings.NewReader("data: a\n\ndata: b\n"), iotest.ErrReader(errBoom))
	got := decodeAll(t, r, 100, 0, 0)
	if got.Err != errBoom || len(got.Msgs) != 1 {
		t.Errorf("got %+v, want one event and %v", got, errBoom)
	}
}

// TestDecoderLiveStream checks that the decoder never waits for bytes it
// does not need: an event ending in "\r\r" must be dispatched at once, not
// after the next byte shows whether the CR was half of a CRLF.
func TestDecoderLiveStream(t *testing.T) {
	pr, pw := io.Pipe()
	d := NewDecoder(pr)
	type next struct {
		m   Message
		err error
	}
	results := make(chan next)
	go func() {
		for {
			m, err := d.Next()
			results <- next{m, err}
			if err != nil {
				return
			}
		}
	}()
	write := func(s string) {
		t.Helper()
		done := make(chan error, 1)
		go func() { _, err := pw.Write([]byte(s)); done <- err }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("write %q not read", s)
		}
	}
	expect := func(want Message, wantErr error) {
		t.Helper()
		select {
		case got := <-results:
			if got.m != want || got.err != wantErr {
				t.Fatalf("Next = %+v, %v; want %+v, %v", got.m, got.err, want, wantErr)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("Next blocked, want %+v, %v", want, wantErr)
		}
	}

	write("data: a\r\r")
	expect(Message{Data: "a"}, nil)
	// The LF completes the CRLF that ended the blank line above; it is
	// not a line of its own.
	write("\ndata: b\n\n")
	expect(Message{Data: "b"}, nil)
	// Here it shows: were the LF a blank line, it would dispatch nothing
	// but still reset the event type.
	write("event: t\r")
	write("\n")
	write("data: c\n\n")
	expect(Message{Event: "t", Data: "c"}, nil)
	pw.Close()
	expect(Message{}, io.EOF)
}

// repeatReader endlessly repeats a stream of whole events.
type repeatReader struct {
	b   []byte
	off int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := copy(p, r.b[r.off:])
	r.off = (r.off + n) % len(r.b)
	return n, nil
}

func TestDecoderAllocs(t *testing.T) {
	d := NewDecoder(&repeatReader{b: benchStream(100)})
	var err error
	n := testing.AllocsPerRun(1000, func() { _, err = d.Next() })
	if err != nil {
		t.Fatal(err)
	}
	if n > 1 {
		t.Errorf("%v allocs per event, want at most 1", n)
	}
}
