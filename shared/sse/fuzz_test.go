package sse

import (
	"bytes"
	"errors"
	"io"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

func FuzzRoundTrip(f *testing.F) {
	f.Add("1", "order.updated", `{"id":1}`)
	f.Add("", "", "")
	f.Add(" 1", " e", " d")
	f.Add("", "", "a\nb\n\n")
	f.Add("a\nb", "", "")
	f.Add("\x00", "", "")
	f.Add("", "e\r", "")
	f.Add("", "", "a\r\nb")
	f.Add("", "\x00", "\x00")
	f.Add("\xEF\xBB\xBF", "\xEF\xBB\xBF", "\xEF\xBB\xBFx")
	f.Add("id:", "data", ": c\n:")
	f.Fuzz(func(t *testing.T, id, event, data string) {
		m := Message{ID: id, Event: event, Data: data}
		frame, err := AppendMessage(nil, m)
		var wantErr error
		switch {
		case strings.ContainsAny(id, "\r\n\x00"):
			wantErr = ErrInvalidID
		case strings.ContainsAny(event, "\r\n"):
			wantErr = ErrInvalidEvent
		case strings.Contains(data, "\r"):
			wantErr = ErrInvalidData
		}
		if err != wantErr {
			t.Fatalf("AppendMessage(%+v) err = %v, want %v", m, err, wantErr)
		}
		if err != nil {
			if frame != nil {
				t.Fatalf("AppendMessage(%+v) = %q on error, want nil", m, frame)
			}
			return
		}

		// The comment takes data verbatim, CRs included, to check that
		// no comment text can break the frame that follows.
		prelude := AppendComment(AppendRetry(nil, 1500*time.Millisecond), data)
		wantComments := strings.Split(strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(data), "\n")
		streams := []struct {
			in   []byte
			want result
		}{
			{frame, result{Msgs: []Message{m}, LastID: id, Err: io.EOF}},
			{append(prelude, frame...), result{
				Msgs: []Message{m}, Comments: wantComments, LastID: id,
				Retry: 1500 * time.Millisecond, HasRetry: true, Err: io.EOF,
			}},
		}
		for _, s := range streams {
			for name, r := range readers(string(s.in)) {
				if got := decodeAll(t, r, len(s.in), 0, 0); !reflect.DeepEqual(got, s.want) {
					t.Fatalf("%s: decoding %q\n got %+v\nwant %+v", name, s.in, got, s.want)
				}
			}
		}
	})
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		"",
		"data: a\n\n",
		"\xEF\xBB\xBFdata: a\r\n\r\n",
		"id: 1\ndata: a\rdata: b\r\r\n",
		"event: e\r\nid: 2\x00\ndata\n\n",
		": c\nretry: 10\nretry: 1x\nid\n\n",
		"data: a\n\ndata: b",
		"\xEF\xBB",
		"data: a\n\r\r\n\n\r",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		want := refDecode(in)
		for name, r := range readers(string(in)) {
			got := decodeAll(t, r, len(in), 0, 0)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%s: decoding %q\n got %+v\nwant %+v", name, in, got, want)
			}
		}
		// The properties also asked of every input, checked on their own
		// so a bug shared with refDecode cannot hide them.
		for _, m := range want.Msgs {
			if strings.ContainsAny(m.ID, "\x00\r\n") || strings.ContainsAny(m.Event, "\r\n") || strings.Contains(m.Data, "\r") {
				t.Fatalf("decoded invalid message %+v", m)
			}
		}
		if strings.ContainsRune(want.LastID, 0) {
			t.Fatalf("LastEventID %q contains NUL", want.LastID)
		}
		// With a tiny limit decoding must still end cleanly.
		got := decodeAll(t, bytes.NewReader(in), len(in), 4, 0)
		if got.Err != io.EOF && !errors.Is(got.Err, ErrLineTooLong) {
			t.Fatalf("with limit 4: err = %v", got.Err)
		}
		// With a small event limit too, and no event beyond it; up to the
		// error the decoder agrees with the unlimited one.
		const maxEvent = 8
		got = decodeAll(t, bytes.NewReader(in), len(in), 0, maxEvent)
		if got.Err != io.EOF && !errors.Is(got.Err, ErrEventTooLarge) {
			t.Fatalf("with event limit %d: err = %v", maxEvent, got.Err)
		}
		for i, m := range got.Msgs {
			if len(m.Data)+1+len(m.Event)+len(m.ID) > maxEvent {
				t.Fatalf("with event limit %d: got %+v", maxEvent, m)
			}
			if i >= len(want.Msgs) || m != want.Msgs[i] {
				t.Fatalf("with event limit %d: message %d is %+v, unlimited %+v", maxEvent, i, m, want.Msgs)
			}
		}
	})
}

// refDecode is a deliberately naive transcription of the WHATWG event
// stream interpretation, working on the complete input at once.
func refDecode(in []byte) result {
	s := strings.TrimPrefix(string(in), "\xEF\xBB\xBF")
	var res result
	var data, event, id string
	for {
		i := strings.IndexAny(s, "\r\n")
		if i < 0 {
			break // no line ending: pending data is discarded
		}
		line := s[:i]
		if strings.HasPrefix(s[i:], "\r\n") {
			i++
		}
		s = s[i+1:]

		switch {
		case line == "":
			res.LastID = id
			if data == "" {
				event = ""
				continue
			}
			res.Msgs = append(res.Msgs, Message{ID: id, Event: event, Data: strings.TrimSuffix(data, "\n")})
			data, event = "", ""
		case line[0] == ':':
			res.Comments = append(res.Comments, strings.TrimPrefix(line[1:], " "))
		default:
			name, value, found := strings.Cut(line, ":")
			if found {
				value = strings.TrimPrefix(value, " ")
			}
			switch name {
			case "event":
				event = value
			case "data":
				data += value + "\n"
			case "id":
				if !strings.Contains(value, "\x00") {
					id = value
				}
			case "retry":
				if value != "" && strings.Trim(value, "0123456789") == "" {
					// Too large for a Duration saturates.
					const maxMS = math.MaxInt64 / int64(time.Millisecond)
					ms, err := strconv.ParseInt(value, 10, 64)
					if err != nil || ms > maxMS {
						ms = maxMS
					}
					res.Retry, res.HasRetry = time.Duration(ms)*time.Millisecond, true
				}
			}
		}
	}
	res.Err = io.EOF
	return res
}
