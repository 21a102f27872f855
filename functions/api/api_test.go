package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/google/uuid"

	"github.com/orderstream/orderstream/docs/openapitest"
	"github.com/orderstream/orderstream/functions/internal/lambdatest"
	"github.com/orderstream/orderstream/shared/config"
	"github.com/orderstream/orderstream/shared/httpapi"
	"github.com/orderstream/orderstream/shared/service"
	"github.com/orderstream/orderstream/shared/socketstreams"
	"github.com/orderstream/orderstream/shared/sse"
)

// These tests run the built api bootstrap under the real Lambda Runtime
// Interface Emulator (aws-lambda-rie, what SAM runs inside its containers),
// send it the API Gateway HTTP API (payload 2.0) events that `sam local
// start-api` and API Gateway send, and compare every answer with what the
// same core answers over plain HTTP, wired as the local server wires it;
// both sides' answers are held to docs/openapi.yaml (side.checkDoc).

// rieVersion is the aws-lambda-rie the tests run (the repository tags no
// module versions: this is the pseudo-version of its main branch that the Go
// module proxy serves). Keep in step with RIE_VERSION in functions/lambda.mk.
const (
	riePackage = "github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie"
	rieVersion = "v0.0.0-20261030222936-bef5c4ba774d"
)

var bootstrap, rie string

// apiDoc checks every answer of both sides against docs/openapi.yaml, as
// the tests of shared/httpapi and local check the core's over HTTP.
var apiDoc *openapitest.Validator

func TestMain(m *testing.M) {
	flag.Parse()
	var err error
	if apiDoc, err = openapitest.Load(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if testing.Short() {
		os.Exit(m.Run()) // no bootstrap nor aws-lambda-rie: the tests that run them skip (lambdatest.SkipShort)
	}
	dir, err := os.MkdirTemp("", "orderstream-api-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := 1
	defer func() {
		os.RemoveAll(dir)
		os.Exit(code)
	}()
	if bootstrap, err = lambdatest.BuildBootstrap(dir, "."); err != nil {
		fmt.Fprintln(os.Stderr, "build the api bootstrap:", err)
		return
	}
	if rie, err = rieBinary(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	code = m.Run()
	if testing.Verbose() {
		fmt.Fprintf(os.Stderr, "openapitest: %d answers checked against docs/openapi.yaml\n", apiDoc.Checked())
	}
}

// rieBinary returns aws-lambda-rie: $AWS_LAMBDA_RIE, else bin/aws-lambda-rie
// at the repository root (`make lambda-rie`), else one installed from the Go
// module proxy into dir (a link from the build cache after the first time).
func rieBinary(dir string) (string, error) {
	if p := os.Getenv("AWS_LAMBDA_RIE"); p != "" {
		return p, nil
	}
	if p, err := filepath.Abs(filepath.Join("..", "..", "bin", "aws-lambda-rie")); err == nil {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p, nil
		}
	}
	cmd := exec.Command(lambdatest.GoTool(), "install", riePackage+"@"+rieVersion)
	cmd.Env = append(os.Environ(), "GOBIN="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("these tests need the Lambda Runtime Interface Emulator, and "+
			"`go install %s@%s` failed (is the Go module proxy reachable? "+
			"or set AWS_LAMBDA_RIE=/path/to/aws-lambda-rie): %v\n%s", riePackage, rieVersion, err, out)
	}
	return filepath.Join(dir, "aws-lambda-rie"), nil
}

func TestRIEVersionMatchesMakefile(t *testing.T) {
	mk, err := os.ReadFile(filepath.Join("..", "lambda.mk"))
	if err != nil {
		t.Fatal(err)
	}
	want := regexp.MustCompile(`(?m)^RIE_VERSION\s*:?=\s*(\S+)`).FindSubmatch(mk)
	if want == nil || string(want[1]) != rieVersion {
		t.Errorf("functions/lambda.mk RIE_VERSION = %q, this test's rieVersion = %q: keep them equal", want, rieVersion)
	}
}

// functionEnv is the configuration both sides get.
var functionEnv = map[string]string{
	"HEARTBEAT_INTERVAL": "15s",
	"RETRY_INTERVAL":     "3s",
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startRIE runs aws-lambda-rie with the api bootstrap on free loopback ports
// (never its defaults, 8080 and 9001, which a running `make run` or another
// test could hold) and returns its invoke URL.
func startRIE(t *testing.T) (string, *lambdatest.Process) {
	rieAddr, runtimeAddr := freeAddr(t), freeAddr(t)
	env := []string{
		"AWS_LAMBDA_FUNCTION_NAME=orderstream-api",
		"AWS_LAMBDA_FUNCTION_TIMEOUT=60",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE=128",
		"AWS_REGION=eu-west-1",
		"LOG_LEVEL=warn",
	}
	if lambdatest.RaceEnabled {
		env = append(env, "GORACE=atexit_sleep_ms=50")
	}
	for k, v := range functionEnv {
		env = append(env, k+"="+v)
	}
	proc := lambdatest.Start(t, rie, env,
		"--runtime-interface-emulator-address", rieAddr,
		"--runtime-api-address", runtimeAddr,
		bootstrap)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", rieAddr)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("aws-lambda-rie is not listening on %s: %v\n%s", rieAddr, err, proc.Stderr())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return "http://" + rieAddr + "/2015-03-31/functions/function/invocations", proc
}

// request is one HTTP request of the contract, sent to both sides.
type request struct {
	method, path, query string
	header              map[string]string
	body                string
	base64              bool // API Gateway base64-encodes bodies it takes for binary
	// order, with lastIndex >= 0, resumes a stream of order after its event
	// number lastIndex as that side issued it (ids differ between sides):
	// in Last-Event-ID, or in lastEventId if lastAsQuery. A stream request
	// with lastIndex < 0 records the ids the side issued.
	order       string
	lastIndex   int
	lastAsQuery bool
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// v2Event is the HTTP API payload 2.0 event for r, as API Gateway (and
// sam local start-api) build it: lowercase header names, raw path and query.
func v2Event(r request, header map[string]string) []byte {
	h := map[string]string{"host": "abc123.execute-api.eu-west-1.amazonaws.com", "user-agent": "curl/8"}
	for k, v := range header {
		h[strings.ToLower(k)] = v
	}
	body := r.body
	if r.base64 {
		body = base64.StdEncoding.EncodeToString([]byte(body))
	}
	var qs map[string]string
	if r.query != "" {
		qs = map[string]string{}
		for _, kv := range strings.Split(r.query, "&") {
			k, v, _ := strings.Cut(kv, "=")
			qs[k] = v
		}
	}
	ev := events.APIGatewayV2HTTPRequest{
		Version:               "2.0",
		RouteKey:              "ANY /{proxy+}",
		RawPath:               r.path,
		RawQueryString:        r.query,
		Headers:               h,
		QueryStringParameters: qs,
		PathParameters:        map[string]string{"proxy": strings.TrimPrefix(r.path, "/")},
		Body:                  body,
		IsBase64Encoded:       r.base64,
		RequestContext: events.APIGatewayV2HTTPRequestContext{
			RouteKey:     "ANY /{proxy+}",
			AccountID:    "123456789012",
			Stage:        "$default",
			RequestID:    uuid.NewString(),
			APIID:        "abc123",
			DomainName:   "abc123.execute-api.eu-west-1.amazonaws.com",
			DomainPrefix: "abc123",
			Time:         time.Now().UTC().Format("02/Jan/2006:15:04:05 -0700"),
			TimeEpoch:    time.Now().UnixMilli(),
			HTTP: events.APIGatewayV2HTTPRequestContextHTTPDescription{
				Method: r.method, Path: r.path, Protocol: "HTTP/1.1", SourceIP: "192.0.2.1", UserAgent: "curl/8",
			},
		},
	}
	b, err := json.Marshal(ev)
	if err != nil {
		panic(err)
	}
	return b
}

// side is one deployment under test, with the event ids it has issued.
type side struct {
	name string
	do   func(t *testing.T, r request, header map[string]string) response
	ids  map[string][]string // order -> event ids seen in its streams, in order
}

func (s *side) send(t *testing.T, r request) response {
	t.Helper()
	header := map[string]string{}
	for k, v := range r.header {
		header[k] = v
	}
	if r.order != "" && r.lastIndex >= 0 {
		ids := s.ids[r.order]
		if r.lastIndex >= len(ids) {
			t.Fatalf("%s: no event %d of %s seen yet", s.name, r.lastIndex, r.order)
		}
		if r.lastAsQuery {
			r.query = "lastEventId=" + ids[r.lastIndex]
		} else {
			header["Last-Event-ID"] = ids[r.lastIndex]
		}
	}
	res := s.do(t, r, header)
	s.checkDoc(t, r, header, res)
	if strings.HasPrefix(res.header.Get("Content-Type"), "text/event-stream") && r.order != "" && r.lastIndex < 0 {
		s.ids[r.order] = nil
		for _, m := range decodeEvents(t, res.body) {
			s.ids[r.order] = append(s.ids[r.order], m.ID)
		}
	}
	return res
}

// checkDoc holds an answer to docs/openapi.yaml: status, headers, body,
// and for an event stream every frame (a live stream read until idle may
// end mid-frame; that frame is not checked).
func (s *side) checkDoc(t *testing.T, r request, header map[string]string, res response) {
	t.Helper()
	target := r.path
	if r.query != "" {
		target += "?" + r.query
	}
	req := httptest.NewRequest(r.method, target, strings.NewReader(r.body))
	for k, v := range header {
		req.Header.Set(k, v)
	}
	for _, f := range apiDoc.CheckWhole(req, []byte(r.body), res.status, res.header, res.body) {
		t.Errorf("%s: the answer does not match docs/openapi.yaml: %s", s.name, f)
	}
}

func lambdaSide(invokeURL string) *side {
	client := &http.Client{Timeout: 70 * time.Second}
	return &side{name: "lambda", ids: map[string][]string{}, do: func(t *testing.T, r request, header map[string]string) response {
		t.Helper()
		res, err := client.Post(invokeURL, "application/json", bytes.NewReader(v2Event(r, header)))
		if err != nil {
			t.Fatalf("invoke through aws-lambda-rie: %v", err)
		}
		defer res.Body.Close()
		raw, err := io.ReadAll(res.Body)
		if err != nil || res.StatusCode != http.StatusOK {
			t.Fatalf("aws-lambda-rie answered %s: %s (%v)", res.Status, raw, err)
		}
		var out events.APIGatewayV2HTTPResponse
		if err := json.Unmarshal(raw, &out); err != nil || out.StatusCode == 0 {
			t.Fatalf("not an HTTP API response (a function error?): %s", raw)
		}
		h := http.Header{}
		for k, v := range out.Headers {
			h.Set(k, v)
		}
		for _, c := range out.Cookies {
			h.Add("Set-Cookie", c)
		}
		body := []byte(out.Body)
		if out.IsBase64Encoded {
			if body, err = base64.StdEncoding.DecodeString(out.Body); err != nil {
				t.Fatalf("base64 body: %v", err)
			}
		}
		return response{status: out.StatusCode, header: h, body: body}
	}}
}

// httpSide is the core over real HTTP, configured as the local server
// configures it: its streams are live, so a stream is read until it ends or
// falls idle (the history has arrived by then).
func httpSide(t *testing.T) *side {
	s, err := config.FromEnv(func(k string) string { return functionEnv[k] })
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.DiscardHandler)
	svc, err := service.Open(context.Background(), logger, s)
	if err != nil {
		t.Fatal(err)
	}
	b := svc.Broker
	streams := socketstreams.New(logger, svc.HTTP, socketstreams.Options{Register: true})
	srv := httptest.NewServer(streams.Wrap(httpapi.NewServer(logger, b, svc.HTTP)))
	t.Cleanup(func() {
		streams.Close()
		srv.Close()
		b.Close()
	})
	return &side{name: "http", ids: map[string][]string{}, do: func(t *testing.T, r request, header map[string]string) response {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		u := srv.URL + r.path
		if r.query != "" {
			u += "?" + r.query
		}
		req, err := http.NewRequestWithContext(ctx, r.method, u, strings.NewReader(r.body))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range header {
			req.Header.Set(k, v)
		}
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var body []byte
		if strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
			body = readUntilIdle(res.Body, cancel, 300*time.Millisecond)
		} else if body, err = io.ReadAll(res.Body); err != nil {
			t.Fatal(err)
		}
		return response{status: res.StatusCode, header: res.Header, body: body}
	}}
}

// readUntilIdle reads a live stream until it ends or nothing arrives for
// idle, then cancels it.
func readUntilIdle(r io.Reader, cancel func(), idle time.Duration) []byte {
	type chunk struct {
		b   []byte
		err error
	}
	chunks := make(chan chunk)
	go func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := r.Read(buf)
			chunks <- chunk{bytes.Clone(buf[:n]), err}
			if err != nil {
				return
			}
		}
	}()
	var body []byte
	timer := time.NewTimer(idle)
	defer timer.Stop()
	for {
		select {
		case c := <-chunks:
			body = append(body, c.b...)
			if c.err != nil {
				return body
			}
			timer.Reset(idle)
		case <-timer.C:
			cancel()
			for c := range chunks { // until the reader sees the cancellation
				if c.err != nil {
					return body
				}
			}
		}
	}
}

func decodeEvents(t *testing.T, body []byte) []sse.Message {
	t.Helper()
	var out []sse.Message
	dec := sse.NewDecoder(bytes.NewReader(body))
	for {
		m, err := dec.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("decode %q: %v", body, err)
		}
		out = append(out, m)
	}
}

// shape is a body with what may differ between two deployments blanked:
// timestamps, and event ids (numbered instead).
func shape(t *testing.T, contentType string, body []byte) any {
	t.Helper()
	switch {
	case len(body) == 0:
		return ""
	case strings.HasPrefix(contentType, "text/event-stream"):
		var frames []any
		dec := sse.NewDecoder(bytes.NewReader(body))
		for i := 0; ; i++ {
			m, err := dec.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("decode %q: %v", body, err)
			}
			frames = append(frames, map[string]any{"id": i, "event": m.Event, "data": shape(t, "application/json", []byte(m.Data))})
		}
		retry, _ := dec.Retry()
		return map[string]any{"retry": retry, "events": frames}
	case strings.Contains(contentType, "json"):
		var v any
		if err := json.Unmarshal(body, &v); err != nil {
			t.Fatalf("JSON body %q: %v", body, err)
		}
		if m, ok := v.(map[string]any); ok {
			if _, ok := m["timestamp"]; ok {
				m["timestamp"] = "<timestamp>"
			}
		}
		return v
	default:
		return string(body)
	}
}

// headersThatMatter are compared between the sides; Content-Length, Date and
// the like are the transport's business.
var headersThatMatter = []string{
	"Content-Type", "Cache-Control", "X-Accel-Buffering", "Allow", "Retry-After", "Location",
	"Content-Security-Policy", "X-Content-Type-Options",
}

func TestAPIFunctionMatchesCore(t *testing.T) {
	invokeURL, proc := startRIE(t)
	lambda, plain := lambdaSide(invokeURL), httpSide(t)

	o1, o2, o3, o4 := uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString()
	asJSON := map[string]string{"Content-Type": "application/json"}
	tooBig := `{"status":"Created","padding":"` + strings.Repeat("x", 70<<10) + `"}`
	none := -1
	cases := []struct {
		name string
		req  request
		want int
	}{
		{"healthz", request{method: "GET", path: "/healthz", lastIndex: none}, 200},
		{"page", request{method: "GET", path: "/", lastIndex: none}, 200},
		{"get unknown order", request{method: "GET", path: "/orders/" + o1, lastIndex: none}, 404},
		{"get bad id", request{method: "GET", path: "/orders/not-a-uuid", lastIndex: none}, 400},
		{"publish without content type", request{method: "POST", path: "/orders/" + o1 + "/events", body: `{"status":"Created"}`, lastIndex: none}, 415},
		{"publish malformed JSON", request{method: "POST", path: "/orders/" + o1 + "/events", header: asJSON, body: `{"status":`, lastIndex: none}, 400},
		{"publish unknown status", request{method: "POST", path: "/orders/" + o1 + "/events", header: asJSON, body: `{"status":"Lost"}`, lastIndex: none}, 400},
		{"publish too large", request{method: "POST", path: "/orders/" + o1 + "/events", header: asJSON, body: tooBig, lastIndex: none}, 413},
		{"publish", request{method: "POST", path: "/orders/" + o1 + "/events", header: asJSON, body: `{"status":"Created"}`, lastIndex: none}, 201},
		{"publish base64 body", request{method: "POST", path: "/orders/" + o1 + "/events", header: asJSON, body: `{"status":"Shipped"}`, base64: true, lastIndex: none}, 201},
		{"publish refused", request{method: "POST", path: "/orders/" + o1 + "/events", header: asJSON, body: `{"status":"Packed"}`, lastIndex: none}, 409},
		{"get", request{method: "GET", path: "/orders/" + o1, lastIndex: none}, 200},
		{"stream (replay) of an open order", request{method: "GET", path: "/orders/" + o1 + "/stream", order: o1, lastIndex: none}, 200},
		{"stream after Last-Event-ID", request{method: "GET", path: "/orders/" + o1 + "/stream", order: o1, lastIndex: 0}, 200},
		{"stream after lastEventId", request{method: "GET", path: "/orders/" + o1 + "/stream", order: o1, lastIndex: 0, lastAsQuery: true}, 200},
		{"stream of an order without events", request{method: "GET", path: "/orders/" + o3 + "/stream", lastIndex: none}, 200},
		{"simulate", request{method: "POST", path: "/orders/" + o2 + "/simulate", query: "interval=0s", lastIndex: none}, 200},
		{"simulate finished order", request{method: "POST", path: "/orders/" + o2 + "/simulate", query: "interval=0s", lastIndex: none}, 409},
		{"simulate interval too long", request{method: "POST", path: "/orders/" + o2 + "/simulate", query: "interval=11s", lastIndex: none}, 400},
		{"simulate bad interval", request{method: "POST", path: "/orders/" + o2 + "/simulate", query: "interval=soon", lastIndex: none}, 400},
		{"simulate with an interval", request{method: "POST", path: "/orders/" + o4 + "/simulate", query: "interval=40ms", lastIndex: none}, 200},
		{"stream of a finished order", request{method: "GET", path: "/orders/" + o2 + "/stream", order: o2, lastIndex: none}, 200},
		{"stream after the last event", request{method: "GET", path: "/orders/" + o2 + "/stream", order: o2, lastIndex: 5}, 204},
		{"stream with a foreign Last-Event-ID", request{method: "GET", path: "/orders/" + o2 + "/stream", header: map[string]string{"Last-Event-ID": "abc"}, lastIndex: none}, 400},
		{"method not allowed", request{method: "DELETE", path: "/orders/" + o1, lastIndex: none}, 405},
		{"unknown path", request{method: "GET", path: "/nope", lastIndex: none}, 404},
	}
	checked := apiDoc.Checked()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, want := lambda.send(t, tc.req), plain.send(t, tc.req)
			if got.status != tc.want || want.status != tc.want {
				t.Fatalf("status: lambda %d, http %d, contract %d\nlambda body %s\nhttp body %s", got.status, want.status, tc.want, got.body, want.body)
			}
			for _, k := range headersThatMatter {
				if g, w := got.header.Get(k), want.header.Get(k); g != w {
					t.Errorf("header %s: lambda %q, http %q", k, g, w)
				}
			}
			ct := want.header.Get("Content-Type")
			if g, w := shape(t, ct, got.body), shape(t, ct, want.body); !reflect.DeepEqual(g, w) {
				t.Errorf("body:\nlambda %v\nhttp   %v\n(raw lambda %q)", g, w, got.body)
			}
		})
	}

	if n := apiDoc.Checked() - checked; n != 2*len(cases) {
		t.Errorf("%d answers checked against docs/openapi.yaml, want both sides' %d", n, 2*len(cases))
	}
	if t.Failed() {
		t.Logf("aws-lambda-rie and bootstrap output:\n%s\n%s", proc.Stdout(), proc.Stderr())
	}
}
