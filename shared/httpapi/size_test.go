package httpapi

import (
	"testing"
	"unsafe"
)

// TestIdleStreamStateStaysSmall: what a stream that left its handler keeps
// until it closes (its stream with the Handover in it, its place under the
// limits, its request's log line) is held once per idle stream; these are
// the sizes each was cut to (on 64-bit platforms), so that a field added
// without thought shows here rather than in the figures.
func TestIdleStreamStateStaysSmall(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("sizes are for 64-bit platforms")
	}
	for _, c := range []struct {
		name      string
		size, max uintptr
	}{
		{"stream", unsafe.Sizeof(stream{}), 144}, // its limitPlace and Handover in it
		{"limitPlace", unsafe.Sizeof(limitPlace{}), 24},
		{"requestLine", unsafe.Sizeof(requestLine{}), 80},
	} {
		if c.size > c.max {
			t.Errorf("%s is %d bytes, want at most %d: every idle stream holds one", c.name, c.size, c.max)
		}
	}
}
