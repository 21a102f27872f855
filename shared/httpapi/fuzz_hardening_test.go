package httpapi

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderstream/orderstream/shared/broker"
	"github.com/orderstream/orderstream/shared/order"
)

// Fuzzers for the hardening layer's parsers of outside input: tokens (in
// every place they may come), X-Forwarded-For, and CORS request headers.

var fuzzSecret = []byte("0123456789abcdef0123456789abcdef")

// signHS256 signs header and payload as they are, so the fuzzer controls
// every byte the parser reads after the signature check.
func signHS256(header, payload string) string {
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload))
	mac := hmac.New(sha256.New, fuzzSecret)
	mac.Write([]byte(signing))
	return signing + "." + enc.EncodeToString(mac.Sum(nil))
}

func checkAuthAnswer(t *testing.T, rec *httptest.ResponseRecorder, allowed ...int) {
	t.Helper()
	checkAnswer(t, rec, allowed...)
	if rec.Code == http.StatusUnauthorized && !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), `Bearer realm="orderstream"`) {
		t.Fatalf("401 with WWW-Authenticate %q", rec.Header().Get("WWW-Authenticate"))
	}
}

// FuzzToken sends arbitrary tokens in the header, the URL and the cookie.
func FuzzToken(f *testing.F) {
	h, b := fuzzHandler(f, Config{HistoryOnly: true, Auth: verifier(f, AuthConfig{Secret: fuzzSecret, Cookie: testCookie})})
	id := uuid.New()
	b.Publish(context.Background(), id, broker.PublishRequest{Status: order.Created})
	exp := time.Now().Add(24 * time.Hour).Unix()
	good := signHS256(`{"alg":"HS256","typ":"JWT"}`, `{"exp":`+itoa(exp)+`,"orders":["`+id.String()+`"]}`)
	for _, s := range []struct {
		where int
		token string
	}{
		{0, good}, {1, good}, {2, good},
		{0, "Bearer " + good}, {0, "bearer"}, {0, "Basic " + good},
		{0, good[:len(good)-3]}, {1, "a.b.c"}, {2, "..."}, {0, "e30.e30."},
		{0, signHS256(`{"alg":"none"}`, `{"exp":1}`)},
		{1, strings.Repeat("x", 9000)},
	} {
		f.Add(s.where, s.token)
	}
	f.Fuzz(func(t *testing.T, where int, token string) {
		req := httptest.NewRequest("GET", "/orders/"+id.String()+"/stream", nil)
		switch ((where % 3) + 3) % 3 {
		case 0:
			req.Header["Authorization"] = []string{"Bearer " + token}
		case 1:
			req.URL.RawQuery = url.Values{"access_token": {token}}.Encode()
		case 2:
			req.Header["Cookie"] = []string{testCookie + "=" + token}
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		checkAuthAnswer(t, rec, 200, 401, 403)
	})
}

// FuzzTokenClaims signs arbitrary headers and claims with the right key:
// whatever they hold, the answer is a decision, never a 500 or a panic, and
// only a token that asks for orders:publish may publish.
func FuzzTokenClaims(f *testing.F) {
	h, _ := fuzzHandler(f, Config{Auth: verifier(f, AuthConfig{Secret: fuzzSecret, Cookie: testCookie})})
	exp := itoa(time.Now().Add(24 * time.Hour).Unix())
	for _, s := range []struct{ header, claims string }{
		{`{"alg":"HS256","typ":"JWT"}`, `{"exp":` + exp + `,"scope":"orders:publish"}`},
		{`{"alg":"HS256"}`, `{"exp":` + exp + `,"scope":["orders:publish"]}`},
		{`{"alg":"HS256"}`, `{"exp":` + exp + `,"scope":7}`},
		{`{"alg":"HS256"}`, `{"exp":"soon","scope":"orders:publish"}`},
		{`{"alg":"HS256"}`, `{"exp":1e400}`},
		{`{"alg":"HS256"}`, `{"exp":` + exp + `,"aud":{},"iss":[],"nbf":null}`},
		{`{"alg":"HS256","kid":"../../etc/passwd"}`, `{"exp":` + exp + `,"orders":"*"}`},
		{`{"alg":"HS512"}`, `{"exp":` + exp + `}`},
		{`{}`, `[]`},
		{`null`, `null`},
	} {
		f.Add(s.header, s.claims)
	}
	f.Fuzz(func(t *testing.T, header, claims string) {
		req := httptest.NewRequest("POST", "/orders/"+uuid.NewString()+"/events", strings.NewReader(`{"status":"Created"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+signHS256(header, claims))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		checkAuthAnswer(t, rec, 201, 401, 403)
		if rec.Code == 201 && !strings.Contains(claims, ScopePublish) {
			t.Fatalf("published with claims %q", claims)
		}
	})
}

// FuzzClientAddr: whatever the peer and X-Forwarded-For say, the client is
// the peer or one of the addresses named, and nothing is believed from an
// untrusted peer.
func FuzzClientAddr(f *testing.F) {
	trusted, _ := ParseTrustedProxies("10.0.0.0/8, fd00::/8")
	for _, s := range []struct{ remote, xff string }{
		{"10.0.0.1:80", "198.51.100.1"},
		{"10.0.0.1:80", "198.51.100.1, 10.2.3.4"},
		{"[fd00::1]:443", "[2001:db8::1]:5, bogus"},
		{"203.0.113.1:1", "10.0.0.1"},
		{"[fe80::1%eth0]:80", "::ffff:10.0.0.1"},
		{"garbage", ",,,"},
	} {
		f.Add(s.remote, s.xff)
	}
	f.Fuzz(func(t *testing.T, remote, xff string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = remote
		r.Header.Set("X-Forwarded-For", xff)
		got := clientAddr(r, trusted)
		peer := parseHostAddr(remote)
		if !isTrusted(peer, trusted) && got != peer {
			t.Fatalf("untrusted peer %q: believed %v from %q", remote, got, xff)
		}
		if got.IsValid() && got != peer && !containsAddr(xff, got) {
			t.Fatalf("client %v is neither the peer %q nor in %q", got, remote, xff)
		}
		_ = clientKey(got) // never panics
	})
}

// containsAddr reports whether one of xff's entries parses to a.
func containsAddr(xff string, a netip.Addr) bool {
	for _, e := range strings.Split(xff, ",") {
		if parseHostAddr(strings.TrimSpace(e)) == a {
			return true
		}
	}
	return false
}

// FuzzCORS sends arbitrary Origin and preflight headers: an answer carries
// Access-Control-Allow-Origin only for a listed origin, and is never a 500.
func FuzzCORS(f *testing.F) {
	h, _ := fuzzHandler(f, Config{CORSAllowedOrigins: []string{"https://shop.example"}, HistoryOnly: true})
	for _, s := range []struct{ method, origin, reqMethod, reqHeaders string }{
		{"OPTIONS", "https://shop.example", "POST", "content-type, authorization"},
		{"OPTIONS", "https://evil.example", "POST", ""},
		{"GET", "https://shop.example", "", ""},
		{"OPTIONS", "null", "GET", "last-event-id"},
		{"OPTIONS", "", "", ""},
		{"POST", "HTTPS://SHOP.EXAMPLE", "", ""},
	} {
		f.Add(s.method, s.origin, s.reqMethod, s.reqHeaders)
	}
	path := "/orders/" + uuid.NewString() + "/stream"
	f.Fuzz(func(t *testing.T, method, origin, reqMethod, reqHeaders string) {
		if !validMethod(method) {
			return // net/http would refuse it before any handler
		}
		req := httptest.NewRequest("GET", path, nil)
		req.Method = method
		req.Header["Origin"] = []string{origin}
		req.Header["Access-Control-Request-Method"] = []string{reqMethod}
		req.Header["Access-Control-Request-Headers"] = []string{reqHeaders}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s from %q: %d", method, origin, rec.Code)
		}
		if rec.Code >= 400 {
			checkAnswer(t, rec, rec.Code)
		}
		if got := rec.Header().Get("Access-Control-Allow-Origin"); got != "" && !strings.EqualFold(origin, "https://shop.example") {
			t.Fatalf("origin %q allowed as %q", origin, got)
		}
	})
}

// FuzzParseOrigins: what ParseOrigins accepts it gives back in a form it
// accepts again unchanged.
func FuzzParseOrigins(f *testing.F) {
	for _, s := range []string{"https://shop.example", "*", "http://[::1]:3000/, https://A.example", "https://x.example/path", "javascript:alert(1)"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseOrigins(s)
		if err != nil {
			return
		}
		again, err := ParseOrigins(strings.Join(got, ","))
		if err != nil || strings.Join(again, ",") != strings.Join(got, ",") {
			t.Fatalf("%q: %q, then %q, %v", s, got, again, err)
		}
	})
}

func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for _, c := range m {
		if c <= ' ' || c >= 0x7f || strings.ContainsRune(`()<>@,;:\"/[]?={}`, c) {
			return false
		}
	}
	return true
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
