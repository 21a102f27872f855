package httpapi

import (
	"context"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/orderstream/orderstream/shared/broker"
	"github.com/orderstream/orderstream/shared/broker/brokertest"
	"github.com/orderstream/orderstream/shared/httpapi/httpapitest"
)

const testIssuer = "https://idp.example/pool-1"

// idp is an identity provider's JWKS endpoint whose answer a test changes
// mid-run: the keys it publishes, garbage, errors, or nothing at all.
type idp struct {
	t       *testing.T
	srv     *httptest.Server
	fetches atomic.Int64
	mu      sync.Mutex
	answer  func(w http.ResponseWriter)
}

func newIDP(t *testing.T) *idp {
	p := &idp{t: t}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.fetches.Add(1)
		p.mu.Lock()
		answer := p.answer
		p.mu.Unlock()
		answer(w)
	}))
	t.Cleanup(p.srv.Close)
	p.serve(nil)
	return p
}

func (p *idp) url() string { return p.srv.URL + "/.well-known/jwks.json" }

func (p *idp) set(answer func(w http.ResponseWriter)) {
	p.mu.Lock()
	p.answer = answer
	p.mu.Unlock()
}

// serve publishes these RSA keys, by kid.
func (p *idp) serve(keys map[string]*rsa.PrivateKey) {
	store := jwkset.NewMemoryStorage()
	for kid, k := range keys {
		jwk, err := jwkset.NewJWKFromKey(&k.PublicKey, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: kid, ALG: jwkset.AlgRS256, USE: jwkset.UseSig}})
		if err != nil {
			p.t.Fatal(err)
		}
		if err := store.KeyWrite(context.Background(), jwk); err != nil {
			p.t.Fatal(err)
		}
	}
	raw, err := store.JSONPublic(context.Background())
	if err != nil {
		p.t.Fatal(err)
	}
	p.serveRaw(http.StatusOK, string(raw))
}

func (p *idp) serveRaw(status int, body string) {
	p.set(func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	})
}

// down drops every connection without an answer.
func (p *idp) down() {
	p.set(func(w http.ResponseWriter) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	})
}

// idpToken is a token from the provider, signed with key under kid.
func idpToken(t *testing.T, key *rsa.PrivateKey, kid string, mutate ...func(*Claims)) string {
	t.Helper()
	c := claims("orders:publish", AllOrders)
	c.Issuer = testIssuer
	c.Audience = jwt.ClaimStrings{"orderstream"}
	for _, m := range mutate {
		m(&c)
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// testJWKS is an authenticator on the provider's keys with opts.
func testJWKS(t *testing.T, p *idp, opts jwksOptions) (*authenticator, *httpapitest.SyncBuffer) {
	t.Helper()
	au, err := newAuthenticator(AuthConfig{JWKSURL: p.url(), Issuer: testIssuer, Audience: "orderstream"})
	if err != nil {
		t.Fatal(err)
	}
	if au.jwks, err = newJWKS(p.url(), opts); err != nil {
		t.Fatal(err)
	}
	logs := &httpapitest.SyncBuffer{}
	if err := au.jwks.start(slog.New(slog.NewTextHandler(logs, nil))); err != nil {
		t.Fatal(err)
	}
	return au, logs
}

// accepts reports whether the authenticator takes the token, and why not.
func accepts(au *authenticator, token string) (bool, string) {
	_, aerr := au.verify(context.Background(), token)
	if aerr != nil {
		return false, aerr.detail
	}
	return true, ""
}

// TestJWKSRotation: the provider rotates its keys mid-run; a token with the
// new key id is accepted at once (an unknown kid fetches the set again), the
// withdrawn key stops counting, and a flood of made-up key ids fetches at a
// bounded rate.
func TestJWKSRotation(t *testing.T) {
	k := testKeys()
	p := newIDP(t)
	p.serve(map[string]*rsa.PrivateKey{"2026-01": k.rsa})
	opts := defaultJWKSOptions
	opts.unknownKIDEvery = time.Hour // one fetch for an unknown kid in this test, then none
	au, _ := testJWKS(t, p, opts)
	if n := p.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches when the server was built, want 1", n)
	}

	old := idpToken(t, k.rsa, "2026-01")
	if ok, why := accepts(au, old); !ok {
		t.Fatalf("a token with the published key: %s", why)
	}
	// Rotation: the provider publishes the new key (and drops the old).
	p.serve(map[string]*rsa.PrivateKey{"2026-02": k.rsa2})
	fresh := idpToken(t, k.rsa2, "2026-02")
	if ok, why := accepts(au, fresh); !ok {
		t.Fatalf("a token with the rotated-in key: %s", why)
	}
	if n := p.fetches.Load(); n != 2 {
		t.Errorf("%d fetches after the rotation, want 2", n)
	}
	if ok, _ := accepts(au, old); ok {
		t.Errorf("a token with the withdrawn key is still accepted")
	}
	// Made-up key ids, at once: the fetch budget is spent, nothing is fetched.
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			if ok, _ := accepts(au, idpToken(t, k.rsa2, fmt.Sprintf("made-up-%d", i))); ok {
				t.Errorf("a token with a made-up kid was accepted")
			}
		})
	}
	wg.Wait()
	if n := p.fetches.Load(); n != 2 {
		t.Errorf("%d fetches after a flood of unknown kids, want still 2", n)
	}
	if ok, why := accepts(au, fresh); !ok {
		t.Errorf("the current key after the flood: %s", why)
	}
}

// TestJWKSKeepsLastGoodKeys: while the provider is down, answers errors or
// serves garbage, the keys it last published keep working; when it
// publishes again, its new set replaces them.
func TestJWKSKeepsLastGoodKeys(t *testing.T) {
	k := testKeys()
	p := newIDP(t)
	p.serve(map[string]*rsa.PrivateKey{"a": k.rsa})
	// Keys count as old at once and a failed fetch is retried at once, so
	// every verify below starts a background fetch.
	opts := defaultJWKSOptions
	opts.maxAge, opts.retryEvery = time.Nanosecond, time.Nanosecond
	au, logs := testJWKS(t, p, opts)
	token := idpToken(t, k.rsa, "a")

	otherRSA := base64.RawURLEncoding.EncodeToString(k.rsa2.N.Bytes())
	for _, tt := range []struct {
		name  string
		serve func()
	}{
		{"down", p.down},
		{"500", func() { p.serveRaw(http.StatusInternalServerError, `{"message":"Internal server error"}`) }},
		{"404", func() { p.serveRaw(http.StatusNotFound, `not found`) }},
		{"HTML", func() { p.serveRaw(http.StatusOK, `<html><body>maintenance</body></html>`) }},
		{"truncated", func() { p.serveRaw(http.StatusOK, `{"keys":[{"kty":"RSA","kid":"a",`) }},
		{"an empty set", func() { p.serveRaw(http.StatusOK, `{"keys":[]}`) }},
		{"an empty object", func() { p.serveRaw(http.StatusOK, `{}`) }},
		{"only keys of no use here", func() { p.serveRaw(http.StatusOK, `{"keys":[{"kty":"OKP","crv":"X448","kid":"x","x":"AA"}]}`) }},
		{"a broken key", func() {
			p.serveRaw(http.StatusOK, `{"keys":[{"kty":"RSA","kid":"b","alg":"RS256","use":"sig","n":"`+otherRSA+`","e":"not base64!"}]}`)
		}},
		{"over 1 MiB", func() { p.serveRaw(http.StatusOK, `{"keys":[],"pad":"`+strings.Repeat("x", 1<<20)+`"}`) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.serve()
			before := p.fetches.Load()
			httpapitest.WaitFor(t, "a fetch in this state", func() bool {
				if au.jwks.refreshing.Load() {
					return false // one in flight: let it end
				}
				if p.fetches.Load() > before {
					return true // one in this state ended
				}
				accepts(au, token) // starts a background fetch
				return false
			})
			if ok, why := accepts(au, token); !ok {
				t.Errorf("the last good key no longer works: %s", why)
			}
		})
	}
	if !strings.Contains(logs.String(), "keeping the last good keys") {
		t.Errorf("failed fetches are not logged:\n%s", logs.String())
	}

	// Back, with a new key only: the old one stops counting at the next fetch.
	p.serve(map[string]*rsa.PrivateKey{"b": k.rsa2})
	httpapitest.WaitFor(t, "the new set to replace the old", func() bool {
		ok, _ := accepts(au, token)
		return !ok
	})
	if ok, why := accepts(au, idpToken(t, k.rsa2, "b")); !ok {
		t.Errorf("the new key: %s", why)
	}
}

// TestJWKSProviderDownAtStart: a provider unreachable when the server starts
// is tried again by the first token, and the server comes up either way.
func TestJWKSProviderDownAtStart(t *testing.T) {
	k := testKeys()
	p := newIDP(t)
	p.down()
	au, logs := testJWKS(t, p, defaultJWKSOptions)
	if !strings.Contains(logs.String(), "JWKS fetch failed") {
		t.Errorf("the failed first fetch is not logged: %s", logs.String())
	}
	p.serve(map[string]*rsa.PrivateKey{"a": k.rsa})
	if ok, why := accepts(au, idpToken(t, k.rsa, "a")); !ok {
		t.Errorf("the first token after the provider came back: %s", why)
	}
}

// TestJWKSClaimsAndAlgorithms: a provider's key proves who signed, not for
// whom: the issuer and audience are checked, and only asymmetric algorithms
// count (a symmetric key published in a JWKS is anyone's).
func TestJWKSClaimsAndAlgorithms(t *testing.T) {
	k := testKeys()
	p := newIDP(t)
	secret := []byte("0123456789abcdef0123456789abcdef")
	pub := base64.RawURLEncoding.EncodeToString(k.rsa.N.Bytes())
	p.serveRaw(http.StatusOK, `{"keys":[`+
		`{"kty":"RSA","kid":"a","alg":"RS256","use":"sig","n":"`+pub+`","e":"AQAB"},`+
		`{"kty":"RSA","kid":"enc","alg":"RS256","use":"enc","n":"`+pub+`","e":"AQAB"},`+
		`{"kty":"oct","kid":"sym","alg":"HS256","k":"`+base64.RawURLEncoding.EncodeToString(secret)+`"}]}`)
	au, _ := testJWKS(t, p, defaultJWKSOptions)

	hs := jwt.NewWithClaims(jwt.SigningMethodHS256, claims("orders:publish", AllOrders))
	hs.Header["kid"] = "sym"
	hsToken, _ := hs.SignedString(secret)
	for _, tt := range []struct {
		name  string
		token string
		ok    bool
	}{
		{"good", idpToken(t, k.rsa, "a"), true},
		{"no kid: every key is tried", idpToken(t, k.rsa, ""), true},
		{"another issuer", idpToken(t, k.rsa, "a", func(c *Claims) { c.Issuer = "https://idp.example/pool-2" }), false},
		{"another audience", idpToken(t, k.rsa, "a", func(c *Claims) { c.Audience = jwt.ClaimStrings{"someone-else"} }), false},
		{"expired", idpToken(t, k.rsa, "a", func(c *Claims) { c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-time.Hour)) }), false},
		{"signed by a key the provider does not publish", idpToken(t, k.rsa2, "a"), false},
		{"the provider's encryption key", idpToken(t, k.rsa, "enc"), false},
		{"HS256 with the published symmetric key", hsToken, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if ok, why := accepts(au, tt.token); ok != tt.ok {
				t.Errorf("accepted %v (%s), want %v", ok, why, tt.ok)
			}
		})
	}
}

// TestJWKSConfig: what a JWKS URL must come with, checked before anything is
// fetched.
func TestJWKSConfig(t *testing.T) {
	for _, tt := range []struct {
		cfg  AuthConfig
		want string // "" valid
	}{
		{AuthConfig{JWKSURL: "https://idp.example/jwks", Issuer: testIssuer}, ""},
		{AuthConfig{JWKSURL: "http://127.0.0.1:9/jwks", Issuer: testIssuer}, ""},
		{AuthConfig{JWKSURL: "http://localhost:9/jwks", Issuer: testIssuer}, ""},
		{AuthConfig{JWKSURL: "http://idp.example/jwks", Issuer: testIssuer}, "must be https"},
		{AuthConfig{JWKSURL: "/jwks.json", Issuer: testIssuer}, "not an absolute URL"},
		{AuthConfig{JWKSURL: "https://idp.example/jwks"}, "needs the issuer"},
		{AuthConfig{JWKSURL: "https://idp.example/jwks", Issuer: testIssuer, Secret: testKeys().secret}, "not both"},
		{AuthConfig{JWKSURL: "https://idp.example/jwks", Issuer: testIssuer, PublicKeyPEM: testKeys().rsaPEM}, "not both"},
	} {
		err := tt.cfg.Validate()
		if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("Validate(%+v) = %v, want %q", tt.cfg, err, tt.want)
		}
	}
}

// TestJWKSThroughServer: NewVerifier (reading the settings) fetches
// nothing; the first NewServer fetches the provider's keys, once for every
// server sharing the Verifier, and guards the routes with them, as with a
// key of its own; the provider going down changes nothing for tokens it
// signed.
func TestJWKSThroughServer(t *testing.T) {
	k := testKeys()
	p := newIDP(t)
	p.serve(map[string]*rsa.PrivateKey{"a": k.rsa})
	b := broker.NewMemory(brokertest.Options())
	defer b.Close()
	v := verifier(t, AuthConfig{JWKSURL: p.url(), Issuer: testIssuer, Audience: "orderstream"})
	if n := p.fetches.Load(); n != 0 {
		t.Fatalf("NewVerifier fetched the keys %d times, want none", n)
	}
	srv, _ := newTestServer(t, b, Config{Auth: v})
	newTestServer(t, b, Config{Auth: v})
	if n := p.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches once two servers were built, want 1", n)
	}
	id := uuid.NewString()
	post := func(token string) int {
		req, _ := http.NewRequest("POST", srv.URL+"/orders/"+id+"/events", strings.NewReader(`{"status":"Created"}`))
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if got := post(""); got != http.StatusUnauthorized {
		t.Errorf("no token: %d", got)
	}
	p.down()
	if got := post(idpToken(t, k.rsa, "a")); got != http.StatusCreated {
		t.Errorf("the provider's token, provider down: %d, want 201", got)
	}
	var detail struct{ Detail string }
	req, _ := http.NewRequest("GET", srv.URL+"/orders/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+idpToken(t, k.rsa2, "unknown"))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = json.NewDecoder(res.Body).Decode(&detail)
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized || !strings.Contains(detail.Detail, "kid") {
		t.Errorf("an unknown key id: %d %q", res.StatusCode, detail.Detail)
	}
}
