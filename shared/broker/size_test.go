package broker

import (
	"testing"
	"unsafe"
)

// TestChanSubscriberStaysSmall: a subscription handed over to a registered
// stream keeps its chanSubscriber as the hub's key for the stream's life;
// its small fields are packed so that it fits 48 bytes (on 64-bit
// platforms).
func TestChanSubscriberStaysSmall(t *testing.T) {
	if got := unsafe.Sizeof(chanSubscriber{}); unsafe.Sizeof(uintptr(0)) == 8 && got > 48 {
		t.Errorf("chanSubscriber is %d bytes, want at most 48", got)
	}
}
