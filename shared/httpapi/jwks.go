package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"
)

// jwksMethods are the algorithms a JWKS key may sign with: asymmetric only.
// A symmetric ("oct") key published at a URL is everyone's key.
var jwksMethods = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// jwksOptions tune how a JWKS is fetched; defaultJWKSOptions are the
// service's, tests shorten them.
type jwksOptions struct {
	fetchTimeout    time.Duration // one fetch, start to end
	maxAge          time.Duration // keys older than this are fetched again (a withdrawn key stops counting)
	retryEvery      time.Duration // after a failed fetch, the next try waits this long
	unknownKIDEvery time.Duration // a token naming a key not in the set fetches at most this often
	maxBytes        int64         // a JWKS larger than this is refused
}

var defaultJWKSOptions = jwksOptions{
	fetchTimeout: 5 * time.Second,
	maxAge:       time.Hour,
	retryEvery:   time.Minute,
	// A provider rotating its keys publishes the new one before it signs
	// with it, so the first token with a new kid finds it at once; a flood
	// of made-up kids costs the provider one fetch per 15 s per instance.
	unknownKIDEvery: 15 * time.Second,
	maxBytes:        1 << 20,
}

// jwksKeys are the verification keys an identity provider (a Cognito user
// pool, Auth0, Okta) publishes at a JWKS URL, kept in memory and read with
// keyfunc. NewVerifier makes them (newJWKS), fetching nothing, so that
// reading the settings does no network I/O and a process that verifies no
// token (the ingest function) never calls the provider. They are fetched
// when the first server is built (start); again when a token names a key id
// the set lacks (the provider rotated), at most once per unknownKIDEvery;
// and in the background once they are older than maxAge. A fetch that
// fails, answers other than 200, or brings anything but a set with a usable
// key changes nothing: the last good keys stay, so a provider that is down
// or broken never locks everyone out.
type jwksKeys struct {
	url    string
	opts   jwksOptions
	client *http.Client
	store  *lastGoodKeys

	// Set once by start, read by every verify after it.
	once     sync.Once
	startErr error
	logger   *slog.Logger
	keyfunc  keyfunc.Keyfunc

	lastTry    atomic.Int64 // UnixNano of the last background fetch started
	refreshing atomic.Bool  // one background fetch at a time
}

// checkJWKSURL accepts https URLs, and http ones to this machine (a local
// provider, the tests): keys fetched in the clear could be anyone's.
func checkJWKSURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("the JWKS URL %q is not an absolute URL", raw)
	}
	if u.Scheme == "https" || (u.Scheme == "http" && isLoopback(u.Hostname())) {
		return nil
	}
	return fmt.Errorf("the JWKS URL %q must be https://", raw)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// newJWKS checks rawURL and makes the keys' client and store; start
// fetches them.
func newJWKS(rawURL string, opts jwksOptions) (*jwksKeys, error) {
	if err := checkJWKSURL(rawURL); err != nil {
		return nil, err
	}
	j := &jwksKeys{
		url:   rawURL,
		opts:  opts,
		store: &lastGoodKeys{Storage: jwkset.NewMemoryStorage()},
	}
	j.client = &http.Client{
		Timeout:   opts.fetchTimeout,
		Transport: limitBody{http.DefaultTransport, opts.maxBytes},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 3 {
				return errors.New("too many redirects")
			}
			return checkJWKSURL(req.URL.String())
		},
	}
	return j, nil
}

// start fetches the keys the first time it is called, logging to logger
// from then on, and makes them ready for keyFor. The fetch takes
// fetchTimeout at most; one that fails is logged, not fatal: the first
// token tries again, and the server comes up either way. Its error is one
// of the library's options, never the provider's.
func (j *jwksKeys) start(logger *slog.Logger) error {
	j.once.Do(func() {
		j.logger = logger
		j.startErr = j.fetchFirst()
	})
	return j.startErr
}

func (j *jwksKeys) fetchFirst() error {
	rawURL, opts := j.url, j.opts
	// The storage that keyfunc refreshes on an unknown kid; making it
	// fetches the first time.
	fetched, err := jwkset.NewStorageFromHTTP(rawURL, jwkset.HTTPClientStorageOptions{
		Client:                    j.client,
		HTTPTimeout:               opts.fetchTimeout,
		NoErrorReturnFirstHTTPReq: true,
		RefreshErrorHandler: func(_ context.Context, err error) {
			j.fetchFailed(err)
		},
		Storage: j.store,
	})
	if err != nil {
		return fmt.Errorf("JWKS %s: %w", rawURL, err)
	}
	j.lastTry.Store(time.Now().UnixNano())
	storage, err := jwkset.NewHTTPClient(jwkset.HTTPClientOptions{
		HTTPURLs:          map[string]jwkset.Storage{rawURL: fetched},
		RefreshUnknownKID: rate.NewLimiter(rate.Every(opts.unknownKIDEvery), 1),
		// Bounds the wait for the limiter and the fetch after it: a token
		// that would wait longer is refused at once.
		RateLimitWaitMax: opts.fetchTimeout,
	})
	if err != nil {
		return fmt.Errorf("JWKS %s: %w", rawURL, err)
	}
	j.keyfunc, err = keyfunc.New(keyfunc.Options{
		Storage: storage,
		// Keys for signatures, or of no stated use; never encryption keys.
		UseWhitelist: []jwkset.USE{jwkset.UseSig, ""},
	})
	if err != nil {
		return fmt.Errorf("JWKS %s: %w", rawURL, err)
	}
	return nil
}

// keyFor returns the jwt.Keyfunc for a token checked within ctx (an unknown
// kid's fetch is bounded by it), and starts a background fetch when the
// keys are old. Only a started jwksKeys (start without an error) has keys.
func (j *jwksKeys) keyFor(ctx context.Context) jwt.Keyfunc {
	if j.keyfunc == nil {
		return func(*jwt.Token) (any, error) { return nil, errors.New("the JWKS was never fetched") }
	}
	j.refreshIfOld()
	return j.keyfunc.KeyfuncCtx(ctx)
}

func (j *jwksKeys) refreshIfOld() {
	now := time.Now()
	if now.Sub(j.store.fetchedAt()) < j.opts.maxAge {
		return
	}
	if now.Sub(time.Unix(0, j.lastTry.Load())) < j.opts.retryEvery || !j.refreshing.CompareAndSwap(false, true) {
		return
	}
	j.lastTry.Store(now.UnixNano())
	// Its own goroutine, so that no request waits for it; it ends with the
	// fetch, within fetchTimeout.
	go func() {
		defer j.refreshing.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), j.opts.fetchTimeout)
		defer cancel()
		// A storage made over the same keys fetches into them once: the
		// library's own fetch, parse and validation, without its refresh
		// goroutine.
		_, err := jwkset.NewStorageFromHTTP(j.url, jwkset.HTTPClientStorageOptions{
			Client: j.client, Ctx: ctx, HTTPTimeout: j.opts.fetchTimeout, Storage: j.store,
		})
		if err != nil {
			j.fetchFailed(err)
		}
	}()
}

func (j *jwksKeys) fetchFailed(err error) {
	n, _ := j.store.KeyReadAll(context.Background())
	j.logger.Warn("JWKS fetch failed: keeping the last good keys", "url", j.url, "keys", len(n), "err", err)
}

// lastGoodKeys is the keys of the last fetch that brought at least one: a
// set that parses but holds no key we can use (an empty body, "{}", a
// provider mid-outage) replaces nothing.
type lastGoodKeys struct {
	jwkset.Storage
	fetched atomic.Int64 // UnixNano of the last good fetch; 0: none yet
}

var errNoUsableKey = errors.New("the JWKS holds no key this service can use")

func (s *lastGoodKeys) KeyReplaceAll(ctx context.Context, given []jwkset.JWK) error {
	if len(given) == 0 {
		return errNoUsableKey
	}
	if err := s.Storage.KeyReplaceAll(ctx, given); err != nil {
		return err
	}
	s.fetched.Store(time.Now().UnixNano())
	return nil
}

func (s *lastGoodKeys) fetchedAt() time.Time {
	n := s.fetched.Load()
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// limitBody refuses a response body over max bytes (a JWKS is a few KB).
type limitBody struct {
	rt  http.RoundTripper
	max int64
}

func (l limitBody) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := l.rt.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	res.Body = http.MaxBytesReader(nil, res.Body, l.max)
	return res, nil
}
