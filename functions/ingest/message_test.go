package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/orderstream/orderstream/shared/httpapi"
)

func TestParseMessage(t *testing.T) {
	const id = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
	tests := []struct {
		name   string
		body   string
		want   httpapi.PublishInput // when field == ""
		field  string               // the InputError's field
		status string
	}{
		{"direct, no key: the key is derived", `{"orderId":"` + id + `","status":"Shipped"}`,
			httpapi.PublishInput{OrderID: id, IdempotencyKey: "ingest:Shipped"}, "", "Shipped"},
		{"direct with a key", `{"orderId":"` + id + `","status":"Shipped","idempotencyKey":"s-1"}`,
			httpapi.PublishInput{OrderID: id, IdempotencyKey: "s-1"}, "", "Shipped"},
		{"unknown fields are ignored", `{"orderId":"` + id + `","status":"Packed","warehouse":"B2","idempotencyKey":null}`,
			httpapi.PublishInput{OrderID: id, IdempotencyKey: "ingest:Packed"}, "", "Packed"},
		{"EventBridge event: the detail's fields", eventBridgeBody("ev-1", map[string]string{"orderId": id, "status": "Packed", "idempotencyKey": "p"}),
			httpapi.PublishInput{OrderID: id, IdempotencyKey: "p"}, "", "Packed"},
		{"EventBridge event: its top-level fields are not the order's",
			`{"detail-type":"OrderStatusChanged","orderId":"` + id + `","detail":{"status":"Packed"}}`,
			httpapi.PublishInput{IdempotencyKey: "ingest:Packed"}, "", "Packed"},
		{"detail-type without detail is a direct message", `{"detail-type":"x","orderId":"` + id + `","status":"Packed"}`,
			httpapi.PublishInput{OrderID: id, IdempotencyKey: "ingest:Packed"}, "", "Packed"},
		{"empty body", ``, httpapi.PublishInput{}, "body", ""},
		{"not JSON", `orderId=1`, httpapi.PublishInput{}, "body", ""},
		{"truncated", `{"orderId":"` + id + `"`, httpapi.PublishInput{}, "body", ""},
		{"an array", `[]`, httpapi.PublishInput{}, "body", ""},
		{"two objects", `{}{}`, httpapi.PublishInput{}, "body", ""},
		{"status a number", `{"orderId":"` + id + `","status":5}`, httpapi.PublishInput{}, "body", ""},
		{"detail not an object", `{"detail-type":"OrderStatusChanged","detail":"Shipped"}`, httpapi.PublishInput{}, "body", ""},
		{"empty key", `{"orderId":"` + id + `","status":"Packed","idempotencyKey":""}`, httpapi.PublishInput{}, "idempotencyKey", ""},
		{"over 64 KiB", `{"orderId":"` + id + `","status":"Packed","pad":"` + strings.Repeat(" ", 64<<10) + `"}`, httpapi.PublishInput{}, "body", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, err := parseMessage(tt.body)
			if tt.field != "" {
				var ie *httpapi.InputError
				if !errors.As(err, &ie) || ie.Field != tt.field {
					t.Fatalf("parseMessage: %+v %v, want an InputError on %s", in, err, tt.field)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseMessage: %v", err)
			}
			if in.OrderID != tt.want.OrderID || in.IdempotencyKey != tt.want.IdempotencyKey || in.Status == nil || *in.Status != tt.status {
				t.Errorf("parseMessage = %+v (status %v), want %+v with status %s", in, in.Status, tt.want, tt.status)
			}
		})
	}
}

// FuzzParseMessage: any body is parsed or refused as malformed, never
// anything else; what is parsed, Publish's check accepts or refuses as
// malformed too.
func FuzzParseMessage(f *testing.F) {
	f.Add(`{"orderId":"7c9e6679-7425-40de-944b-e07fc1f90ae7","status":"Shipped"}`)
	f.Add(eventBridgeBody("e", map[string]string{"orderId": "x", "status": "Created", "idempotencyKey": "k"}))
	f.Add(`{"detail-type":"a","detail":null}`)
	f.Add(`{"status":"\u0000"}`)
	f.Fuzz(func(t *testing.T, body string) {
		in, err := parseMessage(body)
		var ie *httpapi.InputError
		if err != nil {
			if !errors.As(err, &ie) {
				t.Fatalf("parseMessage(%q): %v is no InputError", body, err)
			}
			return
		}
		if _, _, err := in.Check(); err != nil && !errors.As(err, &ie) {
			t.Fatalf("Check(%+v): %v is no InputError", in, err)
		}
	})
}

// TestMetricsLine: a batch's tally is one line of CloudWatch's embedded
// metric format, with the three metrics declared under the function's name.
func TestMetricsLine(t *testing.T) {
	var buf bytes.Buffer
	m := newMetrics(&buf, "orderstream-IngestFunction-abc")
	m.now = func() time.Time { return time.UnixMilli(1795607178114) }
	m.record(tally{accepted: 3, stale: 1, malformed: 1, skipped: 2})
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil || bytes.Count(buf.Bytes(), []byte("\n")) != 1 {
		t.Fatalf("not one JSON line: %q %v", buf.String(), err)
	}
	want := `{"CloudWatchMetrics":[{"Dimensions":[["FunctionName"]],"Metrics":[{"Name":"IngestAccepted","Unit":"Count"},{"Name":"IngestStale","Unit":"Count"},{"Name":"IngestFailed","Unit":"Count"}],"Namespace":"orderstream"}],"Timestamp":1795607178114}`
	if got, _ := json.Marshal(line["_aws"]); string(got) != want {
		t.Errorf("_aws = %s\nwant %s", got, want)
	}
	for k, v := range map[string]any{
		"FunctionName": "orderstream-IngestFunction-abc", "IngestAccepted": 3.0, "IngestStale": 1.0, "IngestFailed": 3.0,
		"IngestMalformed": 1.0, "IngestNotTried": 2.0, "IngestKeyConflict": 0.0, "IngestBrokerUnavailable": 0.0,
	} {
		if line[k] != v {
			t.Errorf("%s = %v, want %v", k, line[k], v)
		}
	}
	var nilMetrics *metrics
	nilMetrics.record(tally{accepted: 1}) // records nothing, and does not panic
}
