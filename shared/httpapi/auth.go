package httpapi

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"

	"github.com/orderstream/orderstream/shared/order"
)

// Scopes and claims a token carries (see docs/security.md).
const (
	// ScopePublish lets a token publish and simulate, for every order.
	ScopePublish = "orders:publish"
	// ScopeMetrics lets a token read GET /metrics.
	ScopeMetrics = "metrics:read"
	// AllOrders in a token's orders claim lets it read every order.
	AllOrders = "*"
	// AuthHeader carries "Bearer <token>" where Authorization can't: behind
	// CloudFront with origin access control, which puts its own SigV4
	// signature in Authorization. Like Authorization, a page on another
	// origin can't send it without CORS allowing it, so publishers may use it.
	AuthHeader = "X-Orderstream-Authorization"
	// minSecretBytes is HS256's key size: a shorter secret is guessable.
	minSecretBytes = 32
	// maxTokenBytes bounds what is parsed; real tokens are a few hundred bytes.
	maxTokenBytes = 8 << 10
	// clockLeeway forgives small clock differences with the token's issuer.
	clockLeeway = 30 * time.Second
)

// AuthConfig turns on bearer-token (JWT) authentication when a key is set:
// Secret for HS256, a PEM public key for RS256 (an RSA key) or ES256 (a
// P-256 key), or the JWKS URL where an identity provider publishes its
// rotating keys (jwks.go). Exactly one may be set. Zero: no authentication.
type AuthConfig struct {
	Secret        []byte // HS256 shared secret, at least 32 bytes
	PublicKeyPEM  []byte // RS256/ES256 public key (PKIX "PUBLIC KEY" or "RSA PUBLIC KEY")
	PublicKeyFile string // or the file that holds it, read by NewVerifier
	JWKSURL       string // or an identity provider's JWKS (https), first fetched by NewServer; needs Issuer
	Issuer        string // when set, a token's iss must equal it
	Audience      string // when set, a token's aud must name it
	Cookie        string // the cookie subscribers' tokens may come in; "": none
}

// Enabled reports whether a key is set, so that tokens are required.
func (a AuthConfig) Enabled() bool {
	return len(a.Secret) > 0 || len(a.PublicKeyPEM) > 0 || a.PublicKeyFile != "" || a.JWKSURL != ""
}

// Validate reports a key that can't be used (unreadable, unparsable, too
// short, of a type other than RSA or P-256, two keys at once, or a JWKS URL
// that is not https or comes without an issuer), for a caller that checks a
// key's shape without serving with it. It fetches nothing.
func (a AuthConfig) Validate() error {
	_, err := NewVerifier(a)
	return err
}

// A Verifier checks bearer tokens (JWT) with the key of an AuthConfig, read
// and parsed once, by NewVerifier; a JWKS's keys are fetched when the first
// server that uses the Verifier is built (NewServer), and kept fresh from
// then on (jwks.go), for every server that shares it.
type Verifier struct {
	au     *authenticator
	broken error
}

// NewVerifier builds the verifier a describes: nil when a sets no key
// (authentication off). When the key can't be used it returns the error
// and a Verifier that refuses every protected request, so that a caller
// that serves anyway fails closed.
func NewVerifier(a AuthConfig) (*Verifier, error) {
	if !a.Enabled() {
		return nil, nil
	}
	au, err := newAuthenticator(a)
	if err != nil {
		return &Verifier{broken: err}, err
	}
	return &Verifier{au: au}, nil
}

// Claims are what orderstream reads from a token, beyond exp (required),
// nbf, iat, iss and aud.
type Claims struct {
	jwt.RegisteredClaims
	// Scope is space-separated (RFC 8693), or a JSON array of scopes.
	Scope Scopes `json:"scope,omitempty"`
	// Orders names the orders a subscriber may read (any RFC 4122 form), or
	// AllOrders. A JSON string is one order.
	Orders jwt.ClaimStrings `json:"orders,omitempty"`
}

// Scopes is a scope claim: "a b" or ["a","b"] in JSON.
type Scopes []string

func (s *Scopes) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*s = strings.Fields(one)
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return errors.New("scope must be a string or an array of strings")
	}
	*s = many
	return nil
}

func (s Scopes) MarshalJSON() ([]byte, error) { return json.Marshal(strings.Join(s, " ")) }

// readsOrder reports whether the claims let their holder read the order.
func (c *Claims) readsOrder(id string) bool {
	for _, o := range c.Orders {
		if o == AllOrders {
			return true
		}
		if parsed, err := order.ParseID(o); err == nil && parsed.String() == id {
			return true
		}
	}
	return false
}

// authenticator checks tokens. A nil *authenticator lets everything through
// (authentication off).
type authenticator struct {
	parser *jwt.Parser
	key    any       // the one key, or
	jwks   *jwksKeys // the identity provider's
	cookie string
	broken error // a misconfigured key: every protected request is refused
	m      *metrics
}

// newAuthenticator checks a and builds what verifies its tokens: a JWKS's
// key source too, which fetches nothing until it is started.
func newAuthenticator(a AuthConfig) (*authenticator, error) {
	if len(a.Secret) > 0 && (len(a.PublicKeyPEM) > 0 || a.PublicKeyFile != "") {
		return nil, errors.New("auth: set a shared secret (HS256) or a public key (RS256/ES256), not both")
	}
	if len(a.PublicKeyPEM) > 0 && a.PublicKeyFile != "" {
		return nil, errors.New("auth: set the public key or its file, not both")
	}
	if a.JWKSURL != "" && (len(a.Secret) > 0 || len(a.PublicKeyPEM) > 0 || a.PublicKeyFile != "") {
		return nil, errors.New("auth: set a JWKS URL or a key of your own, not both")
	}
	methods := jwksMethods
	var key any
	var jwks *jwksKeys
	switch {
	case a.JWKSURL != "":
		// A provider's keys sign tokens for every application it serves.
		if a.Issuer == "" {
			return nil, errors.New("auth: a JWKS URL needs the issuer its tokens carry (AUTH_JWT_ISSUER)")
		}
		var err error
		if jwks, err = newJWKS(a.JWKSURL, defaultJWKSOptions); err != nil {
			return nil, fmt.Errorf("auth: %w", err)
		}
	case len(a.Secret) > 0:
		if len(a.Secret) < minSecretBytes {
			return nil, fmt.Errorf("auth: the HS256 secret has %d bytes; use at least %d random bytes", len(a.Secret), minSecretBytes)
		}
		methods, key = []string{"HS256"}, a.Secret
	default:
		pemBytes := a.PublicKeyPEM
		if a.PublicKeyFile != "" {
			b, err := os.ReadFile(a.PublicKeyFile)
			if err != nil {
				return nil, fmt.Errorf("auth: read public key: %w", err)
			}
			pemBytes = b
		}
		method, pub, err := parsePublicKey(pemBytes)
		if err != nil {
			return nil, fmt.Errorf("auth: %w", err)
		}
		methods, key = []string{method}, pub
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(methods), // never the token's own choice ("none", HS256 with a public key)
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(clockLeeway),
	}
	if a.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(a.Issuer))
	}
	if a.Audience != "" {
		opts = append(opts, jwt.WithAudience(a.Audience))
	}
	return &authenticator{parser: jwt.NewParser(opts...), key: key, jwks: jwks, cookie: a.Cookie}, nil
}

// parsePublicKey reads the first PEM block: an RSA key (RS256) or an ECDSA
// P-256 key (ES256).
func parsePublicKey(b []byte) (method string, key any, err error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return "", nil, errors.New("the public key is not PEM (-----BEGIN PUBLIC KEY-----)")
	}
	var pub any
	switch block.Type {
	case "PUBLIC KEY":
		pub, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
	default:
		return "", nil, fmt.Errorf("PEM block %q is not a public key", block.Type)
	}
	if err != nil {
		return "", nil, fmt.Errorf("parse public key: %w", err)
	}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return "", nil, fmt.Errorf("the RSA key has %d bits; use at least 2048", k.N.BitLen())
		}
		return "RS256", k, nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return "", nil, fmt.Errorf("the ECDSA key is on %s; ES256 needs P-256", k.Curve.Params().Name)
		}
		return "ES256", k, nil
	default:
		return "", nil, fmt.Errorf("a %T key is neither RSA (RS256) nor ECDSA P-256 (ES256)", pub)
	}
}

// authFromConfig is the authenticator of a server with v and metrics m:
// nil when off; when v's key can't be used (or v was not made by
// NewVerifier), one that refuses every protected request (fail closed)
// after saying why in the log. The first server of a JWKS verifier fetches
// its keys (a failure is logged, not fatal: see jwksKeys.start) and logs
// their fetches with logger from then on.
func authFromConfig(logger *slog.Logger, v *Verifier, m *metrics) *authenticator {
	if v == nil {
		return nil
	}
	err := v.broken
	if v.au == nil && err == nil {
		err = errors.New("auth: the Verifier was not made by NewVerifier")
	}
	if err == nil && v.au.jwks != nil {
		err = v.au.jwks.start(logger)
	}
	if err != nil {
		logger.Error("authentication is misconfigured: refusing every protected request", "err", err)
		return &authenticator{broken: err, m: m}
	}
	au := *v.au // the server's own copy: its metrics
	au.m = m
	return &au
}

// authError is a refused request: 401 (no usable token) or 403 (a good
// token that doesn't allow this).
type authError struct {
	status int
	code   string // RFC 6750 error code for WWW-Authenticate; "" when no token came
	detail string
	scope  string // the scope that was missing, on 403
}

func (e *authError) write(w http.ResponseWriter, r *http.Request, m *metrics) {
	m.authFailed(e.status)
	challenge := `Bearer realm="orderstream"`
	if e.code != "" {
		// The description is one of ours, never the token's text: no quotes to escape.
		challenge += fmt.Sprintf(`, error=%q, error_description=%q`, e.code, e.detail)
	}
	if e.scope != "" {
		challenge += fmt.Sprintf(`, scope=%q`, e.scope)
	}
	w.Header().Set("WWW-Authenticate", challenge)
	writeProblem(w, r, e.status, e.detail)
}

// tokenFrom finds the request's token: the Authorization header, then
// AuthHeader, or, where browsers' EventSource can't set headers
// (orAlsoURLAndCookie), the access_token query parameter or the cookie. An
// Authorization that holds an AWS signature (SigV4: CloudFront's origin
// access control signs every request to a function URL with AuthType
// AWS_IAM, replacing the viewer's) is no token of ours and is passed over.
func (a *authenticator) tokenFrom(r *http.Request, orAlsoURLAndCookie bool) (string, *authError) {
	for _, name := range []string{"Authorization", AuthHeader} {
		h := r.Header.Get(name)
		if h == "" || (name == "Authorization" && isAWSSignature(h)) {
			continue
		}
		scheme, token, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
			return "", &authError{http.StatusUnauthorized, "invalid_request", "the " + name + " header must be: Bearer <token>", ""}
		}
		return strings.TrimSpace(token), nil
	}
	if orAlsoURLAndCookie {
		if q := r.URL.Query(); q.Has("access_token") {
			return q.Get("access_token"), nil
		}
		if a.cookie == "" {
			return "", &authError{http.StatusUnauthorized, "", "a bearer token is required (Authorization or " + AuthHeader + " header, or access_token parameter)", ""}
		}
		if c, err := r.Cookie(a.cookie); err == nil {
			return c.Value, nil
		}
		return "", &authError{http.StatusUnauthorized, "", "a bearer token is required (Authorization or " + AuthHeader + " header, access_token parameter or " + a.cookie + " cookie)", ""}
	}
	return "", &authError{http.StatusUnauthorized, "", "a bearer token is required in the Authorization or " + AuthHeader + " header", ""}
}

// isAWSSignature reports whether an Authorization value is an AWS request
// signature (AWS4-HMAC-SHA256 ..., or SigV4a's AWS4-ECDSA-P256-SHA256 ...).
func isAWSSignature(h string) bool {
	return len(h) > 5 && strings.EqualFold(h[:5], "AWS4-")
}

// verify checks the token's signature, algorithm and times; ctx bounds the
// fetch of a JWKS a token's unknown key id may cause.
func (a *authenticator) verify(ctx context.Context, token string) (*Claims, *authError) {
	invalid := func(detail string) *authError {
		return &authError{http.StatusUnauthorized, "invalid_token", detail, ""}
	}
	if token == "" {
		return nil, invalid("the token is empty")
	}
	if len(token) > maxTokenBytes {
		return nil, invalid("the token is too long")
	}
	claims := &Claims{}
	keyFor := func(*jwt.Token) (any, error) { return a.key, nil }
	if a.jwks != nil {
		keyFor = a.jwks.keyFor(ctx)
	}
	_, err := a.parser.ParseWithClaims(token, claims, keyFor)
	switch {
	case err == nil:
		return claims, nil
	case errors.Is(err, jwkset.ErrKeyNotFound):
		return nil, invalid("the token's key (kid) is not one its issuer publishes")
	case errors.Is(err, jwt.ErrTokenExpired):
		return nil, invalid("the token has expired")
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return nil, invalid("the token is not valid yet")
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return nil, invalid("the token's signature or algorithm is not accepted")
	case errors.Is(err, jwt.ErrTokenInvalidIssuer), errors.Is(err, jwt.ErrTokenInvalidAudience):
		return nil, invalid("the token was issued for another service (iss or aud)")
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing) && claims.ExpiresAt == nil:
		return nil, invalid("the token has no expiry (exp)")
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return nil, invalid("the token was issued for another service (iss or aud missing)")
	case errors.Is(err, jwt.ErrTokenMalformed):
		return nil, invalid("the token is malformed")
	default:
		return nil, invalid("the token is not valid")
	}
}

// guard wraps next with a check of the request's token; allow says whether
// the claims permit the request, or else names the missing scope.
func (a *authenticator) guard(orAlsoURLAndCookie bool, allow func(*Claims, *http.Request) (bool, string), next http.Handler) http.Handler {
	if a == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.broken != nil {
			writeProblem(w, r, http.StatusInternalServerError, "authentication is misconfigured on this server")
			return
		}
		token, aerr := a.tokenFrom(r, orAlsoURLAndCookie)
		if aerr == nil {
			var claims *Claims
			claims, aerr = a.verify(r.Context(), token)
			if aerr == nil {
				ok, scope := allow(claims, r)
				if ok {
					next.ServeHTTP(w, r)
					return
				}
				aerr = &authError{http.StatusForbidden, "insufficient_scope", "the token does not allow this request", scope}
			}
		}
		aerr.write(w, r, a.m)
	})
}

func hasScope(scope string) func(*Claims, *http.Request) (bool, string) {
	return func(c *Claims, _ *http.Request) (bool, string) {
		return slices.Contains(c.Scope, scope), scope
	}
}

// publisher guards publish and simulate: a token with ScopePublish, in the
// Authorization header only. A cookie or URL token would let any page the
// user visits publish in their name (CSRF), and publishers are servers.
func (a *authenticator) publisher(next http.Handler) http.Handler {
	return a.guard(false, hasScope(ScopePublish), next)
}

// subscriber guards reading an order: a token whose orders claim names it
// (or AllOrders), from the header, the URL or the cookie. A bad id passes
// to the handler, which answers 400: it names no order to protect.
func (a *authenticator) subscriber(next http.Handler) http.Handler {
	return a.guard(true, func(c *Claims, r *http.Request) (bool, string) {
		id, err := order.ParseID(r.PathValue("id"))
		if err != nil {
			return true, ""
		}
		return c.readsOrder(id.String()), ""
	}, next)
}

// metricsReader guards GET /metrics: a token with ScopeMetrics, in the header.
func (a *authenticator) metricsReader(next http.Handler) http.Handler {
	return a.guard(false, hasScope(ScopeMetrics), next)
}
