package httpapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/orderstream/orderstream/shared/broker"
	"github.com/orderstream/orderstream/shared/broker/brokertest"
	"github.com/orderstream/orderstream/shared/order"
)

func TestCORS(t *testing.T) {
	b := broker.NewMemory(brokertest.Options())
	defer b.Close()
	done := uuid.NewString()
	b.Publish(context.Background(), uuid.MustParse(done), broker.PublishRequest{Status: order.Delivered})
	const shop = "https://shop.example"
	listed := NewServer(discardLogger(), b, testConfig(Config{CORSAllowedOrigins: []string{shop, "http://localhost:3000"}, HistoryOnly: true}))
	anyOrigin := NewServer(discardLogger(), b, testConfig(Config{CORSAllowedOrigins: []string{"*"}, HistoryOnly: true}))
	off := NewServer(discardLogger(), b, testConfig(Config{HistoryOnly: true}))

	preflight := func(origin, method string) *http.Request {
		r := httptest.NewRequest("OPTIONS", "/orders/"+uuid.NewString()+"/events", nil)
		r.Header.Set("Origin", origin)
		r.Header.Set("Access-Control-Request-Method", method)
		r.Header.Set("Access-Control-Request-Headers", "authorization,content-type")
		return r
	}
	request := func(method, path, origin string) *http.Request {
		r := httptest.NewRequest(method, path, nil)
		if origin != "" {
			r.Header.Set("Origin", origin)
		}
		return r
	}
	tests := []struct {
		name        string
		h           http.Handler
		corsOff     bool
		req         *http.Request
		status      int
		allowOrigin string // "" for none
		credentials bool
	}{
		{"preflight from a listed origin", listed, false, preflight(shop, "POST"), 204, shop, true},
		{"preflight, origin in another case", listed, false, preflight("HTTPS://SHOP.example", "POST"), 204, "HTTPS://SHOP.example", true},
		{"preflight from another origin", listed, false, preflight("https://evil.example", "POST"), 403, "", false},
		{"preflight to an unknown path", listed, false, func() *http.Request {
			r := preflight(shop, "GET")
			r.URL.Path = "/nowhere"
			return r
		}(), 204, shop, true},
		{"preflight with any origin allowed", anyOrigin, false, preflight("https://evil.example", "POST"), 204, "*", false},
		{"preflight with CORS off", off, true, preflight(shop, "POST"), 405, "", false},
		{"a stream", listed, false, request("GET", "/orders/"+done+"/stream", shop), 200, shop, true},
		{"a stream from another origin", listed, false, request("GET", "/orders/"+done+"/stream", "https://evil.example"), 200, "", false},
		{"a 400", listed, false, request("GET", "/orders/nope/stream", shop), 400, shop, true},
		{"a 404", listed, false, request("GET", "/nowhere", shop), 404, shop, true},
		{"a 405", listed, false, request("PUT", "/orders/"+done, shop), 405, shop, true},
		{"no Origin: no CORS headers", listed, false, request("GET", "/orders/"+done, ""), 200, "", false},
		{"any origin: a plain GET", anyOrigin, false, request("GET", "/orders/"+done, "https://a.example"), 200, "*", false},
		{"CORS off", off, true, request("GET", "/orders/"+done, shop), 200, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			tt.h.ServeHTTP(rec, tt.req)
			h := rec.Header()
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.status, rec.Body)
			}
			if got := h.Get("Access-Control-Allow-Origin"); got != tt.allowOrigin {
				t.Fatalf("Allow-Origin %q, want %q", got, tt.allowOrigin)
			}
			if got := h.Get("Access-Control-Allow-Credentials") == "true"; got != tt.credentials {
				t.Fatalf("Allow-Credentials %v, want %v", got, tt.credentials)
			}
			if !tt.corsOff && !slices.Contains(h.Values("Vary"), "Origin") {
				t.Fatalf("Vary %q lacks Origin", h.Values("Vary"))
			}
			if tt.corsOff && h.Get("Vary") != "" {
				t.Fatalf("CORS off, but Vary %q", h.Values("Vary"))
			}
			if tt.req.Method == "OPTIONS" && rec.Code == 204 {
				for _, want := range []string{"POST", "GET"} {
					if !strings.Contains(h.Get("Access-Control-Allow-Methods"), want) {
						t.Errorf("Allow-Methods %q lacks %s", h.Get("Access-Control-Allow-Methods"), want)
					}
				}
				for _, want := range []string{"Authorization", "Content-Type", "Last-Event-ID", "Idempotency-Key", AuthHeader, "X-Amz-Content-Sha256"} {
					if !strings.Contains(h.Get("Access-Control-Allow-Headers"), want) {
						t.Errorf("Allow-Headers %q lacks %s", h.Get("Access-Control-Allow-Headers"), want)
					}
				}
			}
			if tt.allowOrigin != "" && tt.req.Method != "OPTIONS" && !strings.Contains(h.Get("Access-Control-Expose-Headers"), "Retry-After") {
				t.Errorf("Expose-Headers %q lacks Retry-After", h.Get("Access-Control-Expose-Headers"))
			}
			if rec.Code >= 400 && h.Get("Content-Type") != "application/problem+json" {
				t.Errorf("%d as %q", rec.Code, h.Get("Content-Type"))
			}
		})
	}
}

func TestParseOrigins(t *testing.T) {
	got, err := ParseOrigins(" https://Shop.Example, http://localhost:3000/ ,*,")
	if err != nil || !slices.Equal(got, []string{"https://shop.example", "http://localhost:3000", "*"}) {
		t.Fatalf("got %q, %v", got, err)
	}
	for _, bad := range []string{"shop.example", "ftp://shop.example", "https://shop.example/path", "https://user@shop.example", "https://shop.example?x=1", "https://", "null"} {
		if _, err := ParseOrigins(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
