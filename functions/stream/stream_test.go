package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/google/uuid"

	"github.com/orderstream/orderstream/docs/openapitest"
	"github.com/orderstream/orderstream/functions/internal/lambdatest"
	"github.com/orderstream/orderstream/shared/broker/redistest"
	"github.com/orderstream/orderstream/shared/sse"
)

// These tests run the built bootstrap against a fake Lambda Runtime API
// (lambdatest.Runtime), as Lambda would run it.
//
// How a test publishes while a stream is open: the in-process broker lives in
// the bootstrap process, so the publish must be an invocation of that same
// process while the stream invocation is still running. A standard Lambda
// instance runs one invocation at a time (in a deployment the publish reaches
// another instance and comes back through Redis); aws-lambda-go's runtime
// loop also runs several at once when AWS_LAMBDA_MAX_CONCURRENCY says so (as
// Lambda Managed Instances do), each invocation with the same protocol,
// adapter and handler. The tests use that: the process long-polls /next
// several times, the fake hands it the stream, then the publishes, so a
// publish and the stream it feeds meet in one broker, and nothing in the
// function is test-only.

var bootstrap string // the built functions/stream bootstrap

// apiDoc checks every answer of the function against docs/openapi.yaml (see
// integrationResponse), as the tests of shared/httpapi and local check the
// core's over HTTP.
var apiDoc *openapitest.Validator

func TestMain(m *testing.M) {
	if os.Getenv(panicChildEnv) != "" {
		os.Exit(m.Run()) // a child of TestLambdaurlPanicKillsProcess: no build
	}
	flag.Parse()
	var err error
	if apiDoc, err = openapitest.Load(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if testing.Short() {
		os.Exit(m.Run()) // no bootstrap: the tests that run it skip (lambdatest.SkipShort)
	}
	dir, err := os.MkdirTemp("", "orderstream-stream-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bootstrap, err = lambdatest.BuildBootstrap(dir, ".")
	if err != nil {
		fmt.Fprintln(os.Stderr, "build the stream bootstrap:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	if testing.Verbose() {
		fmt.Fprintf(os.Stderr, "openapitest: %d answers checked against docs/openapi.yaml\n", apiDoc.Checked())
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

const (
	testCap       = 3 * time.Second        // MAX_STREAM_DURATION in these tests
	testHeartbeat = 200 * time.Millisecond // HEARTBEAT_INTERVAL
	wait          = 10 * time.Second       // bound of every wait: the machines are shared
)

// urlEvent is a Lambda function URL event, as the URL sends it (header names
// lowercased).
func urlEvent(method, path, rawQuery string, headers map[string]string, body string) []byte {
	h := map[string]string{"host": "abc123.lambda-url.eu-west-1.on.aws", "user-agent": "test"}
	for k, v := range headers {
		h[strings.ToLower(k)] = v
	}
	ev := events.LambdaFunctionURLRequest{
		Version:        "2.0",
		RawPath:        path,
		RawQueryString: rawQuery,
		Headers:        h,
		Body:           body,
		RequestContext: events.LambdaFunctionURLRequestContext{
			AccountID:    "anonymous",
			RequestID:    uuid.NewString(),
			DomainName:   "abc123.lambda-url.eu-west-1.on.aws",
			DomainPrefix: "abc123",
			APIID:        "abc123",
			TimeEpoch:    time.Now().UnixMilli(),
			HTTP: events.LambdaFunctionURLRequestContextHTTPDescription{
				Method: method, Path: path, Protocol: "HTTP/1.1", SourceIP: "192.0.2.1", UserAgent: "test",
			},
		},
	}
	b, err := json.Marshal(ev)
	if err != nil {
		panic(err)
	}
	return b
}

// restEvent is an API Gateway REST API proxy event (payload 1.0), which the
// streaming integration (response-streaming-invocations) sends.
func restEvent(method, path string, query map[string][]string, headers map[string][]string, body string) []byte {
	single := map[string]string{}
	mv := map[string][]string{"Host": {"abc123.execute-api.eu-west-1.amazonaws.com"}}
	for k, v := range headers {
		mv[k] = v
	}
	for k, v := range mv {
		single[k] = v[len(v)-1]
	}
	var q map[string]string
	if len(query) > 0 {
		q = map[string]string{}
		for k, v := range query {
			q[k] = v[len(v)-1]
		}
	}
	ev := events.APIGatewayProxyRequest{
		Resource:                        "/{proxy+}",
		Path:                            path,
		HTTPMethod:                      method,
		Headers:                         single,
		MultiValueHeaders:               mv,
		QueryStringParameters:           q,
		MultiValueQueryStringParameters: query,
		PathParameters:                  map[string]string{"proxy": strings.TrimPrefix(path, "/")},
		Body:                            body,
		RequestContext: events.APIGatewayProxyRequestContext{
			AccountID:  "123456789012",
			ResourceID: "abc",
			Stage:      "live",
			RequestID:  uuid.NewString(),
			DomainName: "abc123.execute-api.eu-west-1.amazonaws.com",
			HTTPMethod: method,
			Path:       "/live" + path,
			Protocol:   "HTTP/1.1",
			Identity:   events.APIGatewayRequestIdentity{SourceIP: "192.0.2.1", UserAgent: "test"},
		},
	}
	b, err := json.Marshal(ev)
	if err != nil {
		panic(err)
	}
	return b
}

// prelude is the JSON ahead of a streamed HTTP response body.
type prelude struct {
	StatusCode        int                 `json:"statusCode"`
	Headers           map[string]string   `json:"headers"`
	MultiValueHeaders map[string][]string `json:"multiValueHeaders"`
	Cookies           []string            `json:"cookies"`
}

// integrationResponse checks that res is a complete, clean streamed HTTP
// response (content type application/vnd.awslambda.http-integration-response:
// JSON prelude, 8 NUL bytes, body) that docs/openapi.yaml allows as the
// answer to the invocation's event, and splits it.
func integrationResponse(t *testing.T, res lambdatest.Result) (prelude, []byte) {
	t.Helper()
	if res.Kind != "response" {
		t.Fatalf("the function posted %q, not a response: %s", res.Kind, res.Body())
	}
	if ct := res.Header.Get("Content-Type"); ct != "application/vnd.awslambda.http-integration-response" {
		t.Errorf("response POST Content-Type = %q, want application/vnd.awslambda.http-integration-response", ct)
	}
	if et := res.Trailer.Get("Lambda-Runtime-Function-Error-Type"); et != "" || res.ReadErr != nil {
		t.Errorf("the response broke off: error type %q, read error %v", et, res.ReadErr)
	}
	p, body, err := splitPrelude(res.Body())
	if err != nil {
		t.Fatalf("%v in %q", err, res.Body())
	}
	mismatches, err := docMismatches(res.Event, p, body)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mismatches {
		t.Errorf("the answer does not match docs/openapi.yaml: %s", m)
	}
	return p, body
}

// docMismatches returns what docs/openapi.yaml does not allow in the answer
// (p, body) to event.
func docMismatches(event []byte, p prelude, body []byte) ([]string, error) {
	req, reqBody, err := eventRequest(event)
	if err != nil {
		return nil, err
	}
	return apiDoc.CheckWhole(req, reqBody, p.StatusCode, p.header(), body), nil
}

// header is the prelude's headers as the client gets them.
func (p prelude) header() http.Header {
	h := http.Header{}
	for k, v := range p.Headers {
		h.Set(k, v)
	}
	for k, vs := range p.MultiValueHeaders {
		h[http.CanonicalHeaderKey(k)] = vs
	}
	for _, c := range p.Cookies {
		h.Add("Set-Cookie", c)
	}
	return h
}

// eventRequest is the HTTP request an event stands for, as the client sent
// it to the function URL (payload 2.0) or to the REST API (payload 1.0),
// and its body.
func eventRequest(raw []byte) (*http.Request, []byte, error) {
	var ev struct {
		events.LambdaFunctionURLRequest
		// A REST API's; Headers, Body and IsBase64Encoded are in both.
		HTTPMethod        string              `json:"httpMethod"`
		Path              string              `json:"path"`
		MultiValueQuery   map[string][]string `json:"multiValueQueryStringParameters"`
		MultiValueHeaders map[string][]string `json:"multiValueHeaders"`
	}
	if err := json.Unmarshal(raw, &ev); err != nil {
		return nil, nil, fmt.Errorf("the invoked event %q: %w", raw, err)
	}
	method, target := ev.RequestContext.HTTP.Method, ev.RawPath
	if ev.RawQueryString != "" {
		target += "?" + ev.RawQueryString
	}
	if ev.HTTPMethod != "" {
		method, target = ev.HTTPMethod, ev.Path
		if len(ev.MultiValueQuery) > 0 {
			target += "?" + url.Values(ev.MultiValueQuery).Encode()
		}
	}
	body := []byte(ev.Body)
	if ev.IsBase64Encoded {
		var err error
		if body, err = base64.StdEncoding.DecodeString(ev.Body); err != nil {
			return nil, nil, fmt.Errorf("the invoked event's body: %w", err)
		}
	}
	req := httptest.NewRequest(method, target, bytes.NewReader(body))
	for k, v := range ev.Headers {
		req.Header.Set(k, v)
	}
	for k, vs := range ev.MultiValueHeaders {
		req.Header[http.CanonicalHeaderKey(k)] = vs
	}
	if len(ev.Cookies) > 0 {
		req.Header.Add("Cookie", strings.Join(ev.Cookies, "; "))
	}
	return req, body, nil
}

func splitPrelude(raw []byte) (prelude, []byte, error) {
	i := bytes.Index(raw, make([]byte, 8)) // JSON never holds a raw NUL: the first 8 are the separator
	if i < 0 {
		return prelude{}, nil, errors.New("no 8-NUL separator after the prelude")
	}
	var p prelude
	dec := json.NewDecoder(bytes.NewReader(raw[:i]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return prelude{}, nil, fmt.Errorf("prelude %q: %w", raw[:i], err)
	}
	return p, raw[i+8:], nil
}

// decoded is an event stream's content.
type decoded struct {
	events     []sse.Message
	keepAlives int
	retry      time.Duration
	lastID     string
}

func decodeStream(t *testing.T, body []byte) decoded {
	t.Helper()
	var d decoded
	dec := sse.NewDecoder(bytes.NewReader(body))
	dec.OnComment = func(text string) {
		if text == "keep-alive" {
			d.keepAlives++
		}
	}
	for {
		m, err := dec.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("decode the stream: %v", err)
		}
		d.events = append(d.events, m)
	}
	d.retry, _ = dec.Retry()
	d.lastID = dec.LastEventID()
	return d
}

func statusOf(t *testing.T, data string) string {
	t.Helper()
	var u struct {
		OrderID, Status, Timestamp string
	}
	if err := json.Unmarshal([]byte(data), &u); err != nil {
		t.Fatalf("event data %q: %v", data, err)
	}
	return u.Status
}

// function is one bootstrap process and the fake runtime it serves.
type function struct {
	rt   *lambdatest.Runtime
	proc *lambdatest.Process
}

func startFunction(t *testing.T, env ...string) *function {
	t.Helper()
	rt := lambdatest.NewRuntime(t)
	proc := lambdatest.Start(t, bootstrap, lambdatest.LambdaEnv(rt.Addr(), env...))
	return &function{rt: rt, proc: proc}
}

// call invokes the function with event and waits for the whole response.
func (f *function) call(t *testing.T, event []byte) (prelude, []byte) {
	t.Helper()
	return integrationResponse(t, f.rt.Invoke(event, time.Time{}).Wait(t, wait))
}

func (f *function) publish(t *testing.T, order, status string) string {
	t.Helper()
	p, body := f.call(t, urlEvent("POST", "/orders/"+order+"/events", "", map[string]string{"content-type": "application/json"}, `{"status":"`+status+`"}`))
	if p.StatusCode != 201 {
		t.Fatalf("publish %s: status %d, body %s", status, p.StatusCode, body)
	}
	return string(body)
}

func TestStreamFunction(t *testing.T) {
	f := startFunction(t,
		"AWS_LAMBDA_MAX_CONCURRENCY=4",
		"HEARTBEAT_INTERVAL="+testHeartbeat.String(),
		"MAX_STREAM_DURATION="+testCap.String())

	order := uuid.NewString()
	published := map[string]string{} // status -> the publish answer, which is the event's data

	// The first stream: the order has no events yet, so it waits for them.
	streamA := f.rt.Invoke(urlEvent("GET", "/orders/"+order+"/stream", "", map[string]string{"accept": "text/event-stream"}, ""), time.Time{})
	streamA.WaitFor(t, "retry: 3000\n", wait)

	// Live: each event must reach the stream while it is still open, before
	// the next one is published.
	// A buffered response fails here: the first event would arrive only when
	// the cap ends the response, and the next publish would find no stream.
	var latencies []time.Duration
	var lastArrived time.Time
	for _, status := range []string{"Created", "PaymentConfirmed", "Packed"} {
		sent := time.Now()
		published[status] = f.publish(t, order, status)
		lastArrived = streamA.WaitFor(t, `"status":"`+status+`"`, wait)
		if r := streamA.Result(); !r.Finished.IsZero() {
			t.Fatalf("%s arrived only with the end of the response: the stream is buffered", status)
		}
		latencies = append(latencies, lastArrived.Sub(sent))
	}
	t.Logf("publish invocation queued -> event chunk at the runtime API: %v", latencies)

	// Idle: heartbeats, then the cap ends the stream cleanly.
	resA := streamA.Wait(t, testCap+wait)
	preA, bodyA := integrationResponse(t, resA)
	t.Run("streamed, not buffered", func(t *testing.T) {
		// The last event has no later publish to prove it arrived early: it
		// must have arrived well before the response ended (the stream then
		// idles until the cap), not in the burst of a buffered body's end.
		// A lower bound with a wide margin: a slow machine only widens it.
		if ahead := resA.Finished.Sub(lastArrived); ahead < testHeartbeat {
			t.Errorf("the last event arrived %v before the end of the response: buffered", ahead)
		}
		if n := len(resA.Chunks); n < 10 {
			t.Errorf("the body arrived in %d reads; a stream with 3 events and heartbeats comes in many", n)
		}
		t.Logf("body arrived in %d reads over %v; the last event %v before the end",
			len(resA.Chunks), resA.Finished.Sub(resA.Started).Round(time.Millisecond), resA.Finished.Sub(lastArrived).Round(time.Millisecond))
	})
	t.Run("prelude", func(t *testing.T) {
		if preA.StatusCode != 200 {
			t.Errorf("statusCode = %d, want 200", preA.StatusCode)
		}
		for k, want := range map[string]string{"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"} {
			if got := preA.Headers[k]; got != want {
				t.Errorf("header %s = %q, want %q (headers %v)", k, got, want, preA.Headers)
			}
		}
		if !slices.Contains(resA.TransferEncoding, "chunked") {
			t.Errorf("response POST Transfer-Encoding = %v, want chunked", resA.TransferEncoding)
		}
		var trailers []string
		for k := range resA.Trailer {
			trailers = append(trailers, k)
		}
		slices.Sort(trailers)
		t.Logf("response POST: Content-Type %q, Lambda-Runtime-Function-Response-Mode %q, Transfer-Encoding %v, trailers declared %v (empty: no mid-stream error)",
			resA.Header.Get("Content-Type"), resA.Header.Get("Lambda-Runtime-Function-Response-Mode"), resA.TransferEncoding, trailers)
	})
	a := decodeStream(t, bodyA)
	t.Run("cap", func(t *testing.T) {
		// It ended by itself (the invocation's deadline is 15 min away), and
		// not before the cap; how late depends on the machine's load.
		lived := resA.Finished.Sub(resA.Taken)
		if lived < testCap-50*time.Millisecond {
			t.Errorf("stream lived %v, want MAX_STREAM_DURATION=%v", lived, testCap)
		}
		t.Logf("stream lived %v with MAX_STREAM_DURATION=%v", lived.Round(time.Millisecond), testCap)
		// Resumable: the last id on the wire is the last event's, which the
		// browser sends back as Last-Event-ID (checked in "resume").
		if len(a.events) == 0 || a.lastID != a.events[len(a.events)-1].ID {
			t.Errorf("the capped stream's last id %q is not its last event's", a.lastID)
		}
	})
	t.Run("heartbeats", func(t *testing.T) {
		if a.retry != 3*time.Second {
			t.Errorf("retry = %v, want 3s", a.retry)
		}
		// About cap/heartbeat of them; at least a third, on a busy machine.
		if min := int(testCap / testHeartbeat / 3); a.keepAlives < min {
			t.Errorf("%d keep-alives in %v at %v, want at least %d", a.keepAlives, testCap, testHeartbeat, min)
		}
		var gaps []time.Duration
		var last time.Time
		for _, c := range resA.Chunks {
			if bytes.Equal(c.Data, []byte(": keep-alive\n\n")) {
				if !last.IsZero() {
					gaps = append(gaps, c.At.Sub(last))
				}
				last = c.At
			}
		}
		if len(gaps) > 0 {
			slices.Sort(gaps)
			t.Logf("%d keep-alives, one chunk each; gaps min %v median %v max %v (HEARTBEAT_INTERVAL %v)",
				a.keepAlives, gaps[0].Round(time.Millisecond), gaps[len(gaps)/2].Round(time.Millisecond), gaps[len(gaps)-1].Round(time.Millisecond), testHeartbeat)
		}
	})

	// Published while no stream is open; the resumed stream must get exactly
	// these and what follows.
	for _, status := range []string{"Shipped", "OutForDelivery"} {
		published[status] = f.publish(t, order, status)
	}
	streamB := f.rt.Invoke(urlEvent("GET", "/orders/"+order+"/stream", "", map[string]string{"last-event-id": a.lastID}, ""), time.Time{})
	streamB.WaitFor(t, `"status":"OutForDelivery"`, wait)
	published["Delivered"] = f.publish(t, order, "Delivered")
	deliveredAt := streamB.WaitFor(t, `"status":"Delivered"`, wait)
	resB := streamB.Wait(t, wait)
	// Ended by the terminal event, not by the cap.
	if lived := resB.Finished.Sub(resB.Taken); lived >= testCap {
		t.Errorf("the stream lived %v, the cap: it did not end at the terminal event", lived)
	}
	t.Logf("the stream ended %v after the terminal event's chunk", resB.Finished.Sub(deliveredAt).Round(time.Microsecond))
	_, bodyB := integrationResponse(t, resB)
	b := decodeStream(t, bodyB)

	t.Run("resume", func(t *testing.T) {
		all := append(append([]sse.Message(nil), a.events...), b.events...)
		want := []string{"Created", "PaymentConfirmed", "Packed", "Shipped", "OutForDelivery", "Delivered"}
		var got []string
		for _, m := range all {
			got = append(got, statusOf(t, m.Data))
			if m.Event != "order-update" {
				t.Errorf("event type %q, want order-update", m.Event)
			}
			if m.Data != strings.TrimSpace(published[statusOf(t, m.Data)]) {
				t.Errorf("event data %s differs from the publish answer %s", m.Data, published[statusOf(t, m.Data)])
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("the two streams carried %v, want each event once, in order: %v", got, want)
		}
		seen := map[string]bool{}
		for _, m := range all {
			if m.ID == "" || seen[m.ID] {
				t.Errorf("event id %q missing or repeated", m.ID)
			}
			seen[m.ID] = true
		}
	})

	t.Run("finished order is 204", func(t *testing.T) {
		p, body := f.call(t, urlEvent("GET", "/orders/"+order+"/stream", "", map[string]string{"last-event-id": b.lastID}, ""))
		if p.StatusCode != 204 || len(body) != 0 {
			t.Errorf("got %d %q, want 204 and no body", p.StatusCode, body)
		}
	})

	t.Run("problems", func(t *testing.T) {
		id := uuid.NewString()
		for _, tc := range []struct {
			name   string
			event  []byte
			status int
			allow  string
		}{
			{"bad order id", urlEvent("GET", "/orders/not-a-uuid/stream", "", nil, ""), 400, ""},
			{"bad Last-Event-ID", urlEvent("GET", "/orders/"+id+"/stream", "", map[string]string{"last-event-id": "bogus"}, ""), 400, ""},
			{"bad lastEventId", urlEvent("GET", "/orders/"+id+"/stream", "lastEventId=1%2C2", nil, ""), 400, ""},
			{"no content type", urlEvent("POST", "/orders/"+id+"/events", "", nil, `{"status":"Created"}`), 415, ""},
			{"unknown status", urlEvent("POST", "/orders/"+id+"/events", "", map[string]string{"content-type": "application/json"}, `{"status":"Lost"}`), 400, ""},
			{"unknown path", urlEvent("GET", "/nope", "", nil, ""), 404, ""},
			{"method", urlEvent("DELETE", "/orders/"+id, "", nil, ""), 405, "GET, HEAD"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				p, body := f.call(t, tc.event)
				if p.StatusCode != tc.status {
					t.Errorf("statusCode = %d, want %d; body %s", p.StatusCode, tc.status, body)
				}
				if ct := p.Headers["Content-Type"]; ct != "application/problem+json" {
					t.Errorf("Content-Type = %q, want application/problem+json", ct)
				}
				if tc.allow != "" && p.Headers["Allow"] != tc.allow {
					t.Errorf("Allow = %q, want %q", p.Headers["Allow"], tc.allow)
				}
				var prob struct {
					Title  string
					Status int
					Detail string
				}
				if err := json.Unmarshal(body, &prob); err != nil || prob.Status != tc.status || prob.Title == "" || prob.Detail == "" {
					t.Errorf("problem body %s (%v)", body, err)
				}
			})
		}
	})

	t.Run("REST API events stream too", func(t *testing.T) {
		// The VPC path: API Gateway's streaming Lambda proxy integration.
		order := uuid.NewString()
		stream := f.rt.Invoke(restEvent("GET", "/orders/"+order+"/stream", nil, nil, ""), time.Time{})
		stream.WaitFor(t, "retry: 3000\n", wait)
		p, body := f.call(t, restEvent("POST", "/orders/"+order+"/events", nil,
			map[string][]string{"Content-Type": {"application/json"}}, `{"status":"Created"}`))
		if p.StatusCode != 201 || p.Headers["Content-Type"] != "application/json" {
			t.Fatalf("publish through a REST event: %d %v %s", p.StatusCode, p.Headers, body)
		}
		stream.WaitFor(t, `"status":"Created"`, wait)
		if !stream.Result().Finished.IsZero() {
			t.Fatal("the event arrived only with the end of the response: buffered")
		}
		f.publish(t, order, "Cancelled")
		p, body = integrationResponse(t, stream.Wait(t, wait))
		if p.StatusCode != 200 || p.Headers["Content-Type"] != "text/event-stream" {
			t.Errorf("REST stream prelude %+v", p)
		}
		first := decodeStream(t, body)
		if len(first.events) != 2 {
			t.Fatalf("REST stream carried %d events, want 2: %s", len(first.events), body)
		}
		// Resume through the query parameter, as multiValueQueryStringParameters.
		p, body = f.call(t, restEvent("GET", "/orders/"+order+"/stream",
			map[string][]string{"lastEventId": {first.events[0].ID}}, nil, ""))
		rest := decodeStream(t, body)
		if p.StatusCode != 200 || len(rest.events) != 1 || statusOf(t, rest.events[0].Data) != "Cancelled" {
			t.Errorf("resume through a REST event: %d %s", p.StatusCode, body)
		}
	})

	t.Run("ends before the invocation deadline", func(t *testing.T) {
		// A deadline nearer than the cap (a function timeout below
		// MAX_STREAM_DURATION): the stream must still end cleanly, by itself.
		deadline := time.Now().Add(deadlineMargin + time.Second)
		inv := f.rt.Invoke(urlEvent("GET", "/orders/"+uuid.NewString()+"/stream", "", nil, ""), deadline)
		res := inv.Wait(t, wait)
		p, _ := integrationResponse(t, res)
		if p.StatusCode != 200 {
			t.Errorf("statusCode = %d", p.StatusCode)
		}
		// Without the margin the core ends the stream at the deadline itself,
		// after which Lambda would already have cut it off.
		early := deadline.Sub(res.Finished)
		if early <= 0 {
			t.Errorf("ended %v after the deadline, want %v before it", -early, deadlineMargin)
		}
		t.Logf("ended %v before the invocation deadline (margin %v)", early.Round(time.Millisecond), deadlineMargin)
	})

	t.Run("logs are JSON lines", func(t *testing.T) {
		requests := 0
		for line := range strings.Lines(f.proc.Stdout()) {
			var rec map[string]any
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Errorf("stdout line is not JSON: %q", line)
				continue
			}
			if rec["msg"] == "request" {
				requests++
			}
		}
		if requests == 0 {
			t.Error("no request log lines")
		}
	})

	t.Run("SIGTERM at shutdown", func(t *testing.T) {
		if !slices.Contains(f.rt.Extensions(), "GoLangEnableSIGTERM") {
			t.Errorf("extensions registered: %v; without one Lambda sends no SIGTERM", f.rt.Extensions())
		}
		f.rt.Shutdown()
		if err := f.proc.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if code := f.proc.Wait(3 * time.Second); code != 0 {
			t.Errorf("exit code %d after SIGTERM, want 0", code)
		}
		if !strings.Contains(f.proc.Stdout(), `"msg":"stopped"`) {
			t.Errorf("no stopped log line")
		}
	})
}

func TestInitErrorIsReported(t *testing.T) {
	f := startFunction(t, "MAX_STREAM_DURATION=banana")
	ie, ok := f.rt.WaitInitError(wait)
	if !ok {
		t.Fatal("no POST /runtime/init/error")
	}
	var body struct{ ErrorMessage, ErrorType string }
	if err := json.Unmarshal(ie.Body, &body); err != nil {
		t.Fatalf("init error body %q: %v", ie.Body, err)
	}
	if ie.Type != "Runtime.InitError" || body.ErrorType != ie.Type || !strings.Contains(body.ErrorMessage, "MAX_STREAM_DURATION") {
		t.Errorf("init error %s %s", ie.Type, ie.Body)
	}
	if code := f.proc.Wait(wait); code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
}

func TestDefaultMaxStreamDuration(t *testing.T) {
	f := startFunction(t)
	deadline := time.Now().Add(wait)
	for !strings.Contains(f.proc.Stdout(), `"msg":"starting"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no starting log line; stdout %q stderr %q", f.proc.Stdout(), f.proc.Stderr())
		}
		time.Sleep(20 * time.Millisecond)
	}
	capped, err := time.ParseDuration(maxStreamDuration.Value)
	if err != nil {
		t.Fatal(err)
	}
	if want := `"maxStreamDuration":"` + capped.String() + `"`; !strings.Contains(f.proc.Stdout(), want) {
		t.Errorf("starting log line lacks %s: %s", want, f.proc.Stdout())
	}
}

// TestInstancesShareRedis is the deployed topology: two Lambda instances (two
// bootstrap processes, each with its own Runtime API and one invocation at a
// time, as a standard Lambda instance runs) sharing one real redis-server.
// A stream open on instance A gets what is published on instance B, live;
// after the cap it resumes on B with nothing lost.
func TestInstancesShareRedis(t *testing.T) {
	srv := redistest.Start(t, redistest.Password("s3cret"))
	env := []string{
		"REDIS_URL=" + srv.URL(),
		"REDIS_KEY_PREFIX=lambdatest:",
		"HEARTBEAT_INTERVAL=" + testHeartbeat.String(),
		"MAX_STREAM_DURATION=" + testCap.String(),
	}
	a, b := startFunction(t, env...), startFunction(t, env...)
	order := uuid.NewString()

	streamA := a.rt.Invoke(urlEvent("GET", "/orders/"+order+"/stream", "", nil, ""), time.Time{})
	streamA.WaitFor(t, "retry: 3000\n", wait)
	published := map[string]string{}
	var latencies []time.Duration
	for _, status := range []string{"Created", "Packed"} {
		sent := time.Now()
		published[status] = b.publish(t, order, status)
		arrived := streamA.WaitFor(t, `"status":"`+status+`"`, wait)
		if !streamA.Result().Finished.IsZero() {
			t.Fatalf("%s arrived only with the end of the response: buffered", status)
		}
		latencies = append(latencies, arrived.Sub(sent))
	}
	t.Logf("publish invocation queued on B -> event chunk from A, through Redis: %v", latencies)
	_, bodyA := integrationResponse(t, streamA.Wait(t, testCap+wait))
	first := decodeStream(t, bodyA)

	published["Shipped"] = a.publish(t, order, "Shipped")
	published["Delivered"] = a.publish(t, order, "Delivered")
	_, bodyB := b.call(t, urlEvent("GET", "/orders/"+order+"/stream", "", map[string]string{"last-event-id": first.lastID}, ""))
	second := decodeStream(t, bodyB)

	var got []string
	for _, m := range append(first.events, second.events...) {
		s := statusOf(t, m.Data)
		got = append(got, s)
		if m.Data != strings.TrimSpace(published[s]) {
			t.Errorf("event data %s differs from the publish answer %s", m.Data, published[s])
		}
	}
	if want := []string{"Created", "Packed", "Shipped", "Delivered"}; !slices.Equal(got, want) {
		t.Fatalf("stream on A, then resumed on B: %v, want %v", got, want)
	}
	p, body := a.call(t, urlEvent("GET", "/orders/"+order+"/stream", "", map[string]string{"last-event-id": second.lastID}, ""))
	if p.StatusCode != 204 {
		t.Errorf("after the terminal event, on the other instance: %d %q, want 204", p.StatusCode, body)
	}
	for _, f := range []*function{a, b} {
		if !strings.Contains(f.proc.Stdout(), `"broker":"redis"`) {
			t.Errorf("an instance did not start with the Redis broker: %s", f.proc.Stdout())
		}
	}
}
