package httpapi

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderstream/orderstream/docs"
	"github.com/orderstream/orderstream/docs/openapitest"
	"github.com/orderstream/orderstream/shared/broker"
	"github.com/orderstream/orderstream/shared/broker/brokertest"
	"github.com/orderstream/orderstream/shared/order"
	"github.com/orderstream/orderstream/shared/sse"
)

// apiDoc checks every answer this package's tests get through
// http.DefaultClient (http.Get and the like) against docs/openapi.yaml;
// TestMain fails the run if one does not match.
var apiDoc *openapitest.Validator

func TestMain(m *testing.M) {
	v, err := openapitest.Load()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	apiDoc = v
	os.Exit(v.Run(m))
}

// routeList records the patterns addRoutes registers.
type routeList []string

func (l *routeList) Handle(pattern string, _ http.Handler) { *l = append(*l, pattern) }

// TestOpenAPIListsEveryRoute: the server's own route table and the
// document's operations are the same set. Every route a setting turns on is
// on here (Metrics); GET patterns answer HEAD too, which the document says
// once for all.
func TestOpenAPIListsEveryRoute(t *testing.T) {
	b := broker.NewMemory(brokertest.Options())
	defer b.Close()
	cfg := testConfig(Config{Metrics: prometheus.NewRegistry()})
	var routes routeList
	addRoutes(&routes, discardLogger(), b, cfg, newMetrics(cfg.Metrics), nil, nil)
	var served []string
	for _, p := range routes {
		served = append(served, strings.Replace(p, "{$}", "", 1)) // "GET /{$}" is the document's "GET /"
	}
	slices.Sort(served)
	documented := apiDoc.Operations()
	for _, r := range served {
		if !slices.Contains(documented, r) {
			t.Errorf("the server answers %q, which docs/openapi.yaml does not document", r)
		}
	}
	for _, op := range documented {
		if !slices.Contains(served, op) {
			t.Errorf("docs/openapi.yaml documents %q, which the server does not answer", op)
		}
	}
}

// contractClient sends requests through v's transport.
func contractClient(v *openapitest.Validator) *http.Client {
	return &http.Client{Transport: v.Transport(&http.Transport{})}
}

// TestOpenAPIContract sends every kind of request, good and bad, under
// every setting that changes the answers, and holds each answer to
// docs/openapi.yaml (kin-openapi); then every answer the document lists
// must have come up, so that it promises nothing the server never says.
func TestOpenAPIContract(t *testing.T) {
	v, err := openapitest.Load()
	if err != nil {
		t.Fatal(err)
	}
	client := contractClient(v)
	k := testKeys()
	ctx := context.Background()

	// The answer to a body that never arrives (408) takes bodyReadTimeout:
	// start it first and collect it last.
	plainB := broker.NewMemory(brokertest.Options())
	defer plainB.Close()
	plain, _ := newTestServer(t, plainB, Config{Metrics: prometheus.NewRegistry()})
	slow := make(chan int, 1)
	pr, pw := io.Pipe()
	defer pw.Close()
	go func() {
		req, _ := http.NewRequest("POST", plain.URL+"/orders/"+uuid.NewString()+"/events", pr)
		req.Header.Set("Content-Type", "application/json")
		req.ContentLength = 20
		res, err := client.Do(req)
		if err != nil {
			slow <- 0
			return
		}
		res.Body.Close()
		slow <- res.StatusCode
	}()
	pw.Write([]byte(`{"sta`))

	down := broker.NewMemory(brokertest.Options())
	downSrv, _ := newTestServer(t, down, Config{})
	down.Close()
	limitsB := broker.NewMemory(brokertest.Options())
	defer limitsB.Close()
	limited, _ := newTestServer(t, limitsB, Config{MaxStreamsPerClient: 1})
	authB := broker.NewMemory(brokertest.Options())
	defer authB.Close()
	authed, _ := newTestServer(t, authB, Config{Metrics: prometheus.NewRegistry(), Auth: verifier(t, AuthConfig{Secret: k.secret, Cookie: testCookie})})
	// A caller that serves with the Verifier despite NewVerifier's error.
	vanished, _ := NewVerifier(AuthConfig{PublicKeyFile: filepath.Join(t.TempDir(), "vanished.pem")})
	broken, _ := newTestServer(t, authB, Config{Metrics: prometheus.NewRegistry(), Auth: vanished})
	corsSrv, _ := newTestServer(t, plainB, Config{CORSAllowedOrigins: []string{"https://shop.example"}})
	drainB := broker.NewMemory(brokertest.Options())
	defer drainB.Close()
	var shuttingDown atomic.Bool
	draining, _ := newTestServer(t, drainB, Config{ShuttingDown: shuttingDown.Load})
	shuttingDown.Store(true)

	id := uuid.NewString()
	finished := uuid.NewString()
	for _, s := range []order.Status{order.Created, order.Delivered} {
		if _, err := plainB.Publish(ctx, uuid.MustParse(finished), broker.PublishRequest{Status: s}); err != nil {
			t.Fatal(err)
		}
	}
	keyed := uuid.NewString()
	hs := func(c Claims) http.Header {
		return http.Header{"Authorization": {"Bearer " + mint(t, jwt.SigningMethodHS256, k.secret, c)}}
	}
	json := http.Header{"Content-Type": {"application/json"}}
	with := func(h http.Header, kv ...string) http.Header {
		out := h.Clone()
		if out == nil {
			out = http.Header{}
		}
		for i := 0; i < len(kv); i += 2 {
			out.Set(kv[i], kv[i+1])
		}
		return out
	}
	etag := ""

	type request struct {
		name   string
		base   string
		method string
		path   string
		header http.Header
		body   string
		status int
	}
	tests := []request{
		{"page", plain.URL, "GET", "/", nil, "", 200},
		{"page HEAD", plain.URL, "HEAD", "/", nil, "", 200},
		{"health", plain.URL, "GET", "/healthz", nil, "", 200},
		{"health HEAD", plain.URL, "HEAD", "/healthz", nil, "", 200},
		{"health, broker down", downSrv.URL, "GET", "/healthz", nil, "", 503},
		{"health, draining", draining.URL, "GET", "/healthz", nil, "", 503},
		{"metrics", plain.URL, "GET", "/metrics", nil, "", 200},
		{"metrics, protobuf", plain.URL, "GET", "/metrics", http.Header{"Accept": {"application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"}}, "", 200},
		{"metrics off", downSrv.URL, "GET", "/metrics", nil, "", 404},
		{"the document", plain.URL, "GET", "/openapi.yaml", nil, "", 200},
		{"the document HEAD", plain.URL, "HEAD", "/openapi.yaml", nil, "", 200},

		{"publish", plain.URL, "POST", "/orders/" + id + "/events", json, `{"status":"Created"}`, 201},
		{"publish with a key", plain.URL, "POST", "/orders/" + keyed + "/events", with(json, "Idempotency-Key", "k-1"), `{"status":"Created"}`, 201},
		{"publish, the key again", plain.URL, "POST", "/orders/" + keyed + "/events", with(json, "Idempotency-Key", "k-1"), `{"status":"Created"}`, 201},
		{"publish, the key for another status", plain.URL, "POST", "/orders/" + keyed + "/events", with(json, "Idempotency-Key", "k-1"), `{"status":"Packed"}`, 422},
		{"publish, charset and an extra field", plain.URL, "POST", "/orders/" + strings.ToUpper(id) + "/events", http.Header{"Content-Type": {"application/json; charset=utf-8"}}, `{"status":"Packed","note":"x"}`, 201},
		{"publish, bad id", plain.URL, "POST", "/orders/42/events", json, `{"status":"Created"}`, 400},
		{"publish, unknown status", plain.URL, "POST", "/orders/" + id + "/events", json, `{"status":"Lost"}`, 400},
		{"publish, bad key", plain.URL, "POST", "/orders/" + id + "/events", with(json, "Idempotency-Key", "two words"), `{"status":"Shipped"}`, 400},
		{"publish, backwards", plain.URL, "POST", "/orders/" + id + "/events", json, `{"status":"Created"}`, 409},
		{"publish, too big", plain.URL, "POST", "/orders/" + id + "/events", json, `{"status":"Shipped","pad":"` + strings.Repeat("x", 70<<10) + `"}`, 413},
		{"publish, no content type", plain.URL, "POST", "/orders/" + id + "/events", nil, `{"status":"Shipped"}`, 415},
		{"publish, broker down", downSrv.URL, "POST", "/orders/" + id + "/events", json, `{"status":"Shipped"}`, 503},

		{"get", plain.URL, "GET", "/orders/" + id, nil, "", 200},
		{"get HEAD", plain.URL, "HEAD", "/orders/" + id, nil, "", 200},
		{"get, bad id", plain.URL, "GET", "/orders/%20", nil, "", 400},
		{"get, no such order", plain.URL, "GET", "/orders/" + uuid.NewString(), nil, "", 404},
		{"get, broker down", downSrv.URL, "GET", "/orders/" + id, nil, "", 503},

		{"simulate", plain.URL, "POST", "/orders/" + uuid.NewString() + "/simulate?interval=0s", nil, "", 200},
		{"simulate, default interval, one step left", plain.URL, "POST", "/orders/" + id + "/simulate?interval=1ms", nil, "", 200},
		{"simulate, bad interval", plain.URL, "POST", "/orders/" + id + "/simulate?interval=soon", nil, "", 400},
		{"simulate, finished", plain.URL, "POST", "/orders/" + finished + "/simulate", nil, "", 409},
		{"simulate, broker down", downSrv.URL, "POST", "/orders/" + id + "/simulate?interval=0s", nil, "", 503},

		{"stream, finished, from the start", plain.URL, "GET", "/orders/" + finished + "/stream", nil, "", 200},
		{"stream HEAD", plain.URL, "HEAD", "/orders/" + id + "/stream", nil, "", 200},
		{"stream, bad Last-Event-ID", plain.URL, "GET", "/orders/" + id + "/stream", http.Header{"Last-Event-Id": {"garbage"}}, "", 400},
		{"stream, bad lastEventId", plain.URL, "GET", "/orders/" + id + "/stream?lastEventId=%27", nil, "", 400},
		{"stream, broker down", downSrv.URL, "GET", "/orders/" + id + "/stream", nil, "", 503},

		{"unknown path", plain.URL, "GET", "/nope", nil, "", 404},
		{"trailing slash", plain.URL, "GET", "/orders/" + id + "/stream/", nil, "", 404},
		{"dot segments", plain.URL, "GET", "/orders/" + id + "/../" + id, nil, "", 404},
		{"method not allowed", plain.URL, "PUT", "/orders/" + id + "/events", json, `{}`, 405},
		{"OPTIONS without CORS", plain.URL, "OPTIONS", "/orders/" + id, http.Header{"Origin": {"https://shop.example"}, "Access-Control-Request-Method": {"GET"}}, "", 405},
		{"preflight", corsSrv.URL, "OPTIONS", "/orders/" + id + "/stream", http.Header{"Origin": {"https://shop.example"}, "Access-Control-Request-Method": {"GET"}}, "", 204},
		{"preflight, another origin", corsSrv.URL, "OPTIONS", "/orders/" + id + "/stream", http.Header{"Origin": {"https://evil.example"}, "Access-Control-Request-Method": {"GET"}}, "", 403},
		{"CORS problem", corsSrv.URL, "GET", "/orders/" + uuid.NewString(), http.Header{"Origin": {"https://shop.example"}}, "", 404},
	}
	for _, p := range []struct{ method, path, body string }{
		{"GET", "/orders/" + id, ""},
		{"GET", "/orders/" + id + "/stream", ""},
		{"POST", "/orders/" + id + "/events", `{"status":"Shipped"}`},
		{"POST", "/orders/" + id + "/simulate?interval=0s", ""},
		{"GET", "/metrics", ""},
	} {
		tests = append(tests,
			request{p.method + " " + p.path + " without a token", authed.URL, p.method, p.path, json, p.body, 401},
			request{p.method + " " + p.path + " with an expired token", authed.URL, p.method, p.path,
				with(hs(Claims{RegisteredClaims: jwt.RegisteredClaims{ExpiresAt: jwt.NewNumericDate(time.Now().Add(-time.Hour))}}), "Content-Type", "application/json"), p.body, 401},
			request{p.method + " " + p.path + " with a token for something else", authed.URL, p.method, p.path,
				with(hs(claims("", uuid.NewString())), "Content-Type", "application/json"), p.body, 403},
			request{p.method + " " + p.path + " with auth misconfigured", broken.URL, p.method, p.path, json, p.body, 500},
		)
	}
	tests = append(tests,
		request{"get with a token in the URL", authed.URL, "GET", "/orders/" + uuid.NewString() + "?access_token=" + mint(t, jwt.SigningMethodHS256, k.secret, claims("", AllOrders)), nil, "", 404},
		request{"publish with a token", authed.URL, "POST", "/orders/" + uuid.NewString() + "/events", with(hs(claims(ScopePublish)), "Content-Type", "application/json"), `{"status":"Created"}`, 201},
	)

	send := func(t *testing.T, r request) *http.Response {
		t.Helper()
		var body io.Reader
		if r.body != "" {
			body = strings.NewReader(r.body)
		}
		req, err := http.NewRequest(r.method, r.base+r.path, body)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range r.header {
			req.Header[k] = v
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := send(t, tt)
			b, _ := io.ReadAll(res.Body) // a stream here ends: its order is finished
			res.Body.Close()
			if res.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", res.StatusCode, tt.status, b)
			}
			if tt.name == "the document" {
				etag = res.Header.Get("ETag")
			}
		})
	}

	t.Run("the document, unchanged", func(t *testing.T) {
		for _, inm := range []string{etag, "W/" + etag, `"other", ` + etag, "*"} {
			res := send(t, request{base: plain.URL, method: "GET", path: "/openapi.yaml", header: http.Header{"If-None-Match": {inm}}})
			res.Body.Close()
			if res.StatusCode != 304 {
				t.Fatalf("If-None-Match %s: %d, want 304", inm, res.StatusCode)
			}
		}
		res := send(t, request{base: plain.URL, method: "GET", path: "/openapi.yaml", header: http.Header{"If-None-Match": {`"other"`}}})
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Fatalf("another ETag: %d, want 200", res.StatusCode)
		}
	})

	t.Run("live stream to its end, then 204", func(t *testing.T) {
		live := uuid.NewString()
		res := send(t, request{base: plain.URL, method: "GET", path: "/orders/" + live + "/stream"})
		defer res.Body.Close()
		dec := sse.NewDecoder(res.Body)
		go client.Post(plain.URL+"/orders/"+live+"/simulate?interval=1ms", "", nil)
		var last sse.Message
		for {
			m, err := dec.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			last = m
		}
		if !strings.Contains(last.Data, `"Delivered"`) {
			t.Fatalf("the stream ended after %+v", last)
		}
		res = send(t, request{base: plain.URL, method: "GET", path: "/orders/" + live + "/stream", header: http.Header{"Last-Event-Id": {last.ID}}})
		res.Body.Close()
		if res.StatusCode != 204 {
			t.Fatalf("resume after the terminal event: %d, want 204", res.StatusCode)
		}
	})

	t.Run("per-client limit", func(t *testing.T) {
		first := send(t, request{base: limited.URL, method: "GET", path: "/orders/" + uuid.NewString() + "/stream"})
		defer first.Body.Close()
		res := send(t, request{base: limited.URL, method: "GET", path: "/orders/" + uuid.NewString() + "/stream"})
		res.Body.Close()
		if res.StatusCode != 429 {
			t.Fatalf("a second stream: %d, want 429", res.StatusCode)
		}
	})

	select {
	case got := <-slow:
		if got != http.StatusRequestTimeout {
			t.Errorf("a body that never arrives: %d, want 408", got)
		}
	case <-time.After(bodyReadTimeout + 20*time.Second):
		t.Error("a body that never arrives: no answer")
	}
	for _, f := range v.Failures() {
		t.Errorf("does not match docs/openapi.yaml: %s", f)
	}
	for _, u := range v.Uncovered() {
		t.Errorf("docs/openapi.yaml lists %s, which no request here got", u)
	}
}

// TestOpenAPIContractCanFail: the real server's answers, checked against a
// document changed in one place, fail where the change says otherwise.
func TestOpenAPIContractCanFail(t *testing.T) {
	b := broker.NewMemory(brokertest.Options())
	defer b.Close()
	srv, _ := newTestServer(t, b, Config{})
	finished := uuid.New()
	b.Publish(context.Background(), finished, broker.PublishRequest{Status: order.Delivered})
	down := broker.NewMemory(brokertest.Options())
	downSrv, _ := newTestServer(t, down, Config{})
	down.Close()

	tests := []struct {
		name, old, new string
		url            string
		want           string
	}{
		{"a stream header", `const: "no"`, `const: "yes"`, srv.URL + "/orders/" + finished.String() + "/stream", `"X-Accel-Buffering" doesn't match`},
		{"the event's type", "const: order-update", "const: update", srv.URL + "/orders/" + finished.String() + "/stream", "does not match StreamEvent"},
		{"a JSON body", "type: string\n          const: ok", "type: string\n          const: fine", srv.URL + "/healthz", "body doesn't match"},
		{"Retry-After", "type: integer\n        minimum: 0", "type: integer\n        maximum: 2", downSrv.URL + "/healthz", `"Retry-After" doesn't match`},
		{"a status", "\"503\":\n          $ref: \"#/components/responses/ServiceUnavailable\"\n  /orders/{id}:", "\"504\":\n          $ref: \"#/components/responses/ServiceUnavailable\"\n  /orders/{id}:",
			downSrv.URL + "/healthz", "status 503 is not documented"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if strings.Count(docs.OpenAPI, tt.old) != 1 {
				t.Fatalf("the document has %d of %q, want 1", strings.Count(docs.OpenAPI, tt.old), tt.old)
			}
			v, err := openapitest.New([]byte(strings.Replace(docs.OpenAPI, tt.old, tt.new, 1)))
			if err != nil {
				t.Fatal(err)
			}
			res, err := contractClient(v).Get(tt.url)
			if err != nil {
				t.Fatal(err)
			}
			io.ReadAll(res.Body)
			res.Body.Close()
			f := v.Failures()
			if len(f) != 1 || !strings.Contains(f[0], tt.want) {
				t.Fatalf("want one failure with %q, got %q", tt.want, f)
			}
		})
	}
}
