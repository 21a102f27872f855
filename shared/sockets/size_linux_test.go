package sockets

import (
	"testing"
	"unsafe"
)

// TestSocketStaysSmall: every idle stream holds a Socket; its small fields
// are packed so that it fits 160 bytes (on 64-bit platforms).
func TestSocketStaysSmall(t *testing.T) {
	if got := unsafe.Sizeof(Socket{}); unsafe.Sizeof(uintptr(0)) == 8 && got > 160 {
		t.Errorf("Socket is %d bytes, want at most 160: every idle stream holds one", got)
	}
}
