package openapitest

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const (
	anID    = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
	update  = `{"orderId":"` + anID + `","status":"Shipped","timestamp":"2026-11-24T14:00:00.123456Z"}`
	problem = `{"type":"about:blank","title":"Not Found","status":404,"detail":"no such path: /x","instance":"/x"}`
)

// answer is a fake server's whole answer.
type answer struct {
	status int
	header map[string]string
	body   string
}

func (a answer) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	for k, v := range a.header {
		w.Header().Set(k, v)
	}
	w.WriteHeader(a.status)
	io.WriteString(w, a.body)
}

func problemAnswer(status int, extra ...string) answer {
	h := map[string]string{"Content-Type": "application/problem+json", "Cache-Control": "no-store"}
	for i := 0; i < len(extra); i += 2 {
		h[extra[i]] = extra[i+1]
	}
	return answer{status, h, fmt.Sprintf(`{"type":"about:blank","title":%q,"status":%d,"detail":"what went wrong"}`, http.StatusText(status), status)}
}

func streamAnswer(body string) answer {
	return answer{200, map[string]string{"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}, body}
}

const (
	event1   = "id: 1-0\nevent: order-update\ndata: " + update + "\n\n"
	terminal = "id: 2-0\nevent: order-update\ndata: {\"orderId\":\"" + anID + "\",\"status\":\"Delivered\",\"timestamp\":\"2026-11-24T14:00:01Z\"}\n\n"
)

// TestValidatorCatchesMismatches: each answer breaks the document in one
// way, and the Validator says so; the good answers pass. The same answers
// from the real server are checked by the tests of shared/httpapi and local.
func TestValidatorCatchesMismatches(t *testing.T) {
	json := map[string]string{"Content-Type": "application/json"}
	tests := []struct {
		name   string
		method string
		path   string
		body   string
		answer answer
		want   string // in the failure; "" for none
	}{
		{"a good update", "GET", "/orders/" + anID, "", answer{200, map[string]string{"Content-Type": "application/json", "Cache-Control": "no-store"}, update}, ""},
		{"a good publish", "POST", "/orders/" + anID + "/events", `{"status":"Shipped"}`,
			answer{201, map[string]string{"Content-Type": "application/json", "Cache-Control": "no-store", "Location": "/orders/" + anID}, update}, ""},
		{"a good stream", "GET", "/orders/" + anID + "/stream", "", streamAnswer("retry: 3000\n\n" + event1 + ": keep-alive\n\n:    \n\n\n" + terminal), ""},
		{"a good 404", "GET", "/nope", "", problemAnswer(404), ""},
		{"a good 405", "DELETE", "/healthz", "", problemAnswer(405, "Allow", "GET, HEAD"), ""},
		{"a good 503", "GET", "/healthz", "", problemAnswer(503, "Retry-After", "3"), ""},

		{"503 without Retry-After", "GET", "/healthz", "", problemAnswer(503), `"Retry-After" missing`},
		{"a status not documented", "GET", "/healthz", "", problemAnswer(500), "status 500 is not documented for GET /healthz"},
		{"an update without its timestamp", "GET", "/orders/" + anID, "",
			answer{200, map[string]string{"Content-Type": "application/json", "Cache-Control": "no-store"}, `{"orderId":"` + anID + `","status":"Shipped"}`}, "timestamp"},
		{"an uppercase order id", "GET", "/orders/" + anID, "",
			answer{200, map[string]string{"Content-Type": "application/json", "Cache-Control": "no-store"}, strings.Replace(update, anID, strings.ToUpper(anID), 1)}, "orderId"},
		{"an unknown status", "GET", "/orders/" + anID, "",
			answer{200, map[string]string{"Content-Type": "application/json", "Cache-Control": "no-store"}, strings.Replace(update, "Shipped", "Lost", 1)}, "status"},
		{"a problem as plain JSON", "GET", "/orders/" + anID, "", answer{404, map[string]string{"Content-Type": "application/json", "Cache-Control": "no-store"}, problem}, `Content-Type "application/json" is not one`},
		{"a problem without detail", "GET", "/nope", "", answer{404, map[string]string{"Content-Type": "application/problem+json", "Cache-Control": "no-store"}, `{"type":"about:blank","title":"Not Found","status":404}`}, "detail"},
		{"405 without Allow", "DELETE", "/healthz", "", problemAnswer(405), `"Allow" missing`},
		{"an unknown path answered", "GET", "/nope", "", answer{200, json, "{}"}, "lists no operation"},
		{"a publish without Location", "POST", "/orders/" + anID + "/events", `{"status":"Shipped"}`,
			answer{201, map[string]string{"Content-Type": "application/json", "Cache-Control": "no-store"}, update}, `"Location" missing`},
		{"a request the document refuses, accepted", "POST", "/orders/" + anID + "/events", `{"status":"Lost"}`,
			answer{201, map[string]string{"Content-Type": "application/json", "Cache-Control": "no-store", "Location": "/orders/" + anID}, update}, "accepted a request that the document does not allow"},
		{"a bad interval, accepted", "POST", "/orders/" + anID + "/simulate?interval=soon", "",
			answer{200, map[string]string{"Content-Type": "application/json", "Cache-Control": "no-store"}, `{"orderId":"` + anID + `","published":6}`}, "accepted a request"},
		{"simulate published nothing", "POST", "/orders/" + anID + "/simulate", "",
			answer{200, map[string]string{"Content-Type": "application/json", "Cache-Control": "no-store"}, `{"orderId":"` + anID + `","published":0}`}, "published"},
		{"a stream without X-Accel-Buffering", "GET", "/orders/" + anID + "/stream", "",
			answer{200, map[string]string{"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}, "retry: 3000\n\n"}, `"X-Accel-Buffering" missing`},
		{"a stream as JSON", "GET", "/orders/" + anID + "/stream", "",
			answer{200, map[string]string{"Content-Type": "application/json", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}, "{}"}, "Content-Type"},
		{"a stream without retry: first", "GET", "/orders/" + anID + "/stream", "", streamAnswer(event1), "does not open with retry:"},
		{"a stream with retry: later", "GET", "/orders/" + anID + "/stream", "", streamAnswer("retry: 3000\n\n" + event1 + "retry: 10\n\n"), "retry: comes alone and first"},
		{"an event of another type", "GET", "/orders/" + anID + "/stream", "", streamAnswer("retry: 3000\n\n" + strings.Replace(event1, "order-update", "update", 1)), "does not match StreamEvent"},
		{"an event without an id", "GET", "/orders/" + anID + "/stream", "", streamAnswer("retry: 3000\n\n" + strings.Replace(event1, "id: 1-0\n", "", 1)), "does not match StreamEvent"},
		{"an event id with a comma", "GET", "/orders/" + anID + "/stream", "", streamAnswer("retry: 3000\n\n" + strings.Replace(event1, "1-0", "1,0", 1)), "does not match StreamEvent"},
		{"event data that is not an update", "GET", "/orders/" + anID + "/stream", "", streamAnswer("retry: 3000\n\n" + strings.Replace(event1, "Shipped", "Lost", 1)), "does not match StreamEvent"},
		{"event data that is not JSON", "GET", "/orders/" + anID + "/stream", "", streamAnswer("retry: 3000\n\nid: 1-0\nevent: order-update\ndata: Shipped\n\n"), "is not JSON"},
		{"an event after the terminal one", "GET", "/orders/" + anID + "/stream", "", streamAnswer("retry: 3000\n\n" + terminal + event1), "follows the terminal event"},
		{"a stray comment", "GET", "/orders/" + anID + "/stream", "", streamAnswer("retry: 3000\n\n: hello\n\n"), "neither `: keep-alive` nor padding"},
		{"a stray field", "GET", "/orders/" + anID + "/stream", "", streamAnswer("retry: 3000\n\n" + strings.Replace(event1, "\n\n", "\nextra: 1\n\n", 1)), "does not match StreamEvent"},
		{"HEAD of a stream without its headers", "HEAD", "/orders/" + anID + "/stream", "", answer{200, map[string]string{"Content-Type": "text/event-stream"}, ""}, `"Cache-Control" missing`},
		{"304 without ETag", "GET", "/openapi.yaml", "", answer{304, map[string]string{"Cache-Control": "no-cache"}, ""}, "header ETag is missing"},
		{"401 without WWW-Authenticate", "GET", "/orders/" + anID, "", problemAnswer(401), `"WWW-Authenticate" missing`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v, err := Load()
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(tt.answer)
			defer srv.Close()
			var body io.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
			}
			req, _ := http.NewRequest(tt.method, srv.URL+tt.path, body)
			if tt.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			res, err := (&http.Client{Transport: v.Transport(nil)}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if tt.method != "HEAD" && string(got) != tt.answer.body {
				t.Fatalf("the client got %q, the server sent %q", got, tt.answer.body)
			}
			f := v.Failures()
			switch {
			case tt.want == "" && len(f) > 0:
				t.Fatalf("a good answer failed: %q", f)
			case tt.want != "" && (len(f) != 1 || !strings.Contains(f[0], tt.want)):
				t.Fatalf("want one failure with %q, got %q", tt.want, f)
			}

			// The same answer handed over whole, as a Lambda function's
			// comes back: the same verdict.
			req = httptest.NewRequest(tt.method, tt.path, strings.NewReader(tt.body))
			if tt.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			header := http.Header{}
			for k, v := range tt.answer.header {
				header.Set(k, v)
			}
			whole := tt.answer.body
			if tt.method == "HEAD" {
				whole = ""
			}
			before := v.Checked()
			f = v.CheckWhole(req, []byte(tt.body), tt.answer.status, header, []byte(whole))
			switch {
			case tt.want == "" && len(f) > 0:
				t.Fatalf("whole: a good answer failed: %q", f)
			case tt.want != "" && (len(f) != 1 || !strings.Contains(f[0], tt.want)):
				t.Fatalf("whole: want one failure with %q, got %q", tt.want, f)
			}
			if all := v.Failures(); v.Checked() != before+1 || !slices.Equal(all[len(all)-len(f):], f) {
				t.Errorf("whole: checked %d -> %d, failures %q: not recorded in the Validator too", before, v.Checked(), all)
			}
		})
	}
}

// TestUncovered: a documented answer no request got is listed, one that
// came is not.
func TestUncovered(t *testing.T) {
	v, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(problemAnswer(503, "Retry-After", "3"))
	defer srv.Close()
	res, err := (&http.Client{Transport: v.Transport(nil)}).Get(srv.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	u := v.Uncovered()
	if slices.Contains(u, "GET /healthz 503") || !slices.Contains(u, "GET /healthz 200") ||
		!slices.Contains(u, "components.responses.NotFound") {
		t.Fatalf("uncovered: %q", u)
	}
}

// TestOperations: the list the route test compares with.
func TestOperations(t *testing.T) {
	v, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	ops := v.Operations()
	for _, want := range []string{"GET /", "GET /orders/{id}/stream", "POST /orders/{id}/events"} {
		if !slices.Contains(ops, want) {
			t.Errorf("operations %q lack %q", ops, want)
		}
	}
}

// TestBinariesLeaveKinOpenAPIOut: kin-openapi is for tests; no command of
// the module links it (or this package).
func TestBinariesLeaveKinOpenAPIOut(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{if eq .Name "main"}}{{.ImportPath}}{{end}}`, "github.com/orderstream/orderstream/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	mains := strings.Fields(string(out))
	if len(mains) == 0 {
		t.Fatal("go list found no commands")
	}
	deps, err := exec.Command("go", append([]string{"list", "-deps"}, mains...)...).Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, d := range strings.Fields(string(deps)) {
		if strings.Contains(d, "getkin/kin-openapi") || strings.HasSuffix(d, "/openapitest") {
			t.Errorf("a command of %v links %s", mains, d)
		}
	}
}
