package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambdaurl"
)

// The adapter's behaviours that the function relies on or works around,
// checked against aws-lambda-go itself, so that an upgrade that changes them
// shows up here rather than in production.

func testURLRequest() *events.LambdaFunctionURLRequest {
	return &events.LambdaFunctionURLRequest{
		RawPath: "/orders/x/stream",
		Headers: map[string]string{"last-event-id": "5-0"},
		Cookies: []string{"session=abc"},
		RequestContext: events.LambdaFunctionURLRequestContext{
			DomainName: "abc123.lambda-url.eu-west-1.on.aws",
			HTTP:       events.LambdaFunctionURLRequestContextHTTPDescription{Method: "GET", SourceIP: "192.0.2.1"},
		},
	}
}

func TestLambdaurlBehaviour(t *testing.T) {
	type observed struct {
		isFlusher                 bool
		flushErr, deadlineErr     error
		lastEventID, cookie, host string
		writeAfterGone            error
	}
	obs := make(chan observed, 1)
	wrapped, readerGone := make(chan struct{}), make(chan struct{})
	const before = 100 * time.Millisecond
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var o observed
		_, o.isFlusher = w.(http.Flusher)
		rc := http.NewResponseController(w)
		o.deadlineErr = rc.SetWriteDeadline(time.Now().Add(time.Second))
		o.lastEventID, o.cookie, o.host = r.Header.Get("Last-Event-ID"), r.Header.Get("Cookie"), r.Host
		time.Sleep(before)
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		// Only once Wrap has returned: before, lambdaurl is still copying
		// this very map into the prelude, and a header set now is a data
		// race (the race detector says so), in the prelude or not by chance.
		<-wrapped
		w.Header().Set("X-Set-Too-Late", "1")
		o.flushErr = rc.Flush()
		_, _ = io.WriteString(w, "data: 1\n\n")
		<-readerGone
		_, o.writeAfterGone = io.WriteString(w, "data: 2\n\n")
		obs <- o
	})

	start := time.Now()
	res, err := lambdaurl.Wrap(h)(context.Background(), testURLRequest())
	if err != nil {
		t.Fatal(err)
	}
	close(wrapped)
	if took := time.Since(start); took < before {
		t.Errorf("Wrap returned after %v, before the handler's first WriteHeader (%v): the response would start early", took, before)
	}
	if ct := res.ContentType(); ct != "application/vnd.awslambda.http-integration-response" {
		t.Errorf("ContentType() = %q", ct)
	}
	if res.Headers["Content-Type"] != "text/event-stream" {
		t.Errorf("headers %v lack the Content-Type set before WriteHeader", res.Headers)
	}
	if _, ok := res.Headers["X-Set-Too-Late"]; ok {
		t.Errorf("a header set after WriteHeader reached the prelude: %v", res.Headers)
	}

	// Read as the runtime client does, up to the first frame.
	var raw []byte
	buf := make([]byte, 512)
	for !bytes.Contains(raw, []byte("data: 1\n\n")) {
		n, err := res.Read(buf)
		raw = append(raw, buf[:n]...)
		if err != nil {
			t.Fatalf("read %q: %v", raw, err)
		}
	}
	p, body, err := splitPrelude(raw)
	if err != nil {
		t.Fatal(err)
	}
	if p.StatusCode != 200 || string(body) != "data: 1\n\n" {
		t.Errorf("prelude %+v, body %q", p, body)
	}

	// The runtime client closes the body once its POST ends; a write after
	// that is the only sign of a vanished reader that the handler ever gets.
	_ = res.Close()
	close(readerGone)
	o := <-obs
	if o.isFlusher {
		t.Error("the ResponseWriter is an http.Flusher now: the core could flush")
	}
	if !errors.Is(o.flushErr, http.ErrNotSupported) || !errors.Is(o.deadlineErr, http.ErrNotSupported) {
		t.Errorf("ResponseController: Flush %v, SetWriteDeadline %v; want http.ErrNotSupported", o.flushErr, o.deadlineErr)
	}
	if !errors.Is(o.writeAfterGone, io.ErrClosedPipe) {
		t.Errorf("write after the body was closed: %v, want io.ErrClosedPipe", o.writeAfterGone)
	}
	if o.lastEventID != "5-0" {
		t.Errorf("Last-Event-ID = %q", o.lastEventID)
	}
	if o.host != "abc123.lambda-url.eu-west-1.on.aws" {
		t.Errorf("Host = %q", o.host)
	}
	t.Logf("request cookies (event.cookies) reach the handler as Cookie: %q", o.cookie)
}

const panicChildEnv = "ORDERSTREAM_LAMBDAURL_PANIC_CHILD"

// lambdaurl runs the handler on its own goroutine without recovering, so a
// panic ends the process (and every invocation in it). The core recovers its
// handlers' panics (httpapi's recoverPanics); this shows why it must.
func TestLambdaurlPanicKillsProcess(t *testing.T) {
	if os.Getenv(panicChildEnv) != "" {
		res, err := lambdaurl.Wrap(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
			panic("boom in a handler")
		}))(context.Background(), testURLRequest())
		if err == nil {
			_, _ = io.ReadAll(res)
		}
		time.Sleep(time.Second) // the panic on the handler's goroutine ends the process first
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestLambdaurlPanicKillsProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), panicChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "panic: boom in a handler") {
		t.Errorf("child: %v\n%s\nwant exit status 2 from the panic", err, out)
	}
}
