package sockets

import (
	"testing"
	"time"

	"github.com/orderstream/orderstream/shared/sockets/netnstest"
)

// A client that vanishes (its network gone: no FIN, no RST) is let go
// within about Options.PeerTimeout, idle or not, where the kernel alone
// would hold it for minutes (keep-alive) to a quarter of an hour
// (retransmissions). The client sits in a network namespace of its own,
// joined to the server's by a veth pair, and vanishes when its end of the
// pair goes down.
func TestVanishedClientEndsWithinPeerTimeout(t *testing.T) {
	const peerTimeout = 2 * time.Second
	// Generous: the kernel checks at its timers' pace, and the box is
	// shared; without PeerTimeout it takes minutes.
	const within = peerTimeout + 15*time.Second
	netnstest.Usable(t)
	for _, tc := range []struct {
		name      string
		heartbeat time.Duration // short: unacknowledged bytes; long: an idle stream, found by keep-alive
		timeout   time.Duration
	}{
		{"idle", time.Hour, peerTimeout},
		{"heartbeats", 200 * time.Millisecond, peerTimeout},
		{"idle, no PeerTimeout", time.Hour, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			n := netnstest.NewPair(t)
			r := newRegistry(t, Options{Heartbeat: tc.heartbeat, PeerTimeout: tc.timeout})
			ln := n.Listen(t)
			client := n.Dial(t, ln.Addr().String(), patience)
			defer client.Close()
			srv, err := ln.AcceptTCP()
			if err != nil {
				t.Fatal(err)
			}
			_, closed := register(t, r, srv)
			if _, err := client.Write([]byte("hello")); err != nil { // a round trip: the link works
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
			n.ClientDown(t)
			down := time.Now()
			if tc.timeout == 0 {
				// The kernel's own keep-alive (Go's 15 s idle, then 9 probes
				// 15 s apart) holds it long after PeerTimeout would have.
				select {
				case why := <-closed:
					t.Fatalf("closed with %v after %v without PeerTimeout", why, time.Since(down))
				case <-time.After(3 * peerTimeout):
				}
				if st := r.Stats(); st.Registered != 1 {
					t.Fatalf("stats %+v, want the stream still held", st)
				}
				return
			}
			why := reason(t, closed, within)
			took := time.Since(down)
			t.Logf("let go %v after the client's link went down (PeerTimeout %v)", took.Round(time.Millisecond), tc.timeout)
			if why != Vanished {
				t.Errorf("closed with %v, want %v", why, Vanished)
			}
			if st := r.Stats(); st.Registered != 0 || st.Gone != 1 {
				t.Errorf("stats %+v, want none registered, 1 gone", st)
			}
		})
	}
}
