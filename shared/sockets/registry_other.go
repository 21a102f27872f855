//go:build !linux

package sockets

import (
	"net"
	"syscall"
	"time"
)

// Conn is what Register takes over: a connected socket that can show its
// descriptor and be closed (*net.TCPConn is one).
type Conn interface {
	syscall.Conn
	Close() error
}

// Registry has no poller here: New always fails with ErrUnsupported, and
// callers keep their streams in their handlers.
type Registry struct{}

// Socket is one registered stream; there are none here.
type Socket struct{}

// New returns ErrUnsupported on this system.
func New(Options) (*Registry, error) { return nil, ErrUnsupported }

// Register returns ErrUnsupported and leaves c to the caller.
func (*Registry) Register(Conn, Registration) (*Socket, error) {
	return nil, ErrUnsupported
}

// Broadcast has no sockets to write to.
func (*Registry) Broadcast([]byte, []*Socket) {}

// Stats are all zero.
func (*Registry) Stats() Stats { return Stats{} }

// Close has nothing to end.
func (*Registry) Close() error { return nil }

// Send has no socket to write to.
func (*Socket) Send([]byte) {}

// End has no socket to end.
func (*Socket) End([]byte) {}

// Group is a set of sockets that take the same frames; there are none here.
type Group struct{}

// NewGroup returns an empty group.
func (*Registry) NewGroup() *Group { return &Group{} }

// Add has no socket to add.
func (*Group) Add(*Socket) {}

// Remove has no socket to remove.
func (*Group) Remove(*Socket) {}

// Len is zero.
func (*Group) Len() int { return 0 }

// Broadcast has no sockets to write to.
func (*Group) Broadcast([]byte) {}

// End has no sockets to end.
func (*Group) End([]byte) {}

// ListenConfig is Go's default listener here: no peer timeout is set.
func ListenConfig(time.Duration) net.ListenConfig { return net.ListenConfig{} }
