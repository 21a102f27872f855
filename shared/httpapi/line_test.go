package httpapi

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"unsafe"

	"github.com/google/uuid"
)

// TestDetachedLineRebuildsItsPath: a stream's log line drops its path
// while the stream lives only where it can rebuild the same bytes (the
// core's route with the order's canonical id); any other spelling is kept
// as the client sent it. Either way the line written is the same.
func TestDetachedLineRebuildsItsPath(t *testing.T) {
	id := uuid.MustParse("0190a3c4-5e6f-7a8b-9cad-beef01234567")
	for _, c := range []struct {
		path    string
		dropped bool
	}{
		{"/orders/" + id.String() + "/stream", true},
		{"/orders/" + strings.ToUpper(id.String()) + "/stream", false},
		{"/orders/" + strings.ReplaceAll(id.String(), "-", "") + "/stream", false},
		{"/prod/orders/" + id.String() + "/stream", false},
		{"/orders/" + id.String() + "/streams", false},
	} {
		var logs bytes.Buffer
		line := &requestLine{out: &lineOut{logger: slog.New(slog.NewTextHandler(&logs, nil)), m: newMetrics(nil)},
			method: knownMethod("GET"), path: c.path, pattern: "GET /orders/{id}/stream", remote: "192.0.2.1:4000"}
		d := detachedLine{line: line, status: 200}
		d.forgetPath(id)
		if d.orderPath != c.dropped || (line.path == "") != c.dropped {
			t.Errorf("%s: dropped %v (path now %q), want %v", c.path, d.orderPath, line.path, c.dropped)
		}
		d.write(0, 42, id)
		if want := "method=GET path=" + c.path + " status=200 bytes=42 "; !strings.Contains(logs.String(), want) {
			t.Errorf("%s: logged %q, want %q in it", c.path, logs.String(), want)
		}
	}
	var zero detachedLine
	zero.forgetPath(id) // no line (no logRequests in the chain): nothing to do, no panic
	zero.write(0, 1, id)
}

func TestKnownMethod(t *testing.T) {
	line := strings.Clone("GET /x HTTP/1.1") // as net/http reads it: the method is a piece of it
	if got := knownMethod(line[:3]); got != "GET" || unsafe.StringData(got) == unsafe.StringData(line) {
		t.Fatalf("knownMethod(GET) = %q, want the constant, not a piece of the request line", got)
	}
	if got := knownMethod("BREW"); got != "BREW" {
		t.Fatalf("knownMethod(BREW) = %q, want it as it came", got)
	}
}
