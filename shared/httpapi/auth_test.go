package httpapi

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderstream/orderstream/shared/broker"
	"github.com/orderstream/orderstream/shared/broker/brokertest"
	"github.com/orderstream/orderstream/shared/httpapi/httpapitest"
	"github.com/orderstream/orderstream/shared/order"
)

// testKeys are made once: RSA key generation is slow under -race.
var testKeys = sync.OnceValue(func() (k struct {
	secret      []byte
	rsa, rsa2   *rsa.PrivateKey
	ec, ec2     *ecdsa.PrivateKey
	rsaPEM      []byte
	ecPEM       []byte
	ec384PEM    []byte
	shortRSAPEM []byte
	otherSecret []byte
}) {
	k.secret = []byte("0123456789abcdef0123456789abcdef")
	k.otherSecret = []byte("fedcba9876543210fedcba9876543210")
	k.rsa, _ = rsa.GenerateKey(rand.Reader, 2048)
	k.rsa2, _ = rsa.GenerateKey(rand.Reader, 2048)
	k.ec, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k.ec2, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ec384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	short, _ := rsa.GenerateKey(rand.Reader, 1024)
	k.rsaPEM = publicPEM(&k.rsa.PublicKey)
	k.ecPEM = publicPEM(&k.ec.PublicKey)
	k.ec384PEM = publicPEM(&ec384.PublicKey)
	k.shortRSAPEM = publicPEM(&short.PublicKey)
	return k
})

func publicPEM(pub any) []byte {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		panic(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// mint signs c with key.
func mint(t testing.TB, method jwt.SigningMethod, key any, c jwt.Claims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func claims(scope string, orders ...string) Claims {
	return Claims{
		RegisteredClaims: jwt.RegisteredClaims{ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))},
		Scope:            strings.Fields(scope),
		Orders:           orders,
	}
}

func TestAuth(t *testing.T) {
	k := testKeys()
	b := broker.NewMemory(brokertest.Options())
	defer b.Close()
	known := uuid.New()
	b.Publish(context.Background(), known, broker.PublishRequest{Status: order.Created})
	other := uuid.New()
	b.Publish(context.Background(), other, broker.PublishRequest{Status: order.Created})

	reg := prometheus.NewRegistry()
	hs := NewServer(discardLogger(), b, testConfig(Config{HistoryOnly: true, Metrics: reg, Auth: verifier(t, AuthConfig{Secret: k.secret, Cookie: testCookie})}))
	rs := NewServer(discardLogger(), b, testConfig(Config{HistoryOnly: true, Auth: verifier(t, AuthConfig{PublicKeyPEM: k.rsaPEM, Cookie: testCookie})}))
	es := NewServer(discardLogger(), b, testConfig(Config{HistoryOnly: true, Auth: verifier(t, AuthConfig{PublicKeyPEM: k.ecPEM, Issuer: "https://shop.example", Audience: "orderstream", Cookie: testCookie})}))

	hsTok := func(c Claims) string { return mint(t, jwt.SigningMethodHS256, k.secret, c) }
	publisher := hsTok(claims(ScopePublish))
	reader := hsTok(claims("", known.String()))
	expired := claims(ScopePublish)
	expired.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-time.Hour))
	noExp := claims(ScopePublish)
	noExp.ExpiresAt = nil
	notYet := claims(ScopePublish)
	notYet.NotBefore = jwt.NewNumericDate(time.Now().Add(time.Hour))
	esClaims := claims(ScopePublish)
	esClaims.Issuer, esClaims.Audience = "https://shop.example", jwt.ClaimStrings{"orderstream"}
	noneTok, _ := jwt.NewWithClaims(jwt.SigningMethodNone, claims(ScopePublish)).SignedString(jwt.UnsafeAllowNoneSignatureType)
	// The classic confusion: HS256 signed with the server's public key as secret.
	confused := mint(t, jwt.SigningMethodHS256, k.rsaPEM, claims(ScopePublish))

	publish := func(path string) string { return "/orders/" + uuid.NewString() + path }
	bearer := func(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }
	tests := []struct {
		name      string
		h         http.Handler
		method    string
		path      string
		header    http.Header
		status    int
		challenge string // a part of WWW-Authenticate that must be there
	}{
		{"publish without a token", hs, "POST", publish("/events"), nil, 401, `Bearer realm="orderstream"`},
		{"publish", hs, "POST", publish("/events"), bearer(publisher), 201, ""},
		{"publish, scheme in lower case", hs, "POST", publish("/events"), http.Header{"Authorization": {"bearer " + publisher}}, 201, ""},
		{"publish with a scope array", hs, "POST", publish("/events"), bearer(mint(t, jwt.SigningMethodHS256, k.secret, jwt.MapClaims{
			"exp": time.Now().Add(time.Hour).Unix(), "scope": []string{"x", ScopePublish}})), 201, ""},
		{"publish with the token in a cookie", hs, "POST", publish("/events"), http.Header{"Cookie": {testCookie + "=" + publisher}}, 401, ""},
		{"publish with the token in the URL", hs, "POST", publish("/events?access_token=" + publisher), nil, 401, ""},
		{"publish with a reader's token", hs, "POST", publish("/events"), bearer(reader), 403, `error="insufficient_scope", error_description="the token does not allow this request", scope="orders:publish"`},
		{"simulate with a reader's token", hs, "POST", publish("/simulate?interval=0s"), bearer(reader), 403, "insufficient_scope"},
		{"publish, expired", hs, "POST", publish("/events"), bearer(hsTok(expired)), 401, `error="invalid_token", error_description="the token has expired"`},
		{"publish, no exp", hs, "POST", publish("/events"), bearer(hsTok(noExp)), 401, "no expiry"},
		{"publish, not yet valid", hs, "POST", publish("/events"), bearer(hsTok(notYet)), 401, "not valid yet"},
		{"publish, malformed", hs, "POST", publish("/events"), bearer("not.a.jwt"), 401, "malformed"},
		{"publish, wrong secret", hs, "POST", publish("/events"), bearer(mint(t, jwt.SigningMethodHS256, k.otherSecret, claims(ScopePublish))), 401, "signature"},
		{"publish, alg none", hs, "POST", publish("/events"), bearer(noneTok), 401, "invalid_token"},
		{"publish, RS256 to an HS256 server", hs, "POST", publish("/events"), bearer(mint(t, jwt.SigningMethodRS256, k.rsa, claims(ScopePublish))), 401, "invalid_token"},
		{"publish, Basic", hs, "POST", publish("/events"), http.Header{"Authorization": {"Basic dXNlcjpwYXNz"}}, 401, `error="invalid_request"`},
		{"publish, Bearer and nothing", hs, "POST", publish("/events"), http.Header{"Authorization": {"Bearer  "}}, 401, "invalid_request"},
		{"publish, a huge token", hs, "POST", publish("/events"), bearer(strings.Repeat("a", maxTokenBytes+1)), 401, "too long"},

		{"get the order the token names", hs, "GET", "/orders/" + known.String(), bearer(reader), 200, ""},
		{"get another order", hs, "GET", "/orders/" + other.String(), bearer(reader), 403, "insufficient_scope"},
		{"get with all orders", hs, "GET", "/orders/" + other.String(), bearer(hsTok(claims("", AllOrders))), 200, ""},
		{"get, the order in another UUID form in the claim", hs, "GET", "/orders/" + known.String(), bearer(hsTok(claims("", "{"+strings.ToUpper(known.String())+"}"))), 200, ""},
		{"get with a publisher's token", hs, "GET", "/orders/" + known.String(), bearer(publisher), 403, ""},
		{"get without a token", hs, "GET", "/orders/" + known.String(), nil, 401, `Bearer realm="orderstream"`},
		{"stream with access_token", hs, "GET", "/orders/" + known.String() + "/stream?access_token=" + reader, nil, 200, ""},
		{"stream with the cookie", hs, "GET", "/orders/" + known.String() + "/stream", http.Header{"Cookie": {testCookie + "=" + reader}}, 200, ""},
		{"stream with an expired token in the URL", hs, "GET", "/orders/" + known.String() + "/stream?access_token=" + hsTok(func() Claims {
			c := claims("", known.String())
			c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-time.Minute))
			return c
		}()), nil, 401, "expired"},
		{"stream another order", hs, "GET", "/orders/" + other.String() + "/stream?access_token=" + reader, nil, 403, ""},
		{"a bad id with a token", hs, "GET", "/orders/nope/stream", bearer(reader), 400, ""},
		{"a bad id without one", hs, "GET", "/orders/nope/stream", nil, 401, ""},
		{"the page is open", hs, "GET", "/", nil, 200, ""},
		{"healthz is open", hs, "GET", "/healthz", nil, 200, ""},
		{"metrics with its scope", hs, "GET", "/metrics", bearer(hsTok(claims(ScopeMetrics))), 200, ""},
		{"metrics without a token", hs, "GET", "/metrics", nil, 401, ""},
		{"metrics with a publisher's token", hs, "GET", "/metrics", bearer(publisher), 403, `scope="metrics:read"`},

		{"RS256", rs, "POST", publish("/events"), bearer(mint(t, jwt.SigningMethodRS256, k.rsa, claims(ScopePublish))), 201, ""},
		{"RS256, another key", rs, "POST", publish("/events"), bearer(mint(t, jwt.SigningMethodRS256, k.rsa2, claims(ScopePublish))), 401, "signature"},
		{"RS256 server, HS256 with the public key as secret", rs, "POST", publish("/events"), bearer(confused), 401, "invalid_token"},
		{"RS256 server, PS256", rs, "POST", publish("/events"), bearer(mint(t, jwt.SigningMethodPS256, k.rsa, claims(ScopePublish))), 401, "invalid_token"},
		{"ES256 with issuer and audience", es, "POST", publish("/events"), bearer(mint(t, jwt.SigningMethodES256, k.ec, esClaims)), 201, ""},
		{"ES256, another key", es, "POST", publish("/events"), bearer(mint(t, jwt.SigningMethodES256, k.ec2, esClaims)), 401, "signature"},
		{"ES256, no issuer", es, "POST", publish("/events"), bearer(mint(t, jwt.SigningMethodES256, k.ec, claims(ScopePublish))), 401, "another service"},
		{"ES256, another audience", es, "POST", publish("/events"), bearer(mint(t, jwt.SigningMethodES256, k.ec, func() Claims {
			c := esClaims
			c.Audience = jwt.ClaimStrings{"billing"}
			return c
		}())), 401, "another service"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body *strings.Reader
			if tt.method == "POST" {
				body = strings.NewReader(`{"status":"Created"}`)
			} else {
				body = strings.NewReader("")
			}
			r := httptest.NewRequest(tt.method, tt.path, body)
			r.Header.Set("Content-Type", "application/json")
			for k, v := range tt.header {
				r.Header[k] = v
			}
			rec := httptest.NewRecorder()
			tt.h.ServeHTTP(rec, r)
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.status, rec.Body)
			}
			got := rec.Header().Get("WWW-Authenticate")
			if rec.Code == 401 && got == "" {
				t.Fatal("401 without WWW-Authenticate")
			}
			if tt.challenge != "" && !strings.Contains(got, tt.challenge) {
				t.Fatalf("WWW-Authenticate %q lacks %q", got, tt.challenge)
			}
			if rec.Code >= 400 && rec.Header().Get("Content-Type") != "application/problem+json" {
				t.Fatalf("%d as %q", rec.Code, rec.Header().Get("Content-Type"))
			}
		})
	}
	if httpapitest.MetricValue(t, reg, "orderstream_auth_failures_total", "code", "401") == 0 ||
		httpapitest.MetricValue(t, reg, "orderstream_auth_failures_total", "code", "403") == 0 {
		t.Error("auth failures were not counted")
	}
}

func TestAuthConfigValidate(t *testing.T) {
	k := testKeys()
	keyFile := filepath.Join(t.TempDir(), "key.pem")
	os.WriteFile(keyFile, k.ecPEM, 0o600)
	rsa1 := x509.MarshalPKCS1PublicKey(&k.rsa.PublicKey)
	tests := []struct {
		name    string
		a       AuthConfig
		wantErr string
	}{
		{"off", AuthConfig{}, ""},
		{"HS256", AuthConfig{Secret: k.secret}, ""},
		{"RS256", AuthConfig{PublicKeyPEM: k.rsaPEM}, ""},
		{"RS256, PKCS#1", AuthConfig{PublicKeyPEM: pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: rsa1})}, ""},
		{"ES256 from a file", AuthConfig{PublicKeyFile: keyFile}, ""},
		{"short secret", AuthConfig{Secret: []byte("secret")}, "at least 32"},
		{"two keys", AuthConfig{Secret: k.secret, PublicKeyPEM: k.rsaPEM}, "not both"},
		{"key and file", AuthConfig{PublicKeyPEM: k.rsaPEM, PublicKeyFile: keyFile}, "not both"},
		{"not PEM", AuthConfig{PublicKeyPEM: []byte("hello")}, "not PEM"},
		{"a private key", AuthConfig{PublicKeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}})}, "not a public key"},
		{"garbage DER", AuthConfig{PublicKeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1, 2}})}, "parse public key"},
		{"P-384", AuthConfig{PublicKeyPEM: k.ec384PEM}, "P-256"},
		{"RSA 1024", AuthConfig{PublicKeyPEM: k.shortRSAPEM}, "2048"},
		{"missing file", AuthConfig{PublicKeyFile: filepath.Join(t.TempDir(), "none.pem")}, "read public key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.a.Validate()
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("got %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// TestMisconfiguredAuthFailsClosed: a key NewServer can't use refuses every
// protected request instead of serving them unauthenticated.
func TestMisconfiguredAuthFailsClosed(t *testing.T) {
	b := broker.NewMemory(brokertest.Options())
	defer b.Close()
	// A caller that serves with the Verifier despite NewVerifier's error.
	broken, _ := NewVerifier(AuthConfig{Secret: []byte("short")})
	srv, logs := newTestServer(t, b, Config{Auth: broken})
	if !strings.Contains(logs.String(), "authentication is misconfigured") {
		t.Errorf("the misconfiguration was not logged: %s", logs)
	}
	for _, r := range []struct{ method, path string }{
		{"GET", "/orders/" + uuid.NewString()},
		{"POST", "/orders/" + uuid.NewString() + "/events"},
	} {
		req, _ := http.NewRequest(r.method, srv.URL+r.path, strings.NewReader(`{"status":"Created"}`))
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 500 {
			t.Errorf("%s %s: %d, want 500", r.method, r.path, res.StatusCode)
		}
	}
	res, err := http.Get(srv.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("healthz: %d", res.StatusCode)
	}
}

// TestAuthBehindCloudFront: CloudFront's origin access control signs every
// request to the function URL, and its SigV4 signature takes the viewer's
// Authorization header. That signature is passed over: the cookie (readers)
// or AuthHeader (everyone) carries the token, and without either the
// request is refused as if it carried nothing.
func TestAuthBehindCloudFront(t *testing.T) {
	k := testKeys()
	b := broker.NewMemory(brokertest.Options())
	defer b.Close()
	known := uuid.New()
	b.Publish(context.Background(), known, broker.PublishRequest{Status: order.Created})
	srv := NewServer(discardLogger(), b, testConfig(Config{HistoryOnly: true, Auth: verifier(t, AuthConfig{Secret: k.secret, Cookie: testCookie})}))
	publisher := mint(t, jwt.SigningMethodHS256, k.secret, claims(ScopePublish))
	reader := mint(t, jwt.SigningMethodHS256, k.secret, claims("", known.String()))
	// What CloudFront puts there (SigningBehavior always, SigningProtocol sigv4).
	const sigv4 = "AWS4-HMAC-SHA256 Credential=ASIAEXAMPLEEXAMPLE/20261124/eu-west-1/lambda/aws4_request, " +
		"SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token, Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
	emptySHA := "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	orderPath := "/orders/" + known.String()
	tests := []struct {
		name   string
		method string
		path   string
		header http.Header
		status int
		detail string // a part of the problem's detail
	}{
		{"stream, signature and the cookie", "GET", orderPath + "/stream", http.Header{"Authorization": {sigv4}, "Cookie": {testCookie + "=" + reader}}, 200, ""},
		{"get, signature and the cookie", "GET", orderPath, http.Header{"Authorization": {sigv4}, "Cookie": {testCookie + "=" + reader}}, 200, ""},
		{"get, signature and the header", "GET", orderPath, http.Header{"Authorization": {sigv4}, AuthHeader: {"Bearer " + reader}}, 200, ""},
		{"get, signature alone", "GET", orderPath, http.Header{"Authorization": {sigv4}}, 401, "a bearer token is required"},
		{"get, SigV4a signature alone", "GET", orderPath, http.Header{"Authorization": {"AWS4-ECDSA-P256-SHA256 Credential=x"}}, 401, "a bearer token is required"},
		{"publish, signature and the header", "POST", "/orders/" + uuid.NewString() + "/events",
			http.Header{"Authorization": {sigv4}, AuthHeader: {"Bearer " + publisher}, "X-Amz-Content-Sha256": {emptySHA}}, 201, ""},
		{"publish, signature alone", "POST", "/orders/" + uuid.NewString() + "/events", http.Header{"Authorization": {sigv4}}, 401, "X-Orderstream-Authorization"},
		// Publishers never take the cookie: any page a user visits could send it.
		{"publish, signature and the cookie", "POST", "/orders/" + uuid.NewString() + "/events",
			http.Header{"Authorization": {sigv4}, "Cookie": {testCookie + "=" + publisher}}, 401, ""},
		{"publish, the header malformed", "POST", "/orders/" + uuid.NewString() + "/events", http.Header{AuthHeader: {publisher}}, 401, "X-Orderstream-Authorization header must be"},
		{"publish, the header with a reader's token", "POST", "/orders/" + uuid.NewString() + "/events", http.Header{AuthHeader: {"Bearer " + reader}}, 403, ""},
		// Without CloudFront a bearer Authorization still wins over the header.
		{"publish, Authorization first", "POST", "/orders/" + uuid.NewString() + "/events",
			http.Header{"Authorization": {"Bearer " + publisher}, AuthHeader: {"Bearer " + reader}}, 201, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := ""
			if tt.method == "POST" {
				body = `{"status":"Created"}`
			}
			r := httptest.NewRequest(tt.method, tt.path, strings.NewReader(body))
			r.Header.Set("Content-Type", "application/json")
			for k, v := range tt.header {
				r.Header[http.CanonicalHeaderKey(k)] = v
			}
			rec := httptest.NewRecorder()
			srv.ServeHTTP(rec, r)
			if rec.Code != tt.status || !strings.Contains(rec.Body.String(), tt.detail) {
				t.Fatalf("%d %s, want %d with %q", rec.Code, rec.Body, tt.status, tt.detail)
			}
		})
	}
}
