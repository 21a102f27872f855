package httpapi

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/orderstream/orderstream/shared/broker"
	"github.com/orderstream/orderstream/shared/broker/brokertest"
	"github.com/orderstream/orderstream/shared/order"
)

// The fuzzers send outside input through the whole handler: whatever comes
// in, the answer is a known status, errors are problem+json, never a 500.

func fuzzHandler(f *testing.F, cfg Config) (http.Handler, broker.Broker) {
	b := broker.NewMemory(brokertest.Options())
	f.Cleanup(func() { b.Close() })
	return NewServer(slog.New(slog.NewTextHandler(io.Discard, nil)), b, testConfig(cfg)), b
}

func checkAnswer(t *testing.T, rec *httptest.ResponseRecorder, allowed ...int) {
	t.Helper()
	ok := false
	for _, s := range allowed {
		ok = ok || rec.Code == s
	}
	if !ok {
		t.Fatalf("status %d (allowed %v): %s", rec.Code, allowed, rec.Body)
	}
	if rec.Code >= 400 {
		var p problem
		if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
			t.Fatalf("%d with Content-Type %q", rec.Code, ct)
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || p.Status != rec.Code || p.Detail == "" {
			t.Fatalf("bad problem body %q: %v", rec.Body, err)
		}
	}
}

func FuzzPublish(f *testing.F) {
	h, _ := fuzzHandler(f, Config{})
	for _, s := range []struct{ id, ct, body string }{
		{uuid.NewString(), "application/json", `{"status":"Created"}`},
		{uuid.NewString(), "application/json; charset=utf-8", `{"status":"Shipped","x":[1,{}]}`},
		{"not-a-uuid", "application/json", `{"status":"Created"}`},
		{uuid.NewString(), "text/plain", `{"status":"Created"}`},
		{uuid.NewString(), "application/json", `{"status":`},
		{uuid.NewString(), "application/json", `{"status":null}`},
		{uuid.NewString(), "application/json", `{"status":"\u0000"}`},
		{uuid.NewString(), "", ``},
	} {
		f.Add(s.id, s.ct, s.body)
	}
	f.Fuzz(func(t *testing.T, id, ct, body string) {
		req := httptest.NewRequest("POST", "/orders/x/events", strings.NewReader(body))
		req.URL.Path = "/orders/" + id + "/events"
		req.URL.RawPath = ""
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		checkAnswer(t, rec, 201, 400, 404, 405, 409, 413, 415)
		if rec.Code == 201 {
			var u order.Update
			if err := json.Unmarshal(rec.Body.Bytes(), &u); err != nil || !u.Status.Valid() {
				t.Fatalf("201 with body %q", rec.Body)
			}
		}
	})
}

func FuzzStreamRequest(f *testing.F) {
	// HistoryOnly: the stream answers and ends, so each input returns.
	h, b := fuzzHandler(f, Config{HistoryOnly: true})
	id := uuid.New()
	ev, _ := b.Publish(context.Background(), id, broker.PublishRequest{Status: order.Created})
	done := uuid.New()
	b.Publish(context.Background(), done, broker.PublishRequest{Status: order.Delivered})
	for _, s := range []struct{ id, header, query string }{
		{id.String(), ev.ID, ""},
		{id.String(), "", ev.ID},
		{done.String(), "99999999999999-0", ""},
		{id.String(), "1-2-3", ""},
		{"{" + id.String() + "}", "", "0-0"},
		{"urn:uuid:" + id.String(), "18446744073709551615-18446744073709551615", ""},
	} {
		f.Add(s.id, s.header, s.query)
	}
	f.Fuzz(func(t *testing.T, id, header, query string) {
		req := httptest.NewRequest("GET", "/orders/x/stream", nil)
		req.URL.Path = "/orders/" + id + "/stream"
		req.URL.RawPath = ""
		req.URL.RawQuery = url.Values{"lastEventId": {query}}.Encode()
		if header != "" {
			req.Header["Last-Event-Id"] = []string{header}
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		checkAnswer(t, rec, 200, 204, 400, 404, 405)
	})
}

func FuzzSimulateInterval(f *testing.F) {
	h, b := fuzzHandler(f, Config{})
	// A finished order: a valid interval is answered 409 at once, so the
	// fuzzer never waits out a simulation.
	done := uuid.New()
	b.Publish(context.Background(), done, broker.PublishRequest{Status: order.Cancelled})
	for _, s := range []string{"2s", "0s", "10s", "10.000000001s", "-0s", "1e3ms", "", "1h", "+5s", ".5s", "9223372036854775807ns"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, interval string) {
		req := httptest.NewRequest("POST", "/orders/"+done.String()+"/simulate?interval="+url.QueryEscape(interval), nil)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		checkAnswer(t, rec, 400, 409)
	})
}
