package main

import (
	"strings"
	"testing"

	"github.com/google/uuid"
)

// TestAnswersHeldToTheDocument: what integrationResponse checks every
// answer of the bootstrap with reads both kinds of event back into the
// request they stand for (method, path, query, headers, cookies, body), so
// that a wrong answer to either is caught and a right one passes.
func TestAnswersHeldToTheDocument(t *testing.T) {
	id := uuid.NewString()
	const problem = `{"type":"about:blank","title":"Bad Request","status":400,"detail":"not an order id"}`
	problemHeaders := map[string]string{"Content-Type": "application/problem+json", "Cache-Control": "no-store"}
	streamHeaders := map[string]string{"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
	event := "id: 1-0\nevent: order-update\ndata: {\"orderId\":\"" + id + "\",\"status\":\"Created\",\"timestamp\":\"2026-11-24T14:00:00Z\"}\n\n"
	for _, tc := range []struct {
		name    string
		event   []byte
		status  int
		headers map[string]string
		body    string
		want    string // in the one mismatch; "" for none
	}{
		{"a problem", urlEvent("GET", "/orders/x/stream", "", nil, ""), 400, problemHeaders, problem, ""},
		{"a problem without Cache-Control", urlEvent("GET", "/orders/x/stream", "", nil, ""), 400,
			map[string]string{"Content-Type": "application/problem+json"}, problem, `"Cache-Control" missing`},
		{"a resumed stream, REST event", restEvent("GET", "/orders/"+id+"/stream", map[string][]string{"lastEventId": {"0-1"}}, nil, ""),
			200, streamHeaders, "retry: 3000\n\n" + event, ""},
		{"a stream for a bad lastEventId, REST event", restEvent("GET", "/orders/"+id+"/stream", map[string][]string{"lastEventId": {"1,2"}}, nil, ""),
			200, streamHeaders, "retry: 3000\n\n" + event, "accepted a request that the document does not allow"},
		{"a stream whose event lacks its id, REST event", restEvent("GET", "/orders/"+id+"/stream", nil, nil, ""),
			200, streamHeaders, "retry: 3000\n\n" + strings.Replace(event, "id: 1-0\n", "", 1), "does not match StreamEvent"},
		{"a refused publish, accepted", urlEvent("POST", "/orders/"+id+"/events", "", map[string]string{"content-type": "application/json"}, `{"status":"Lost"}`),
			201, map[string]string{"Content-Type": "application/json", "Cache-Control": "no-store", "Location": "/orders/" + id},
			`{"orderId":"` + id + `","status":"Created","timestamp":"2026-11-24T14:00:00Z"}`, "accepted a request that the document does not allow"},
		{"an unknown path answered, REST event", restEvent("GET", "/nope", nil, nil, ""), 200, streamHeaders, "retry: 3000\n\n", "lists no operation"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := docMismatches(tc.event, prelude{StatusCode: tc.status, Headers: tc.headers}, []byte(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.want == "" && len(got) > 0:
				t.Errorf("a right answer: %q", got)
			case tc.want != "" && (len(got) != 1 || !strings.Contains(got[0], tc.want)):
				t.Errorf("want one mismatch with %q, got %q", tc.want, got)
			}
		})
	}
}
