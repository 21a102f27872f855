// Package lambdatest runs the functions' real bootstrap binaries the way
// Lambda does, without Lambda: a fake of the Lambda Runtime API (and of the
// sliver of the Extensions API that aws-lambda-go uses) speaking its HTTP
// protocol, and helpers to build and start a bootstrap against it.
//
// The fake follows https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html:
// the runtime long-polls GET /2018-06-01/runtime/invocation/next for an event
// (with its Lambda-Runtime-* headers), then POSTs the response to
// .../invocation/{id}/response (for a streamed response: a chunked body, read
// here chunk by chunk with each arrival time) or an error to .../{id}/error;
// a runtime that cannot start POSTs /runtime/init/error.
package lambdatest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Runtime is the fake Runtime API. Invocations are handed out in the order
// they are queued, to whichever /next poll asks first: with
// AWS_LAMBDA_MAX_CONCURRENCY > 1 aws-lambda-go polls several times at once
// and runs the invocations concurrently, as Lambda Managed Instances do.
type Runtime struct {
	// FunctionTimeout sets each invocation's deadline (Lambda-Runtime-Deadline-Ms)
	// unless Invoke is given one; default 15 min.
	FunctionTimeout time.Duration

	t      testing.TB
	srv    *http.Server
	addr   string
	queue  chan *Invocation
	closed chan struct{}
	seq    atomic.Int64

	mu          sync.Mutex
	invocations map[string]*Invocation
	initErrors  []InitError
	extensions  []string
	shutdown    chan struct{}
	changed     chan struct{} // closed and replaced at every change, for Wait
}

// InitError is a POST /runtime/init/error.
type InitError struct {
	Type string // Lambda-Runtime-Function-Error-Type
	Body []byte
}

// NewRuntime starts a fake Runtime API on a free loopback port; it stops when
// the test ends.
func NewRuntime(t testing.TB) *Runtime {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("fake runtime API: %v", err)
	}
	rt := &Runtime{
		FunctionTimeout: 15 * time.Minute,
		t:               t,
		addr:            ln.Addr().String(),
		queue:           make(chan *Invocation, 64),
		closed:          make(chan struct{}),
		invocations:     map[string]*Invocation{},
		shutdown:        make(chan struct{}),
		changed:         make(chan struct{}),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /2018-06-01/runtime/invocation/next", rt.next)
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/response", rt.response)
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/error", rt.invocationError)
	mux.HandleFunc("POST /2018-06-01/runtime/init/error", rt.initError)
	mux.HandleFunc("POST /2020-01-01/extension/register", rt.registerExtension)
	mux.HandleFunc("GET /2020-01-01/extension/event/next", rt.extensionNext)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("fake runtime API: unexpected %s %s", r.Method, r.URL.Path)
		http.Error(w, "not part of the fake", http.StatusNotFound)
	})
	rt.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = rt.srv.Serve(ln) }()
	t.Cleanup(rt.close)
	return rt
}

// Addr is the value for AWS_LAMBDA_RUNTIME_API.
func (rt *Runtime) Addr() string { return rt.addr }

func (rt *Runtime) close() {
	close(rt.closed)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rt.srv.Shutdown(ctx); err != nil {
		_ = rt.srv.Close()
	}
}

func (rt *Runtime) notify() {
	rt.mu.Lock()
	close(rt.changed)
	rt.changed = make(chan struct{})
	rt.mu.Unlock()
}

// Shutdown answers the extensions' pending event/next with SHUTDOWN, as
// Lambda does when it stops an instance (it then sends SIGTERM to the
// runtime: the caller's part, see Process.Signal).
func (rt *Runtime) Shutdown() { close(rt.shutdown) }

// Extensions returns the names of the extensions that registered.
func (rt *Runtime) Extensions() []string {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return append([]string(nil), rt.extensions...)
}

// InitErrors returns the init errors posted so far.
func (rt *Runtime) InitErrors() []InitError {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return append([]InitError(nil), rt.initErrors...)
}

// WaitInitError waits for the first init error.
func (rt *Runtime) WaitInitError(timeout time.Duration) (InitError, bool) {
	deadline := time.After(timeout)
	for {
		rt.mu.Lock()
		ch := rt.changed
		if len(rt.initErrors) > 0 {
			ie := rt.initErrors[0]
			rt.mu.Unlock()
			return ie, true
		}
		rt.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			return InitError{}, false
		}
	}
}

// Invoke queues an invocation with event as its payload and returns at once.
// A zero deadline means now + FunctionTimeout.
func (rt *Runtime) Invoke(event []byte, deadline time.Time) *Invocation {
	if deadline.IsZero() {
		deadline = time.Now().Add(rt.FunctionTimeout)
	}
	inv := &Invocation{
		ID:       fmt.Sprintf("00000000-0000-4000-8000-%012d", rt.seq.Add(1)),
		Event:    event,
		Deadline: deadline,
		Queued:   time.Now(),
		res:      Result{Event: event},
		changed:  make(chan struct{}),
		done:     make(chan struct{}),
	}
	rt.mu.Lock()
	rt.invocations[inv.ID] = inv
	rt.mu.Unlock()
	rt.queue <- inv
	return inv
}

func (rt *Runtime) lookup(w http.ResponseWriter, r *http.Request) *Invocation {
	rt.mu.Lock()
	inv := rt.invocations[r.PathValue("id")]
	rt.mu.Unlock()
	if inv == nil {
		rt.t.Errorf("fake runtime API: %s %s: no such invocation", r.Method, r.URL.Path)
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"errorMessage":"unknown request id","errorType":"InvalidRequestID"}`)
	}
	return inv
}

func (rt *Runtime) next(w http.ResponseWriter, r *http.Request) {
	var inv *Invocation
	select {
	case inv = <-rt.queue:
	case <-r.Context().Done():
		return
	case <-rt.closed:
		return
	}
	inv.mu.Lock()
	inv.res.Taken = time.Now()
	inv.mu.Unlock()
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Lambda-Runtime-Aws-Request-Id", inv.ID)
	h.Set("Lambda-Runtime-Deadline-Ms", strconv.FormatInt(inv.Deadline.UnixMilli(), 10))
	h.Set("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:eu-west-1:123456789012:function:orderstream-test")
	h.Set("Lambda-Runtime-Trace-Id", "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=0")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(inv.Event)
}

// response reads a response body as it arrives: one Chunk per read, which is
// one chunk of the chunked body unless several arrived together.
func (rt *Runtime) response(w http.ResponseWriter, r *http.Request) {
	inv := rt.lookup(w, r)
	if inv == nil {
		return
	}
	inv.mu.Lock()
	inv.res.Kind = "response"
	inv.res.Started = time.Now()
	inv.res.Header = r.Header.Clone()
	inv.res.TransferEncoding = r.TransferEncoding
	inv.mu.Unlock()
	buf := make([]byte, 64<<10)
	var readErr error
	for {
		n, err := r.Body.Read(buf)
		if n > 0 {
			inv.add(Chunk{At: time.Now(), Data: bytes.Clone(buf[:n])})
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				readErr = err
			}
			break
		}
	}
	inv.mu.Lock()
	inv.res.Trailer = r.Trailer.Clone()
	inv.res.ReadErr = readErr
	inv.mu.Unlock()
	w.WriteHeader(http.StatusAccepted)
	_, _ = io.WriteString(w, `{"status":"OK"}`)
	inv.finish()
	rt.notify()
}

func (rt *Runtime) invocationError(w http.ResponseWriter, r *http.Request) {
	inv := rt.lookup(w, r)
	if inv == nil {
		return
	}
	body, _ := io.ReadAll(r.Body)
	inv.mu.Lock()
	inv.res.Kind = "error"
	inv.res.Started = time.Now()
	inv.res.Header = r.Header.Clone()
	inv.res.Chunks = append(inv.res.Chunks, Chunk{At: time.Now(), Data: body})
	inv.mu.Unlock()
	w.WriteHeader(http.StatusAccepted)
	_, _ = io.WriteString(w, `{"status":"OK"}`)
	inv.finish()
	rt.notify()
}

func (rt *Runtime) initError(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rt.mu.Lock()
	rt.initErrors = append(rt.initErrors, InitError{Type: r.Header.Get("Lambda-Runtime-Function-Error-Type"), Body: body})
	rt.mu.Unlock()
	w.WriteHeader(http.StatusAccepted)
	_, _ = io.WriteString(w, `{"status":"OK"}`)
	rt.notify()
}

func (rt *Runtime) registerExtension(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Events []string `json:"events"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	name := r.Header.Get("Lambda-Extension-Name")
	rt.mu.Lock()
	rt.extensions = append(rt.extensions, name)
	rt.mu.Unlock()
	w.Header().Set("Lambda-Extension-Identifier", "ext-"+name)
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"functionName":"orderstream-test","functionVersion":"$LATEST","handler":"bootstrap"}`)
	rt.notify()
}

func (rt *Runtime) extensionNext(w http.ResponseWriter, r *http.Request) {
	select {
	case <-rt.shutdown:
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"eventType":"SHUTDOWN","shutdownReason":"spindown","deadlineMs":%d}`, time.Now().Add(500*time.Millisecond).UnixMilli())
	case <-r.Context().Done():
	case <-rt.closed:
	}
}

// Chunk is one read of a response body and when it arrived.
type Chunk struct {
	At   time.Time
	Data []byte
}

// Invocation is one event handed to the function and what came back.
type Invocation struct {
	ID       string
	Event    []byte
	Deadline time.Time
	Queued   time.Time // when Invoke queued it

	mu      sync.Mutex
	res     Result
	changed chan struct{} // closed and replaced at every new chunk
	done    chan struct{}
}

// Result is what the runtime sent back for an invocation, so far.
type Result struct {
	Event            []byte      // the invocation's payload, what the answer answers
	Taken            time.Time   // when the runtime's /next received the event
	Kind             string      // "response" or "error", once its POST arrived
	Started          time.Time   // when that POST arrived
	Header           http.Header // of that POST
	TransferEncoding []string
	Trailer          http.Header // after the body: the runtime's mid-stream error, if any
	ReadErr          error       // the body broke off
	Chunks           []Chunk     // the body, one entry per read
	Finished         time.Time   // when the body ended
}

// Body returns the whole body received.
func (r Result) Body() []byte {
	var b []byte
	for _, c := range r.Chunks {
		b = append(b, c.Data...)
	}
	return b
}

func (inv *Invocation) add(c Chunk) {
	inv.mu.Lock()
	inv.res.Chunks = append(inv.res.Chunks, c)
	close(inv.changed)
	inv.changed = make(chan struct{})
	inv.mu.Unlock()
}

func (inv *Invocation) finish() {
	inv.mu.Lock()
	inv.res.Finished = time.Now()
	close(inv.changed)
	inv.changed = make(chan struct{})
	inv.mu.Unlock()
	close(inv.done)
}

// Done is closed when the response or error has arrived whole.
func (inv *Invocation) Done() <-chan struct{} { return inv.done }

// Result returns what has come back so far.
func (inv *Invocation) Result() Result {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	r := inv.res
	r.Chunks = append([]Chunk(nil), r.Chunks...)
	return r
}

// Wait waits for the invocation to finish and returns its result, failing t
// after timeout.
func (inv *Invocation) Wait(t testing.TB, timeout time.Duration) Result {
	t.Helper()
	select {
	case <-inv.done:
		return inv.Result()
	case <-time.After(timeout):
		t.Fatalf("invocation %s did not finish within %v; so far: %q", inv.ID, timeout, inv.Result().Body())
		return Result{}
	}
}

// WaitFor waits until the body received so far contains want, and returns
// the arrival time of the read that completed it. It fails t if the response
// ends or timeout passes first.
func (inv *Invocation) WaitFor(t testing.TB, want string, timeout time.Duration) time.Time {
	t.Helper()
	deadline := time.After(timeout)
	for {
		inv.mu.Lock()
		var body []byte
		for _, c := range inv.res.Chunks {
			body = append(body, c.Data...)
			if bytes.Contains(body, []byte(want)) {
				inv.mu.Unlock()
				return c.At
			}
		}
		ch, finished := inv.changed, !inv.res.Finished.IsZero()
		inv.mu.Unlock()
		if finished {
			t.Fatalf("invocation %s ended without %q; body: %q", inv.ID, want, body)
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("invocation %s: no %q within %v; body so far: %q", inv.ID, want, timeout, body)
		}
	}
}
