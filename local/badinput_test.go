package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// TestBadInput: every kind of bad request gets a problem+json 4xx that says
// what was wrong, and never a 500.
func TestBadInput(t *testing.T) {
	s := startServer(t, nil)
	id := newID()
	publish(t, s.URL, id, "Created")
	done := newID()
	publish(t, s.URL, done, "Delivered")
	big := `{"status":"Shipped","pad":"` + strings.Repeat("x", 70<<10) + `"}`

	type header = http.Header
	tests := []struct {
		name   string
		method string
		path   string
		header header
		body   string
		status int
		allow  string // the Allow header a 405 must carry
	}{
		// Ids.
		{"stream bad id", "GET", "/orders/not-a-uuid/stream", nil, "", 400, ""},
		{"stream numeric id", "GET", "/orders/42/stream", nil, "", 400, ""},
		{"stream id too long", "GET", "/orders/" + id + "0/stream", nil, "", 400, ""},
		{"publish bad id", "POST", "/orders/xyz/events", jsonHeader, `{"status":"Created"}`, 400, ""},
		{"simulate bad id", "POST", "/orders/xyz/simulate", nil, "", 400, ""},
		{"get bad id", "GET", "/orders/%20", nil, "", 400, ""},
		{"get unknown order", "GET", "/orders/" + newID(), nil, "", 404, ""},

		// Last-Event-ID.
		{"garbage Last-Event-ID", "GET", "/orders/" + id + "/stream", header{"Last-Event-Id": {"garbage"}}, "", 400, ""},
		{"Last-Event-ID with three parts", "GET", "/orders/" + id + "/stream", header{"Last-Event-Id": {"1-2-3"}}, "", 400, ""},
		{"Last-Event-ID negative", "GET", "/orders/" + id + "/stream", header{"Last-Event-Id": {"-1-0"}}, "", 400, ""},
		{"Last-Event-ID overflow", "GET", "/orders/" + id + "/stream", header{"Last-Event-Id": {"99999999999999999999999-0"}}, "", 400, ""},
		{"garbage lastEventId query", "GET", "/orders/" + id + "/stream?lastEventId=%27%3Bdrop", nil, "", 400, ""},

		// Bodies and content types.
		{"no content type", "POST", "/orders/" + id + "/events", nil, `{"status":"Packed"}`, 415, ""},
		{"text/plain", "POST", "/orders/" + id + "/events", header{"Content-Type": {"text/plain"}}, `{"status":"Packed"}`, 415, ""},
		{"form", "POST", "/orders/" + id + "/events", header{"Content-Type": {"application/x-www-form-urlencoded"}}, `status=Packed`, 415, ""},
		{"garbled content type", "POST", "/orders/" + id + "/events", header{"Content-Type": {"application/json; ===="}}, `{"status":"Packed"}`, 415, ""},
		{"malformed JSON", "POST", "/orders/" + id + "/events", jsonHeader, `{status: Packed}`, 400, ""},
		{"truncated JSON", "POST", "/orders/" + id + "/events", jsonHeader, `{"status":"Pac`, 400, ""},
		{"empty body", "POST", "/orders/" + id + "/events", jsonHeader, ``, 400, ""},
		{"array body", "POST", "/orders/" + id + "/events", jsonHeader, `["Packed"]`, 400, ""},
		{"null body", "POST", "/orders/" + id + "/events", jsonHeader, `null`, 400, ""},
		{"two values", "POST", "/orders/" + id + "/events", jsonHeader, `{"status":"Packed"}{"status":"Packed"}`, 400, ""},
		{"missing status", "POST", "/orders/" + id + "/events", jsonHeader, `{}`, 400, ""},
		{"numeric status", "POST", "/orders/" + id + "/events", jsonHeader, `{"status":3}`, 400, ""},
		{"unknown status", "POST", "/orders/" + id + "/events", jsonHeader, `{"status":"Lost"}`, 400, ""},
		{"wrong case status", "POST", "/orders/" + id + "/events", jsonHeader, `{"status":"packed"}`, 400, ""},
		{"oversize body", "POST", "/orders/" + id + "/events", jsonHeader, big, 413, ""},
		{"not allowed transition", "POST", "/orders/" + id + "/events", jsonHeader, `{"status":"Created"}`, 409, ""},
		{"after terminal", "POST", "/orders/" + done + "/events", jsonHeader, `{"status":"Cancelled"}`, 409, ""},

		// Intervals.
		{"interval not a duration", "POST", "/orders/" + newID() + "/simulate?interval=soon", nil, "", 400, ""},
		{"interval without unit", "POST", "/orders/" + newID() + "/simulate?interval=5", nil, "", 400, ""},
		{"interval empty", "POST", "/orders/" + newID() + "/simulate?interval=", nil, "", 400, ""},
		{"interval negative", "POST", "/orders/" + newID() + "/simulate?interval=-1s", nil, "", 400, ""},
		{"interval over 10s", "POST", "/orders/" + newID() + "/simulate?interval=10.001s", nil, "", 400, ""},
		{"interval huge", "POST", "/orders/" + newID() + "/simulate?interval=9999999999h", nil, "", 400, ""},
		{"simulate terminal", "POST", "/orders/" + done + "/simulate?interval=0s", nil, "", 409, ""},

		// Methods and paths.
		{"PUT events", "PUT", "/orders/" + id + "/events", jsonHeader, `{"status":"Packed"}`, 405, "POST"},
		{"GET events", "GET", "/orders/" + id + "/events", nil, "", 405, "POST"},
		{"POST stream", "POST", "/orders/" + id + "/stream", nil, "", 405, "GET, HEAD"},
		{"DELETE order", "DELETE", "/orders/" + id, nil, "", 405, "GET, HEAD"},
		{"POST healthz", "POST", "/healthz", nil, "", 405, "GET, HEAD"},
		{"GET simulate", "GET", "/orders/" + id + "/simulate", nil, "", 405, "POST"},
		{"unknown path", "GET", "/nope", nil, "", 404, ""},
		{"orders root", "GET", "/orders", nil, "", 404, ""},
		{"unknown sub-resource", "GET", "/orders/" + id + "/history", nil, "", 404, ""},
		{"dot segments", "GET", "/orders/" + id + "/../" + id + "/stream", nil, "", 404, ""},
		{"double slash", "GET", "/orders//" + id, nil, "", 404, ""},
		{"trailing slash", "GET", "/orders/" + id + "/stream/", nil, "", 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := do(t, tt.method, s.URL+tt.path, tt.header, tt.body)
			if res.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", res.StatusCode, tt.status, bodyOf(res))
			}
			if ct := res.Header.Get("Content-Type"); ct != "application/problem+json" {
				t.Fatalf("Content-Type %q, want application/problem+json", ct)
			}
			var p struct {
				Title  string `json:"title"`
				Status int    `json:"status"`
				Detail string `json:"detail"`
			}
			if err := json.NewDecoder(res.Body).Decode(&p); err != nil {
				t.Fatalf("problem body: %v", err)
			}
			if p.Status != tt.status || p.Title == "" || p.Detail == "" {
				t.Fatalf("problem %+v lacks title, status or detail", p)
			}
			if tt.allow != "" && res.Header.Get("Allow") != tt.allow {
				t.Fatalf("Allow %q, want %q", res.Header.Get("Allow"), tt.allow)
			}
		})
	}

	// The transition refusal names the current status.
	res := do(t, "POST", s.URL+"/orders/"+done+"/events", jsonHeader, `{"status":"Cancelled"}`)
	var p struct {
		CurrentStatus string `json:"currentStatus"`
		Detail        string `json:"detail"`
	}
	json.NewDecoder(res.Body).Decode(&p)
	if p.CurrentStatus != "Delivered" || !strings.Contains(p.Detail, "Delivered") {
		t.Fatalf("409 body %+v does not name the current status Delivered", p)
	}

	// Nothing above moved the order.
	if res := get(t, s.URL+"/orders/"+id); !strings.Contains(bodyOf(res), `"Created"`) {
		t.Fatal("a refused request changed the order")
	}

	// Good forms that look odd are accepted.
	okHeader := header{"Content-Type": {"application/json; charset=utf-8"}}
	if res := do(t, "POST", s.URL+"/orders/"+id+"/events", okHeader, `{"status":"Packed","note":"extra fields are ignored"}`); res.StatusCode != 201 {
		t.Fatalf("JSON with charset and an extra field: %d %s", res.StatusCode, bodyOf(res))
	}
}
