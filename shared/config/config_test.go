package config

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"flag"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/orderstream/orderstream/shared/broker"
	"github.com/orderstream/orderstream/shared/httpapi"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// isDefault reports whether s is the table's defaults, field by field.
func isDefault(s Settings) bool {
	h, b, srv := s.HTTP, s.Broker, s.Server
	return h.HeartbeatInterval == 15*time.Second && h.RetryInterval == 3*time.Second && h.RetryJitter == 0 &&
		h.WriteTimeout == 10*time.Second && h.MaxStreamDuration == 0 && !h.HistoryOnly && h.ShuttingDown == nil &&
		h.Metrics == nil && h.MaxStreams == 0 && h.MaxStreamsPerClient == 0 && h.MaxSubscribersPerOrder == 0 &&
		h.TrustedProxies == nil && h.CORSAllowedOrigins == nil && h.Auth == nil && h.FlushPadding == 0 &&
		b.RedisURL == "" && b.RedisKeyPrefix == "orderstream:" && !b.RedisCluster && b.RedisWaitReplicas == 0 &&
		b.Options == broker.Options{Retention: 24 * time.Hour, IdleExpiry: 30 * 24 * time.Hour} &&
		!s.Metrics &&
		srv == Server{Addr: ":8080", ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, ShutdownDrain: 10 * time.Second, PeerTimeout: 20 * time.Second}
}

func TestFromEnv(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		check   func(Settings) bool
		wantErr string
	}{
		{"defaults", nil, isDefault, ""},
		{"all set", map[string]string{
			"REDIS_URL": "redis://localhost:6379", "REDIS_KEY_PREFIX": "shop1:",
			"HEARTBEAT_INTERVAL": "5s", "RETRY_INTERVAL": "1500ms", "ORDER_RETENTION": "1h",
			"STREAM_WRITE_TIMEOUT": "2s", "MAX_STREAM_DURATION": "10m",
		}, func(c Settings) bool {
			return c.Broker.RedisURL == "redis://localhost:6379" && c.Broker.RedisKeyPrefix == "shop1:" &&
				c.HTTP.HeartbeatInterval == 5*time.Second && c.HTTP.RetryInterval == 1500*time.Millisecond &&
				c.Broker.Options.Retention == time.Hour && c.HTTP.WriteTimeout == 2*time.Second && c.HTTP.MaxStreamDuration == 10*time.Minute
		}, ""},
		{"not a duration", map[string]string{"HEARTBEAT_INTERVAL": "15"}, nil, "HEARTBEAT_INTERVAL"},
		{"zero heartbeat", map[string]string{"HEARTBEAT_INTERVAL": "0s"}, nil, "HEARTBEAT_INTERVAL must be positive"},
		{"sub-millisecond retry", map[string]string{"RETRY_INTERVAL": "10us"}, nil, "RETRY_INTERVAL"},
		{"negative max stream", map[string]string{"MAX_STREAM_DURATION": "-1s"}, nil, "MAX_STREAM_DURATION"},
		{"cluster", map[string]string{
			"REDIS_URL": "redis://:pw@10.0.0.1:7000?addr=10.0.0.2:7000&addr=10.0.0.3:7000", "REDIS_CLUSTER": "true", "REDIS_WAIT_REPLICAS": "1",
		}, func(c Settings) bool { return c.Broker.RedisCluster && c.Broker.RedisWaitReplicas == 1 }, ""},
		{"cluster without a URL", map[string]string{"REDIS_CLUSTER": "true"}, nil, "need REDIS_URL"},
		{"wait without a URL", map[string]string{"REDIS_WAIT_REPLICAS": "1"}, nil, "need REDIS_URL"},
		{"negative wait", map[string]string{"REDIS_URL": "redis://h:6379", "REDIS_WAIT_REPLICAS": "-1"}, nil, "REDIS_WAIT_REPLICAS must not be negative"},
		{"cluster flag not a boolean", map[string]string{"REDIS_URL": "redis://h:6379", "REDIS_CLUSTER": "maybe"}, nil, "REDIS_CLUSTER"},
		{"bad URL", map[string]string{"REDIS_URL": "http://h:6379"}, nil, "REDIS_URL"},
		{"bad cluster seed", map[string]string{"REDIS_URL": "redis://h:6379?colour=blue", "REDIS_CLUSTER": "true"}, nil, "REDIS_URL"},
		{"every error at once", map[string]string{"HEARTBEAT_INTERVAL": "x", "ORDER_RETENTION": "y"}, nil, "ORDER_RETENTION"},
		// SHUTDOWN_DRAIN, RETRY_JITTER and ORDER_IDLE_EXPIRY.
		{"restart settings default", nil, func(c Settings) bool {
			return c.Server.ShutdownDrain == 10*time.Second && c.HTTP.RetryJitter == 0 &&
				c.Broker.Options.IdleExpiry == 30*24*time.Hour
		}, ""},
		{"restart settings set", map[string]string{"SHUTDOWN_DRAIN": "30s", "RETRY_JITTER": "2s", "ORDER_IDLE_EXPIRY": "168h"}, func(c Settings) bool {
			return c.Server.ShutdownDrain == 30*time.Second && c.HTTP.RetryJitter == 2*time.Second && c.Broker.Options.IdleExpiry == 168*time.Hour
		}, ""},
		{"no drain", map[string]string{"SHUTDOWN_DRAIN": "0s"}, func(c Settings) bool { return c.Server.ShutdownDrain == 0 }, ""},
		{"drain not a duration", map[string]string{"SHUTDOWN_DRAIN": "10"}, nil, "SHUTDOWN_DRAIN"},
		{"negative drain", map[string]string{"SHUTDOWN_DRAIN": "-1s"}, nil, "SHUTDOWN_DRAIN must not be negative"},
		{"negative jitter", map[string]string{"RETRY_JITTER": "-5ms"}, nil, "RETRY_JITTER must not be negative"},
		{"jitter not a duration", map[string]string{"RETRY_JITTER": "lots"}, nil, "RETRY_JITTER"},
		{"idle expiry under retention", map[string]string{"ORDER_IDLE_EXPIRY": "1h", "ORDER_RETENTION": "2h"}, nil, "ORDER_IDLE_EXPIRY (1h0m0s) must be at least ORDER_RETENTION"},
		// The dead-peer timeout: twice the write timeout unless set; 0 is
		// the kernel's own.
		{"peer timeout follows the write timeout", map[string]string{"STREAM_WRITE_TIMEOUT": "30s"}, func(c Settings) bool {
			return c.Server.PeerTimeout == time.Minute
		}, ""},
		{"peer timeout set", map[string]string{"STREAM_PEER_TIMEOUT": "45s"}, func(c Settings) bool { return c.Server.PeerTimeout == 45*time.Second }, ""},
		{"peer timeout off", map[string]string{"STREAM_PEER_TIMEOUT": "0"}, func(c Settings) bool { return c.Server.PeerTimeout == 0 }, ""},
		{"negative peer timeout", map[string]string{"STREAM_PEER_TIMEOUT": "-1s"}, nil, "STREAM_PEER_TIMEOUT must not be negative"},
		{"sub-second peer timeout", map[string]string{"STREAM_PEER_TIMEOUT": "500ms"}, nil, "STREAM_PEER_TIMEOUT must be 0 or at least 1s"},
		{"peer timeout not a duration", map[string]string{"STREAM_PEER_TIMEOUT": "20"}, nil, "STREAM_PEER_TIMEOUT"},
		// The local server's own.
		{"address", map[string]string{"ADDR": "127.0.0.1:0", "ADDR_FILE": "/tmp/addr"}, func(c Settings) bool {
			return c.Server.Addr == "127.0.0.1:0" && c.Server.AddrFile == "/tmp/addr"
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := FromEnv(env(tt.env))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want an error naming %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !tt.check(c) {
				t.Fatalf("got %+v, %v", c, err)
			}
		})
	}
}

// TestEveryErrorAtOnce: one run reports every bad value, from the
// environment and the command line alike, each once.
func TestEveryErrorAtOnce(t *testing.T) {
	_, err := FromArgs([]string{"orderstream", "-retry", "soon", "-max-streams=-3"}, env(map[string]string{
		"HEARTBEAT_INTERVAL": "x", "ORDER_RETENTION": "0s", "TRUSTED_PROXIES": "10.0.0.0/33",
		"CORS_ALLOWED_ORIGINS": "ftp://x", "AUTH_JWT_SECRET": "short", "REDIS_CLUSTER": "true",
	}), io.Discard)
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		`HEARTBEAT_INTERVAL="x": not a Go duration`, `-retry="soon": not a Go duration`, "-max-streams must not be negative",
		"ORDER_RETENTION must be positive", "TRUSTED_PROXIES", "CORS_ALLOWED_ORIGINS", "at least 32", "need REDIS_URL",
	} {
		if n := strings.Count(err.Error(), want); n != 1 {
			t.Errorf("%q appears %d times in:\n%v", want, n, err)
		}
	}
	// ORDER_RETENTION did not parse: no cross-check with it on top.
	if strings.Contains(err.Error(), "ORDER_IDLE_EXPIRY") {
		t.Errorf("a cross-check of a setting that did not parse: %v", err)
	}
}

func TestFlagsOverrideEnv(t *testing.T) {
	c, err := FromArgs([]string{"x", "-heartbeat", "1s"}, env(map[string]string{"HEARTBEAT_INTERVAL": "5s", "RETRY_INTERVAL": "2s"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTP.HeartbeatInterval != time.Second || c.HTTP.RetryInterval != 2*time.Second {
		t.Fatalf("heartbeat %v (want the flag's 1s), retry %v (want the env's 2s)", c.HTTP.HeartbeatInterval, c.HTTP.RetryInterval)
	}
	// Boolean flags stand alone; an empty flag is a value, not "unset".
	c, err = FromArgs([]string{"x", "-metrics", "-addr", ""}, env(nil), io.Discard)
	if err != nil || !c.Metrics || c.Server.Addr != "" {
		t.Fatalf("-metrics -addr '': metrics %v, addr %q, %v", c.Metrics, c.Server.Addr, err)
	}
	if _, err := FromArgs([]string{"x", "-heartbeat", ""}, env(nil), io.Discard); err == nil || !strings.Contains(err.Error(), "-heartbeat") {
		t.Fatalf("an empty -heartbeat: %v, want an error naming it", err)
	}
	// An empty key prefix would put the orders among the database's other keys.
	if _, err := FromArgs([]string{"x", "-redis-key-prefix", ""}, env(map[string]string{"REDIS_URL": "redis://h:6379"}), io.Discard); err == nil || !strings.Contains(err.Error(), "-redis-key-prefix") {
		t.Fatalf("an empty -redis-key-prefix with Redis: %v, want an error naming it", err)
	}
	if _, err := FromArgs([]string{"x", "-h"}, env(nil), io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v, want flag.ErrHelp", err)
	}
	if _, err := FromArgs([]string{"x", "stray"}, env(nil), io.Discard); err == nil {
		t.Fatal("a stray argument was accepted")
	}
}

// TestOverrides: a deployment's own default (the stream function caps its
// streams) yields to the variable, and names a setting that exists.
func TestOverrides(t *testing.T) {
	capped := Override{"MAX_STREAM_DURATION", "5m"}
	c, err := FromEnv(env(nil), capped)
	if err != nil || c.HTTP.MaxStreamDuration != 5*time.Minute {
		t.Fatalf("override: %v, %v; want 5m", c.HTTP.MaxStreamDuration, err)
	}
	c, err = FromEnv(env(map[string]string{"MAX_STREAM_DURATION": "0"}), capped)
	if err != nil || c.HTTP.MaxStreamDuration != 0 {
		t.Fatalf("variable over the override: %v, %v; want 0", c.HTTP.MaxStreamDuration, err)
	}
	if _, err := FromEnv(env(nil), Override{"MAX_STREAM_DURATON", "5m"}); err == nil {
		t.Fatal("an override of no setting was accepted")
	}
	if _, err := FromEnv(env(nil), Override{"MAX_STREAM_DURATION", "-5m"}); err == nil || !strings.Contains(err.Error(), "MAX_STREAM_DURATION") {
		t.Fatalf("a bad override: %v", err)
	}
}

// TestHardening covers the settings of docs/security.md: each is off by
// default, on with its variable, and a bad value is an error naming it.
func TestHardening(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		check   func(Settings) bool
		wantErr string
	}{
		{"metrics on", map[string]string{"METRICS": "true"}, func(c Settings) bool { return c.Metrics }, ""},
		{"metrics off", map[string]string{"METRICS": "0"}, func(c Settings) bool { return !c.Metrics }, ""},
		{"metrics not a boolean", map[string]string{"METRICS": "yes please"}, nil, "METRICS"},
		{"EMF with metrics", map[string]string{"METRICS": "true", "METRICS_EMF_SERVICE": "shop-prod"}, func(c Settings) bool { return c.MetricsEMFService == "shop-prod" }, ""},
		{"EMF without metrics", map[string]string{"METRICS_EMF_SERVICE": "shop-prod"}, nil, "METRICS_EMF_SERVICE"},
		{"EMF dimension too long", map[string]string{"METRICS": "true", "METRICS_EMF_SERVICE": strings.Repeat("x", 1025)}, nil, "METRICS_EMF_SERVICE"},
		{"limits", map[string]string{
			"MAX_STREAMS": "10000", "MAX_STREAMS_PER_CLIENT": "20", "MAX_SUBSCRIBERS_PER_ORDER": "500",
			"TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.1", "READ_HEADER_TIMEOUT": "5s", "IDLE_TIMEOUT": "30s",
		}, func(c Settings) bool {
			h := c.HTTP
			return h.MaxStreams == 10000 && h.MaxStreamsPerClient == 20 && h.MaxSubscribersPerOrder == 500 &&
				len(h.TrustedProxies) == 2 && c.Server.ReadHeaderTimeout == 5*time.Second && c.Server.IdleTimeout == 30*time.Second
		}, ""},
		{"limit not a number", map[string]string{"MAX_STREAMS": "lots"}, nil, "MAX_STREAMS"},
		{"negative limit", map[string]string{"MAX_STREAMS_PER_CLIENT": "-1"}, nil, "MAX_STREAMS_PER_CLIENT must not be negative"},
		{"bad proxy", map[string]string{"TRUSTED_PROXIES": "10.0.0.0/33"}, nil, "TRUSTED_PROXIES"},
		{"zero header timeout", map[string]string{"READ_HEADER_TIMEOUT": "0s"}, nil, "READ_HEADER_TIMEOUT must be positive"},
		{"cors", map[string]string{"CORS_ALLOWED_ORIGINS": "https://shop.example, http://localhost:3000"}, func(c Settings) bool {
			o := c.HTTP.CORSAllowedOrigins
			return len(o) == 2 && o[0] == "https://shop.example" && o[1] == "http://localhost:3000"
		}, ""},
		{"cors origin with a path", map[string]string{"CORS_ALLOWED_ORIGINS": "https://shop.example/app"}, nil, "CORS_ALLOWED_ORIGINS"},
		{"auth with a secret", map[string]string{"AUTH_JWT_SECRET": strings.Repeat("s", 32), "AUTH_JWT_ISSUER": "https://shop.example"},
			func(c Settings) bool {
				return verifies(t, c, []byte(strings.Repeat("s", 32)), "https://shop.example", "orderstream_token")
			}, ""},
		{"auth secret too short", map[string]string{"AUTH_JWT_SECRET": "hunter2"}, nil, "at least 32"},
		{"auth key not PEM", map[string]string{"AUTH_JWT_PUBLIC_KEY": "ssh-rsa AAAA"}, nil, "AUTH_JWT_"},
		{"auth key file missing", map[string]string{"AUTH_JWT_PUBLIC_KEY_FILE": "/nonexistent/key.pem"}, nil, "read public key"},
		{"auth secret and key", map[string]string{"AUTH_JWT_SECRET": strings.Repeat("s", 32), "AUTH_JWT_PUBLIC_KEY_FILE": "/k.pem"}, nil, "not both"},
		{"auth cookie name", map[string]string{"AUTH_COOKIE": "a b"}, nil, "AUTH_COOKIE"},
		{"auth with a JWKS", map[string]string{"AUTH_JWKS_URL": "https://idp.example/.well-known/jwks.json", "AUTH_JWT_ISSUER": "https://idp.example/"},
			// Nothing is fetched while the settings are read (TestJWKSSetting fetches).
			func(c Settings) bool { return c.HTTP.Auth != nil }, ""},
		{"auth JWKS without issuer", map[string]string{"AUTH_JWKS_URL": "https://idp.example/jwks"}, nil, "AUTH_JWT_ISSUER"},
		{"auth JWKS in the clear", map[string]string{"AUTH_JWKS_URL": "http://idp.example/jwks", "AUTH_JWT_ISSUER": "x"}, nil, "must be https"},
		{"auth JWKS and a secret", map[string]string{"AUTH_JWKS_URL": "https://idp.example/jwks", "AUTH_JWT_ISSUER": "x", "AUTH_JWT_SECRET": strings.Repeat("s", 32)}, nil, "not both"},
		{"zero idle timeout", map[string]string{"IDLE_TIMEOUT": "0s"}, nil, "IDLE_TIMEOUT must be positive"},
		{"flush padding", map[string]string{"FLUSH_PADDING": "2048"}, func(c Settings) bool { return c.HTTP.FlushPadding == 2048 }, ""},
		{"flush padding off by default", nil, func(c Settings) bool { return c.HTTP.FlushPadding == 0 }, ""},
		{"negative flush padding", map[string]string{"FLUSH_PADDING": "-1"}, nil, "FLUSH_PADDING must not be negative"},
		{"huge flush padding", map[string]string{"FLUSH_PADDING": "1000000"}, nil, "FLUSH_PADDING must be at most"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := FromEnv(env(tt.env))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want an error naming %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !tt.check(c) {
				t.Fatalf("got %+v, %v", c, err)
			}
		})
	}
}

// TestEMFNeedsMetrics: METRICS_EMF_SERVICE's cross-check with METRICS reads
// the flag as well as the variable, and says nothing more when METRICS
// itself did not parse (its own error says it).
func TestEMFNeedsMetrics(t *testing.T) {
	c, err := FromArgs([]string{"x", "-metrics", "-metrics-emf-service", "shop-prod"}, env(nil), io.Discard)
	if err != nil || !c.Metrics || c.MetricsEMFService != "shop-prod" {
		t.Fatalf("flags: %+v, %v", c, err)
	}
	_, err = FromArgs([]string{"x", "-metrics=false"}, env(map[string]string{"METRICS_EMF_SERVICE": "shop-prod"}), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "METRICS_EMF_SERVICE") {
		t.Fatalf("-metrics=false with METRICS_EMF_SERVICE: %v", err)
	}
	_, err = FromEnv(env(map[string]string{"METRICS": "yes please", "METRICS_EMF_SERVICE": "shop-prod"}))
	if err == nil || !strings.Contains(err.Error(), "METRICS=") || strings.Contains(err.Error(), "METRICS_EMF_SERVICE") {
		t.Fatalf("a bad METRICS: %v, want its own error alone", err)
	}
}

// TestJWKSSetting: AUTH_JWKS_URL (or -auth-jwks-url) reaches the verifier,
// with the issuer: a token signed with the provider's published key and
// carrying its issuer is taken, one with another issuer is not.
func TestJWKSSetting(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	jwks := `{"keys":[{"kty":"RSA","kid":"k1","alg":"RS256","use":"sig","n":"` + b64(key.N.Bytes()) +
		`","e":"` + b64(big.NewInt(int64(key.E)).Bytes()) + `"}]}`
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, jwks)
	}))
	defer idp.Close()
	const iss = "https://idp.example/pool"
	for name, load := range map[string]func() (Settings, error){
		"environment": func() (Settings, error) {
			return FromEnv(env(map[string]string{"AUTH_JWKS_URL": idp.URL + "/jwks.json", "AUTH_JWT_ISSUER": iss}))
		},
		"flags": func() (Settings, error) {
			return FromArgs([]string{"orderstream", "-auth-jwks-url", idp.URL + "/jwks.json", "-auth-issuer", iss}, env(nil), io.Discard)
		},
	} {
		t.Run(name, func(t *testing.T) {
			c, err := load()
			if err != nil {
				t.Fatal(err)
			}
			b := broker.NewMemory(c.Broker.Options)
			defer b.Close()
			h := httpapi.NewServer(slog.New(slog.DiscardHandler), b, c.HTTP)
			status := func(issuer string) int {
				tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
					"exp": time.Now().Add(time.Hour).Unix(), "iss": issuer, "orders": "*",
				})
				tok.Header["kid"] = "k1"
				token, err := tok.SignedString(key)
				if err != nil {
					t.Fatal(err)
				}
				req := httptest.NewRequest(http.MethodGet, "/orders/"+uuid.NewString(), nil)
				req.Header.Set("Authorization", "Bearer "+token)
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				return rec.Code
			}
			if got := status(iss); got != http.StatusNotFound {
				t.Errorf("the provider's token: %d, want 404 (authorised, no such order)", got)
			}
			if got := status("https://elsewhere.example"); got != http.StatusUnauthorized {
				t.Errorf("another issuer's token: %d, want 401", got)
			}
		})
	}
}

// verifies reports whether c's verifier takes a subscriber's token signed
// with secret and carrying iss, in cookie, and refuses one with another
// issuer: the secret, the issuer and the cookie all reached it.
func verifies(t *testing.T, c Settings, secret []byte, iss, cookie string) bool {
	t.Helper()
	if c.HTTP.Auth == nil {
		return false
	}
	b := broker.NewMemory(c.Broker.Options)
	defer b.Close()
	h := httpapi.NewServer(slog.New(slog.DiscardHandler), b, c.HTTP)
	status := func(issuer string) int {
		token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
			"exp": time.Now().Add(time.Hour).Unix(), "iss": issuer, "orders": "*",
		}).SignedString(secret)
		if err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest(http.MethodGet, "/orders/"+uuid.NewString(), nil)
		req.AddCookie(&http.Cookie{Name: cookie, Value: token})
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	return status(iss) == http.StatusNotFound && status("https://elsewhere.example") == http.StatusUnauthorized
}

func TestDefaultsAddNothing(t *testing.T) {
	c, err := FromEnv(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	h := c.HTTP
	if c.Metrics || h.Metrics != nil || h.Auth != nil || h.MaxStreams != 0 || h.MaxStreamsPerClient != 0 || h.MaxSubscribersPerOrder != 0 || h.TrustedProxies != nil || h.CORSAllowedOrigins != nil {
		t.Fatalf("defaults turn on: %+v", h)
	}
}

// TestSecretsHaveNoFlags: a secret on a command line is visible to every
// user of the machine (ps), so it comes from the environment only.
func TestSecretsHaveNoFlags(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	if _, err := load(env(nil), fs, nil, nil); err != nil {
		t.Fatal(err)
	}
	fs.VisitAll(func(f *flag.Flag) {
		if strings.Contains(f.Name, "secret") || f.Name == "auth-public-key" {
			t.Errorf("flag -%s carries a secret", f.Name)
		}
	})
	for _, name := range []string{"metrics", "max-streams", "max-streams-per-client", "max-subscribers-per-order", "trusted-proxies", "cors-origins", "auth-public-key-file", "auth-issuer", "auth-audience", "auth-cookie", "read-header-timeout", "idle-timeout", "addr", "addr-file"} {
		if fs.Lookup(name) == nil {
			t.Errorf("no flag -%s", name)
		}
	}
}

// TestTable: every row is whole (a name, a usage, and a default that
// parses), names and flags are unique, and the boolean flags stand alone.
func TestTable(t *testing.T) {
	names, flags := map[string]bool{}, map[string]bool{}
	for _, st := range table {
		if st.name == "" || st.usage == "" || st.value.parse == nil {
			t.Errorf("incomplete row %+v", st)
		}
		if names[st.name] || (st.flag != "" && flags[st.flag]) {
			t.Errorf("%s or -%s is in the table twice", st.name, st.flag)
		}
		names[st.name], flags[st.flag] = true, true
		if st.def != "" {
			if err := st.value.parse(&parsing{failed: map[string]bool{}}, st.name, st.def); err != nil {
				t.Errorf("%s's default %q: %v", st.name, st.def, err)
			}
		}
	}
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	if _, err := load(env(nil), fs, nil, nil); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"metrics", "redis-cluster"} {
		if b, ok := fs.Lookup(name).Value.(interface{ IsBoolFlag() bool }); !ok || !b.IsBoolFlag() {
			t.Errorf("-%s is not a boolean flag", name)
		}
	}
	if b, ok := fs.Lookup("heartbeat").Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
		t.Error("-heartbeat is a boolean flag")
	}
}
