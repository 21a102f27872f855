package socketstreams

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/google/uuid"

	"github.com/orderstream/orderstream/shared/broker"
	"github.com/orderstream/orderstream/shared/broker/brokertest"
	"github.com/orderstream/orderstream/shared/httpapi"
	"github.com/orderstream/orderstream/shared/sse"
)

// TestFirstWritesAreEachStreamsOwn: a registered stream's first write (head,
// retry: and history) is built in the buffer of the bufio.Writer that
// Hijack handed over (firstBuffer), not in one of its own. Many streams
// connected at once, each to an order of its own with a history, each read
// their own head and history, whole, before the live events: no buffer
// serves two connections, and none is written to after it is handed to the
// registry. With padding the history outgrows the 4 KiB buffer, and the
// first write is made in a bigger one.
func TestFirstWritesAreEachStreamsOwn(t *testing.T) {
	for _, padding := range []int{0, 1500} {
		t.Run(fmt.Sprintf("padding=%d", padding), func(t *testing.T) {
			b := broker.NewMemory(brokertest.Options())
			defer b.Close()
			srv, _, s := detachServer(t, b, httpapi.Config{FlushPadding: padding, HeartbeatInterval: time.Hour}, true, nil)
			const streams = 40
			ids := make([]uuid.UUID, streams)
			for i := range ids {
				ids[i] = uuid.New()
				for _, st := range lifecycle[:3] {
					if _, err := b.Publish(context.Background(), ids[i], broker.PublishRequest{Status: st}); err != nil {
						t.Fatal(err)
					}
				}
			}
			conns := make([]net.Conn, streams)
			var wg sync.WaitGroup
			for i := range ids {
				wg.Go(func() {
					var err error
					if conns[i], err = readOwnHistory(srv.Listener.Addr().String(), ids[i], padding); err != nil {
						t.Errorf("stream %d: %v", i, err)
					}
				})
			}
			wg.Wait()
			if st := s.reg.Stats(); st.Registered != streams {
				t.Errorf("%d streams registered, want %d: the others read nothing of firstBuffer", st.Registered, streams)
			}
			for _, c := range conns {
				if c != nil {
					c.Close()
				}
			}
		})
	}
}

// readOwnHistory opens order id's stream and checks its head and its three
// events: its own order's, in order, each with the padding after it. It
// returns the connection, still open, for the caller to close.
func readOwnHistory(addr string, id uuid.UUID, padding int) (net.Conn, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	if err := checkOwnHistory(c, id, padding); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func checkOwnHistory(c net.Conn, id uuid.UUID, padding int) error {
	c.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(c, "GET /orders/%s/stream HTTP/1.1\r\nHost: x\r\n\r\n", id)
	r := bufio.NewReader(c)
	head, err := r.ReadString('\n')
	if err != nil || head != "HTTP/1.1 200 OK\r\n" {
		return fmt.Errorf("status line %q, %v", head, err)
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return fmt.Errorf("head: %w", err)
		}
		if line == "\r\n" {
			break
		}
	}
	var body bytes.Buffer
	dec := sse.NewDecoder(teeReader{r, &body})
	for k, want := range lifecycle[:3] {
		m, err := dec.Next()
		if err != nil {
			return fmt.Errorf("event %d: %w", k, err)
		}
		if !strings.Contains(m.Data, id.String()) || !strings.Contains(m.Data, `"`+want.String()+`"`) {
			return fmt.Errorf("event %d is %q, want order %s's %s", k, m.Data, id, want)
		}
	}
	if padding > 0 && body.Len() < 3*padding {
		return fmt.Errorf("read %d bytes of history, want its padding after each event (%d each)", body.Len(), padding)
	}
	return nil
}

type teeReader struct {
	r *bufio.Reader
	w *bytes.Buffer
}

func (t teeReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	t.w.Write(p[:n])
	return n, err
}

// TestFirstBuffer: the first write goes into the hijacked writer's free
// buffer when there is one, else into a buffer of its own.
func TestFirstBuffer(t *testing.T) {
	w := bufio.NewWriterSize(nil, 4096)
	got := firstBuffer(bufio.NewReadWriter(nil, w))
	if len(got) != 0 || cap(got) != 4096 || unsafe.SliceData(got) != unsafe.SliceData(w.AvailableBuffer()) {
		t.Errorf("with the hijacked writer: len %d cap %d, want its 4 KiB buffer", len(got), cap(got))
	}
	for _, rw := range []*bufio.ReadWriter{nil, bufio.NewReadWriter(nil, nil), bufio.NewReadWriter(nil, bufio.NewWriterSize(nil, 16))} {
		if got := firstBuffer(rw); len(got) != 0 || cap(got) != firstSize {
			t.Errorf("firstBuffer(%v): len %d cap %d, want a buffer of %d of its own", rw, len(got), cap(got), firstSize)
		}
	}
}

// TestRegisteredStaysSmall: every idle stream holds a registered; its
// fields are packed so it fits 64 bytes (on 64-bit platforms).
func TestRegisteredStaysSmall(t *testing.T) {
	if got := unsafe.Sizeof(registered{}); unsafe.Sizeof(uintptr(0)) == 8 && got > 64 {
		t.Errorf("registered is %d bytes, want at most 64: every idle stream holds one", got)
	}
}
