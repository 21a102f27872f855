package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/aws/aws-lambda-go/events"
)

// TestEventHandlerRequests checks what the handler sees of each kind of
// event: method, path, query, headers and cookies, whichever way they came.
func TestEventHandlerRequests(t *testing.T) {
	tests := []struct {
		name  string
		event string
		want  map[string]string // what the handler sees
	}{{
		name: "function URL, cookies in their own field",
		event: `{"rawPath":"/orders/x/stream","rawQueryString":"lastEventId=1-0",
			"cookies":["orderstream_token=abc","other=1"],"headers":{"accept":"text/event-stream"},
			"requestContext":{"http":{"method":"GET","path":"/orders/x/stream","sourceIp":"192.0.2.1"}}}`,
		want: map[string]string{"method": "GET", "path": "/orders/x/stream", "query": "1-0",
			"token": "abc", "accept": "text/event-stream"},
	}, {
		name: "function URL, no cookies",
		event: `{"rawPath":"/healthz","headers":{},
			"requestContext":{"http":{"method":"GET","path":"/healthz"}}}`,
		want: map[string]string{"method": "GET", "path": "/healthz", "query": "", "token": "", "accept": ""},
	}, {
		name: "REST API, multi-value headers and query win",
		event: `{"httpMethod":"GET","path":"/orders/x/stream",
			"headers":{"Accept":"x"},"multiValueHeaders":{"Accept":["text/event-stream"],"Cookie":["orderstream_token=def"]},
			"queryStringParameters":{"lastEventId":"0-0"},"multiValueQueryStringParameters":{"lastEventId":["2-0"]},
			"requestContext":{"identity":{"sourceIp":"192.0.2.2"}}}`,
		want: map[string]string{"method": "GET", "path": "/orders/x/stream", "query": "2-0",
			"token": "def", "accept": "text/event-stream"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := map[string]string{}
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				got["method"], got["path"] = r.Method, r.URL.Path
				got["query"], got["accept"] = r.URL.Query().Get("lastEventId"), r.Header.Get("Accept")
				got["token"] = ""
				if c, err := r.Cookie("orderstream_token"); err == nil {
					got["token"] = c.Value
				}
				w.WriteHeader(http.StatusNoContent)
			})
			res, err := eventHandler(h)(context.Background(), json.RawMessage(tt.event))
			if err != nil {
				t.Fatal(err)
			}
			var body io.Reader
			switch r := res.(type) {
			case *events.LambdaFunctionURLStreamingResponse:
				body = r.Body
			case *events.APIGatewayProxyStreamingResponse:
				body = r.Body
			default:
				t.Fatalf("response of type %T", res)
			}
			if _, err := io.Copy(io.Discard, body); err != nil {
				t.Fatal(err)
			}
			for k, want := range tt.want {
				if got[k] != want {
					t.Errorf("%s: got %q, want %q", k, got[k], want)
				}
			}
		})
	}
}
