// Package openapitest holds HTTP traffic to docs/openapi.yaml: a Validator
// checks each answer the server gives (status, headers, body; for an event
// stream, every frame as the client reads it) against the document, with
// kin-openapi, and remembers what did not match. Tests install it as their
// client's transport, so that every request they make is checked.
//
// Only tests import it: kin-openapi stays out of the service's binaries
// (TestBinariesLeaveKinOpenAPIOut).
package openapitest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"

	"github.com/orderstream/orderstream/docs"
)

// Responses the document describes for every path (components.responses),
// which no operation lists: a path it does not list, a method a path does
// not list, and a CORS preflight.
const (
	notFound         = "NotFound"
	methodNotAllowed = "MethodNotAllowed"
	preflight        = "Preflight"
	preflightRefused = "PreflightRefused"
)

// Validator checks answers against the document. It is safe for concurrent
// use. Failures are kept, not returned to the caller of the request: a test
// that retries or expects an error would otherwise hide them.
type Validator struct {
	doc      *openapi3.T
	mux      *http.ServeMux // the document's paths as net/http patterns: routed as the server routes
	generic  map[string]*openapi3.ResponseRef
	event    *openapi3.Schema // components.schemas.StreamEvent
	terminal []string         // the statuses after which a stream must end

	mu       sync.Mutex
	failures []string
	seen     map[string]bool // operation+status keys answered
	checked  int             // answers checked
}

// Load returns a Validator for docs/openapi.yaml.
func Load() (*Validator, error) { return New([]byte(docs.OpenAPI)) }

// New returns a Validator for the given document, which must be valid
// OpenAPI 3.1 and describe what Load's does (the event schema, the
// responses for every path).
func New(spec []byte) (*Validator, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(spec)
	if err != nil {
		return nil, fmt.Errorf("load the OpenAPI document: %w", err)
	}
	if !doc.IsOpenAPI31OrLater() {
		return nil, fmt.Errorf("the document is OpenAPI %s, want 3.1", doc.OpenAPI)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("the OpenAPI document is not valid: %w", err)
	}
	v := &Validator{doc: doc, mux: http.NewServeMux(), generic: map[string]*openapi3.ResponseRef{},
		seen: map[string]bool{}}
	for _, name := range []string{notFound, methodNotAllowed, preflight, preflightRefused} {
		ref := doc.Components.Responses[name]
		if ref == nil || ref.Value == nil {
			return nil, fmt.Errorf("components.responses.%s is missing", name)
		}
		v.generic[name] = ref
	}
	ev := doc.Components.Schemas["StreamEvent"]
	if ev == nil || ev.Value == nil {
		return nil, errors.New("components.schemas.StreamEvent is missing")
	}
	v.event = ev.Value
	v.terminal = []string{"Delivered", "Cancelled"}
	for p, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			route := &routers.Route{Spec: doc, Path: p, PathItem: item, Method: method, Operation: op}
			v.mux.Handle(muxPattern(method, p), matcher{route})
		}
	}
	return v, nil
}

// muxPattern is the net/http pattern for a document's method and path: the
// document's "/" is the root alone, as the server's "GET /{$}" is.
func muxPattern(method, p string) string {
	if p == "/" {
		p = "/{$}"
	}
	return method + " " + p
}

// Operations lists the document's operations as "METHOD /path", sorted,
// for comparing with the server's route table.
func (v *Validator) Operations() []string {
	var out []string
	for p, item := range v.doc.Paths.Map() {
		for method := range item.Operations() {
			out = append(out, method+" "+p)
		}
	}
	slices.Sort(out)
	return out
}

// Run runs a package's tests with every answer they get through
// http.DefaultClient (http.Get and the like) checked, and returns the exit
// code for TestMain: a failure if any answer did not match.
func (v *Validator) Run(m *testing.M) int {
	http.DefaultClient.Transport = v.Transport(http.DefaultTransport)
	code := m.Run()
	if testing.Verbose() {
		fmt.Fprintf(os.Stderr, "openapitest: %d answers checked against docs/openapi.yaml\n", v.Checked())
	}
	if f := v.Failures(); len(f) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: %d answers do not match docs/openapi.yaml:\n", len(f))
		for _, s := range f {
			fmt.Fprintln(os.Stderr, "  "+s)
		}
		return 1
	}
	return code
}

// Checked returns how many answers were checked so far.
func (v *Validator) Checked() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.checked
}

// Failures returns what did not match so far.
func (v *Validator) Failures() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.failures)
}

// Uncovered lists each documented answer (an operation's status, or one of
// the responses for every path) that no checked request got: a status the
// document promises that the tests never saw.
func (v *Validator) Uncovered() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []string
	for p, item := range v.doc.Paths.Map() {
		for method, op := range item.Operations() {
			for code := range op.Responses.Map() {
				if k := opKey(method, p, code); !v.seen[k] {
					out = append(out, k)
				}
			}
		}
	}
	for name := range v.generic {
		if !v.seen[name] {
			out = append(out, "components.responses."+name)
		}
	}
	slices.Sort(out)
	return out
}

func opKey(method, p, code string) string { return method + " " + p + " " + code }

func (v *Validator) fail(req *http.Request, format string, args ...any) {
	msg := fmt.Sprintf("%s %s: ", req.Method, req.URL.RequestURI()) + fmt.Sprintf(format, args...)
	// kin-openapi's errors go on to print the whole schema and value: the
	// reason is enough to find both in the document.
	msg, _, _ = strings.Cut(msg, "\nSchema:")
	msg = strings.Join(strings.Fields(msg), " ")
	v.mu.Lock()
	defer v.mu.Unlock()
	v.failures = append(v.failures, msg)
}

func (v *Validator) saw(key string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.seen[key] = true
}

// matcher is the handler the Validator's mux routes to: it reports the
// route and its path parameters to the request's context.
type matcher struct{ route *routers.Route }

type matchKey struct{}

type match struct {
	route  *routers.Route
	params map[string]string
}

func (m matcher) ServeHTTP(_ http.ResponseWriter, r *http.Request) {
	out := r.Context().Value(matchKey{}).(*match)
	out.route = m.route
	out.params = map[string]string{}
	for _, p := range m.route.PathItem.Parameters {
		if p.Value != nil && p.Value.In == openapi3.ParameterInPath {
			out.params[p.Value.Name] = r.PathValue(p.Value.Name)
		}
	}
	for _, p := range m.route.Operation.Parameters {
		if p.Value != nil && p.Value.In == openapi3.ParameterInPath {
			out.params[p.Value.Name] = r.PathValue(p.Value.Name)
		}
	}
}

// route finds the document's operation for req as the server routes it, or
// nil when the document lists none (then the answer must be one of those
// for every path).
func (v *Validator) route(req *http.Request) *match {
	// The server answers a path not in its clean form 404 itself, before
	// routing; the mux would redirect it.
	if p := req.URL.Path; path.Clean(p) != p && path.Clean(p)+"/" != p {
		return nil
	}
	m := &match{}
	r := req.Clone(context.WithValue(req.Context(), matchKey{}, m))
	r.Body = http.NoBody
	v.mux.ServeHTTP(httptest.NewRecorder(), r)
	if m.route == nil {
		return nil
	}
	return m
}

// Transport returns a RoundTripper that sends each request through next
// (http.DefaultTransport when nil) and checks its answer. The caller gets
// the answer as the server gave it, body included.
func (v *Validator) Transport(next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return &transport{v: v, next: next}
}

type transport struct {
	v    *Validator
	next http.RoundTripper
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	// The body goes out as it comes (a test may send it slowly on purpose);
	// a copy is kept for checking a request the server accepted.
	var sent *teeBody
	if req.Body != nil && req.Body != http.NoBody {
		sent = &teeBody{r: req.Body}
		req = req.Clone(req.Context())
		req.Body = sent
		req.GetBody = nil // a retry would send a body without the copy
	}
	res, err := t.next.RoundTrip(req)
	if err != nil {
		return res, err
	}
	t.v.Check(req, sent.bytes(), res)
	return res, nil
}

// teeBody keeps a copy of a request body as the transport sends it.
type teeBody struct {
	r  io.ReadCloser
	mu sync.Mutex // the transport reads on its own goroutine
	b  []byte
}

func (t *teeBody) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	t.mu.Lock()
	t.b = append(t.b, p[:n]...)
	t.mu.Unlock()
	return n, err
}

func (t *teeBody) Close() error { return t.r.Close() }

func (t *teeBody) bytes() []byte {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.b)
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach next.
func (t *transport) CloseIdleConnections() {
	if c, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// Check checks res, the answer to req (whose body was reqBody), and
// records what does not match. It reads a body other than an event stream
// whole and puts it back; an event stream's frames are checked as the
// caller reads them.
func (v *Validator) Check(req *http.Request, reqBody []byte, res *http.Response) {
	stream := isEventStream(res.Header) && res.StatusCode == http.StatusOK && req.Method != http.MethodHead
	var body []byte
	if !stream && req.Method != http.MethodHead {
		b, err := io.ReadAll(res.Body)
		res.Body.Close()
		res.Body = io.NopCloser(io.MultiReader(bytes.NewReader(b), errReader{err}))
		if err != nil {
			return // the connection failed: nothing whole to check
		}
		body = b
	}

	v.mu.Lock()
	v.checked++
	v.mu.Unlock()
	m := v.route(req)
	if m == nil {
		v.checkUnrouted(req, res, body)
		return
	}
	key := opKey(m.route.Method, m.route.Path, strconv.Itoa(res.StatusCode))
	ref := m.route.Operation.Responses.Status(res.StatusCode)
	if ref == nil {
		v.fail(req, "status %d is not documented for %s %s", res.StatusCode, m.route.Method, m.route.Path)
		return
	}
	v.saw(key)
	v.checkResponse(req, m, ref.Value, res, body, stream)
	if stream {
		res.Body = &eventChecker{v: v, req: req, r: res.Body}
	}
	if res.StatusCode >= 200 && res.StatusCode < 300 {
		v.checkRequest(req, reqBody, m)
	}
}

// CheckWhole checks an answer that arrived whole rather than over a
// connection: a Lambda function's response as the Runtime API or API
// Gateway hands it back, a stream included (its frames are checked as
// Check checks a stream's). It records what does not match, as Check does,
// and also returns it, so that the caller can name the answer.
func (v *Validator) CheckWhole(req *http.Request, reqBody []byte, status int, header http.Header, body []byte) []string {
	// A Validator of this answer's own, on the same document, so that what
	// it returns is this answer's alone whatever runs beside it.
	one := &Validator{doc: v.doc, mux: v.mux, generic: v.generic, event: v.event, terminal: v.terminal,
		seen: map[string]bool{}}
	res := &http.Response{StatusCode: status, Header: header, Body: io.NopCloser(bytes.NewReader(body)), Request: req}
	one.Check(req, reqBody, res)
	_, _ = io.Copy(io.Discard, res.Body) // through the event checker, if it is a stream
	v.mu.Lock()
	defer v.mu.Unlock()
	v.checked += one.checked
	v.failures = append(v.failures, one.failures...)
	maps.Copy(v.seen, one.seen)
	return one.failures
}

// checkResponse checks status, headers and (unless stream or HEAD) body
// against the documented response.
func (v *Validator) checkResponse(req *http.Request, m *match, doc *openapi3.Response, res *http.Response, body []byte, stream bool) {
	// kin-openapi checks nothing for HEAD, 304 and a few redirects; HEAD
	// answers as GET does without the body, and a 304 still owes its headers.
	if res.StatusCode == http.StatusNotModified {
		for name, h := range doc.Headers {
			if h.Value != nil && h.Value.Required && res.Header.Get(name) == "" {
				v.fail(req, "%d: header %s is missing", res.StatusCode, name)
			}
		}
		if len(body) > 0 {
			v.fail(req, "%d has a body", res.StatusCode)
		}
		return
	}
	head := req.Method == http.MethodHead
	r := req
	if head {
		r = req.Clone(req.Context())
		r.Method = http.MethodGet
	}
	if len(doc.Content) == 0 {
		if len(body) > 0 {
			v.fail(req, "%d has a body, and the document describes none", res.StatusCode)
		}
	} else if doc.Content.Get(res.Header.Get("Content-Type")) == nil {
		v.fail(req, "%d: Content-Type %q is not one the document lists (%s)",
			res.StatusCode, res.Header.Get("Content-Type"), strings.Join(slices.Sorted(maps.Keys(doc.Content)), ", "))
		return
	}
	opts := &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true,
		ExcludeResponseBody: stream || head}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{
			Request: r, PathParams: m.params, Route: m.route, Options: opts},
		Status:  res.StatusCode,
		Header:  res.Header,
		Body:    io.NopCloser(bytes.NewReader(body)),
		Options: opts,
	}
	if err := openapi3filter.ValidateResponse(r.Context(), in); err != nil {
		v.fail(req, "%d does not match the document: %v", res.StatusCode, err)
	}
}

// checkRequest checks that a request the server accepted is one the
// document allows: the document is not stricter than the server.
func (v *Validator) checkRequest(req *http.Request, body []byte, m *match) {
	r := req.Clone(req.Context())
	if r.Method == http.MethodHead {
		r.Method = http.MethodGet
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	in := &openapi3filter.RequestValidationInput{
		Request: r, PathParams: m.params, Route: m.route,
		Options: &openapi3filter.Options{MultiError: true, AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
	}
	if err := openapi3filter.ValidateRequest(r.Context(), in); err != nil {
		v.fail(req, "the server accepted a request that the document does not allow: %v", err)
	}
}

// checkUnrouted checks an answer to a request no operation takes: a CORS
// preflight, or a 404 or 405 problem.
func (v *Validator) checkUnrouted(req *http.Request, res *http.Response, body []byte) {
	name := ""
	isPreflight := req.Method == http.MethodOptions && req.Header.Get("Origin") != "" &&
		req.Header.Get("Access-Control-Request-Method") != ""
	switch {
	case isPreflight && res.StatusCode == http.StatusNoContent:
		name = preflight
	case isPreflight && res.StatusCode == http.StatusForbidden:
		name = preflightRefused
	case res.StatusCode == http.StatusNotFound:
		name = notFound
	case res.StatusCode == http.StatusMethodNotAllowed:
		name = methodNotAllowed
	default:
		v.fail(req, "the document lists no operation for this request, and the answer %d is not one it describes for every path", res.StatusCode)
		return
	}
	v.saw(name)
	ref := v.generic[name]
	op := openapi3.NewOperation()
	op.Responses = openapi3.NewResponses(openapi3.WithStatus(res.StatusCode, ref))
	route := &routers.Route{Spec: v.doc, Path: req.URL.Path, Method: req.Method, Operation: op}
	v.checkResponse(req, &match{route: route}, ref.Value, res, body, false)
}

func isEventStream(h http.Header) bool {
	mt, _, err := mime.ParseMediaType(h.Get("Content-Type"))
	return err == nil && mt == "text/event-stream"
}

// errReader returns err, or io.EOF when err is nil: what a body read whole
// returned at its end.
type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	return 0, io.EOF
}

// maxFrame bounds what the event checker buffers: a frame the server
// would never write.
const maxFrame = 1 << 20

// eventChecker passes a stream's bytes to its reader and checks each whole
// frame against the document's description of the stream: a retry: field
// first, then events (StreamEvent), keep-alive comments and padding, and
// nothing after the terminal event. A frame the connection cut off is not
// checked: only whole frames were sent.
type eventChecker struct {
	v   *Validator
	req *http.Request
	r   io.ReadCloser

	buf      []byte // the bytes of the frame not yet ended
	frames   int    // frames seen, padding excluded
	finished bool   // the terminal event went by
	broken   bool   // a failure was recorded: stop checking this stream
}

func (c *eventChecker) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 && !c.broken {
		c.feed(p[:n])
	}
	return n, err
}

func (c *eventChecker) Close() error { return c.r.Close() }

func (c *eventChecker) failf(format string, args ...any) {
	c.broken = true
	c.v.fail(c.req, "event stream: "+format, args...)
}

// feed splits what arrived into frames (each ended by a blank line).
func (c *eventChecker) feed(b []byte) {
	c.buf = append(c.buf, b...)
	for !c.broken {
		// Lines end in LF (CRLF and CR are the standard's too; the server
		// writes LF, and a CR would show up as part of a line below).
		i := frameEnd(c.buf)
		if i < 0 {
			break
		}
		frame := string(c.buf[:i])
		c.buf = c.buf[i:]
		c.frame(frame)
	}
	if len(c.buf) > maxFrame {
		c.failf("a frame runs over %d bytes", maxFrame)
	}
}

// frameEnd returns the length of the first whole frame in b (through the
// blank line that ends it, or a lone blank line, which is padding), or -1.
func frameEnd(b []byte) int {
	if len(b) > 0 && b[0] == '\n' {
		return 1
	}
	if i := bytes.Index(b, []byte("\n\n")); i >= 0 {
		return i + 2
	}
	return -1
}

func (c *eventChecker) frame(frame string) {
	lines := strings.Split(strings.TrimRight(frame, "\n"), "\n")
	if len(lines) == 1 && lines[0] == "" {
		return // a blank line: padding
	}
	if strings.HasPrefix(lines[0], ":") {
		for _, l := range lines {
			text, ok := strings.CutPrefix(l, ":")
			if !ok {
				c.failf("frame %q mixes comments and fields", frame)
				return
			}
			if t := strings.TrimLeft(text, " "); t != "" && t != "keep-alive" {
				c.failf("comment %q is neither `: keep-alive` nor padding", l)
				return
			}
		}
		if c.frames == 0 {
			c.failf("the stream does not open with retry:, but with the comment %q", lines[0])
		}
		return
	}
	fields := map[string]string{}
	for _, l := range lines {
		name, value, ok := strings.Cut(l, ":")
		if !ok {
			c.failf("line %q has no colon", l)
			return
		}
		if _, dup := fields[name]; dup {
			c.failf("frame %q repeats the field %s", frame, name)
			return
		}
		fields[name] = strings.TrimPrefix(value, " ")
	}
	c.frames++
	if retry, ok := fields["retry"]; ok {
		if len(fields) != 1 || c.frames != 1 {
			c.failf("retry: comes alone and first, got frame %d %q", c.frames, frame)
			return
		}
		if _, err := strconv.ParseUint(retry, 10, 63); err != nil {
			c.failf("retry: %q is not whole milliseconds", retry)
		}
		return
	}
	if c.frames == 1 {
		c.failf("the stream does not open with retry:, but with %q", frame)
		return
	}
	if c.finished {
		c.failf("an event follows the terminal event: %q", frame)
		return
	}
	ev := map[string]any{}
	for name, value := range fields {
		ev[name] = value
	}
	if data, ok := fields["data"]; ok {
		var parsed any
		if err := json.Unmarshal([]byte(data), &parsed); err != nil {
			c.failf("data %q is not JSON: %v", data, err)
			return
		}
		ev["data"] = parsed
		if u, ok := parsed.(map[string]any); ok && slices.Contains(c.v.terminal, fmt.Sprint(u["status"])) {
			c.finished = true
		}
	}
	if err := c.v.event.VisitJSON(ev, openapi3.EnableJSONSchema2020()); err != nil {
		c.failf("event %q does not match StreamEvent: %v", frame, err)
	}
}
