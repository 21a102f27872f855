package sse

import (
	"errors"
	"testing"
	"time"
)

func TestAppendMessage(t *testing.T) {
	tests := []struct {
		name string
		m    Message
		want string
		err  error
	}{
		{"simple", Message{ID: "42", Event: "order.updated", Data: `{"id":1}`}, "id: 42\nevent: order.updated\ndata: {\"id\":1}\n\n", nil},
		{"multi-line data", Message{Data: "a\nb\n"}, "data: a\ndata: b\ndata: \n\n", nil},
		{"leading space data", Message{Data: " x"}, "data:  x\n\n", nil},
		{"leading space id and event", Message{ID: " 1", Event: " e", Data: "x"}, "id:  1\nevent:  e\ndata: x\n\n", nil},
		{"empty data", Message{}, "data: \n\n", nil},
		{"no id or event", Message{Data: "x"}, "data: x\n\n", nil},
		{"NUL in data and event", Message{Event: "a\x00", Data: "\x00"}, "event: a\x00\ndata: \x00\n\n", nil},
		{"id with LF", Message{ID: "1\n2", Data: "x"}, "", ErrInvalidID},
		{"id with CR", Message{ID: "1\r", Data: "x"}, "", ErrInvalidID},
		{"id with NUL", Message{ID: "1\x00", Data: "x"}, "", ErrInvalidID},
		{"event with LF", Message{Event: "a\nb", Data: "x"}, "", ErrInvalidEvent},
		{"event with CR", Message{Event: "a\r", Data: "x"}, "", ErrInvalidEvent},
		{"data with CR", Message{Data: "a\rb"}, "", ErrInvalidData},
		{"data with CRLF", Message{Data: "a\r\nb"}, "", ErrInvalidData},
		{"id checked first", Message{ID: "\n", Event: "\n", Data: "\r"}, "", ErrInvalidID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := []byte("prev")
			got, err := AppendMessage(prefix, tt.m)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if string(got) != "prev"+tt.want {
				t.Errorf("got %q, want %q", got, "prev"+tt.want)
			}
		})
	}
}

func TestAppendRetry(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{3 * time.Second, "retry: 3000\n\n"},
		{1500 * time.Microsecond, "retry: 1\n\n"},
		{999 * time.Microsecond, "retry: 0\n\n"},
		{0, "retry: 0\n\n"},
		{-time.Second, "retry: 0\n\n"},
	}
	for _, tt := range tests {
		if got := string(AppendRetry(nil, tt.d)); got != tt.want {
			t.Errorf("AppendRetry(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestAppendComment(t *testing.T) {
	tests := []struct {
		text, want string
	}{
		{"ping", ": ping\n"},
		{"", ": \n"},
		{"a\nb", ": a\n: b\n"},
		{"a\r\nb\rc\n\rd", ": a\n: b\n: c\n: \n: d\n"},
		{"a\n", ": a\n: \n"},
		{"\r\n", ": \n: \n"},
	}
	for _, tt := range tests {
		if got := string(AppendComment(nil, tt.text)); got != tt.want {
			t.Errorf("AppendComment(%q) = %q, want %q", tt.text, got, tt.want)
		}
	}
}

func TestEncodeDoesNotAllocate(t *testing.T) {
	m := Message{ID: "123", Event: "order.updated", Data: benchData}
	buf := make([]byte, 0, 512)
	if n := testing.AllocsPerRun(100, func() { buf, _ = AppendMessage(buf[:0], m) }); n != 0 {
		t.Errorf("AppendMessage: %v allocs per run, want 0", n)
	}
}
