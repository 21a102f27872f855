// Package config holds the service's settings: one table of everything a
// deployment can set (name, flag, default, parse, usage), read once into
// typed values with every bad value reported at once. Names and defaults
// are the contract's; the README's "Configuration" table and template.yaml's
// parameters are checked against this table by tests. A new setting is one
// row here and one in the README.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/orderstream/orderstream/shared/broker"
	"github.com/orderstream/orderstream/shared/httpapi"
)

// Settings are the service's settings, parsed.
type Settings struct {
	// HTTP is the core's configuration, ready for httpapi.NewServer but for
	// what the wiring adds (Metrics, ShuttingDown) and a deployment's own
	// choices (HistoryOnly).
	HTTP httpapi.Config
	// Broker chooses and tunes the broker.
	Broker Broker
	// Metrics serves GET /metrics (METRICS); the wiring makes the registry.
	Metrics bool
	// MetricsEMFService (METRICS_EMF_SERVICE), when set, also writes the
	// open streams to stdout as CloudWatch embedded metric format lines,
	// dimension Service=this (shared/emf): what ECS scales on.
	MetricsEMFService string
	// Server is the local server's own: Lambda has no listener of its own.
	Server Server
}

// Broker is which broker to open and how.
type Broker struct {
	RedisURL          string // REDIS_URL; empty: the in-process broker
	RedisKeyPrefix    string // REDIS_KEY_PREFIX
	RedisCluster      bool   // REDIS_CLUSTER: RedisURL names a seed node of a Redis Cluster
	RedisWaitReplicas int    // REDIS_WAIT_REPLICAS: replicas a publish waits for (WAIT); 0: none
	// Options: ORDER_RETENTION and ORDER_IDLE_EXPIRY.
	Options broker.Options
}

// Server is the local server's http.Server and its shutdown.
type Server struct {
	Addr              string        // ADDR
	AddrFile          string        // ADDR_FILE: once listening, the address is written here
	ReadHeaderTimeout time.Duration // READ_HEADER_TIMEOUT
	IdleTimeout       time.Duration // IDLE_TIMEOUT: keep-alive connections between requests
	ShutdownDrain     time.Duration // SHUTDOWN_DRAIN: streams end spread over this long at shutdown
	// PeerTimeout is STREAM_PEER_TIMEOUT: a stream whose client stopped
	// answering (its network went: no FIN, no RST) ends after about this
	// long; 0 leaves it to the kernel (about 15 minutes). Unset: twice
	// STREAM_WRITE_TIMEOUT.
	PeerTimeout time.Duration
}

// MaxFlushPadding bounds FLUSH_PADDING. The largest size reported to make a
// function URL pass chunks on is about 100 KB; 256 KiB after every write
// would spend Lambda's 2 MB/s streaming rate (past the first 6 MB) on 8
// writes a second.
const MaxFlushPadding = 256 << 10

// A setting is one row of the table. Its value is the first that is set of
// its flag (the local server's command line), its environment variable (an
// empty one is unset) and its default; with none, the setting keeps its
// zero value.
type setting struct {
	name  string // the environment variable
	flag  string // the local server's flag; "": environment only (a secret on a command line is visible to every user of the machine)
	def   string // the default, as the variable would spell it; "": unset
	usage string
	value value // what the value is, and how it is read
}

// A value is a kind of setting value: its name in the flags' help ("" for
// a boolean, whose flag stands alone) and its parser, which reads v into p
// and names the setting by label in its errors (the variable, or the flag
// if the value came from one).
type value struct {
	kind  string
	parse func(p *parsing, label, v string) error
}

// table is every setting, in the README's order.
var table = []setting{
	{"ADDR", "addr", ":8080", "listen address of the local server",
		str(func(s *Settings) *string { return &s.Server.Addr })},
	{"REDIS_URL", "redis-url", "", "Redis/Valkey URL (redis:// or rediss://); empty: in-process broker",
		str(func(s *Settings) *string { return &s.Broker.RedisURL })},
	{"REDIS_KEY_PREFIX", "redis-key-prefix", "orderstream:", "prefix of every Redis key",
		str(func(s *Settings) *string { return &s.Broker.RedisKeyPrefix })},
	{"REDIS_CLUSTER", "redis-cluster", "false", "REDIS_URL names a seed node of a Redis Cluster (more seeds as addr=host:port query parameters)",
		boolean(func(s *Settings) *bool { return &s.Broker.RedisCluster })},
	{"REDIS_WAIT_REPLICAS", "redis-wait-replicas", "0", "a publish answers 201 only once this many Redis replicas have it, 503 otherwise (0: once the master has it)",
		count(func(s *Settings) *int { return &s.Broker.RedisWaitReplicas }, 0)},
	{"HEARTBEAT_INTERVAL", "heartbeat", "15s", "keep-alive comment interval on idle streams",
		duration(func(s *Settings) *time.Duration { return &s.HTTP.HeartbeatInterval }, positive)},
	{"RETRY_INTERVAL", "retry", "3s", "reconnection delay sent to clients (retry:)",
		duration(func(s *Settings) *time.Duration { return &s.HTTP.RetryInterval }, atLeast(time.Millisecond))},
	{"ORDER_RETENTION", "retention", "24h", "how long a finished order stays readable",
		duration(func(s *Settings) *time.Duration { return &s.Broker.Options.Retention }, positive)},
	{"STREAM_WRITE_TIMEOUT", "write-timeout", "10s", "how long a write to a stuck client may block before it is cut off",
		duration(func(s *Settings) *time.Duration { return &s.HTTP.WriteTimeout }, positive)},
	{"STREAM_PEER_TIMEOUT", "peer-timeout", "", "let go a connection (a stream or not) whose client stopped answering (its network went: no FIN, no RST) after about this long (local server; 0: the kernel's own, about 15 minutes; unset: twice STREAM_WRITE_TIMEOUT)",
		value{"duration", parsePeerTimeout}},
	{"MAX_STREAM_DURATION", "max-stream", "0", "end each stream after this long; clients resume (0: never)",
		duration(func(s *Settings) *time.Duration { return &s.HTTP.MaxStreamDuration }, notNegative)},
	{"AUTH_JWT_SECRET", "", "", "HS256 shared secret (32 bytes or more); turns auth on",
		auth(func(a *httpapi.AuthConfig, v string) { a.Secret = []byte(v) })},
	{"AUTH_JWT_PUBLIC_KEY", "", "", "RS256/ES256 public key, PEM; turns auth on",
		auth(func(a *httpapi.AuthConfig, v string) { a.PublicKeyPEM = []byte(v) })},
	{"AUTH_JWT_PUBLIC_KEY_FILE", "auth-public-key-file", "", "PEM file of the RS256/ES256 public key that signs tokens; turns auth on",
		auth(func(a *httpapi.AuthConfig, v string) { a.PublicKeyFile = v })},
	{"AUTH_JWKS_URL", "auth-jwks-url", "", "an identity provider's JWKS URL (https) whose rotating keys sign tokens; turns auth on, needs AUTH_JWT_ISSUER",
		auth(func(a *httpapi.AuthConfig, v string) { a.JWKSURL = v })},
	{"AUTH_JWT_ISSUER", "auth-issuer", "", "the iss every token must carry (empty: not checked)",
		auth(func(a *httpapi.AuthConfig, v string) { a.Issuer = v })},
	{"AUTH_JWT_AUDIENCE", "auth-audience", "", "the aud every token must name (empty: not checked)",
		auth(func(a *httpapi.AuthConfig, v string) { a.Audience = v })},
	{"AUTH_COOKIE", "auth-cookie", "orderstream_token", "the cookie a subscriber token may come in", parseCookie},
	{"CORS_ALLOWED_ORIGINS", "cors-origins", "", "comma-separated origins (https://shop.example) whose pages may call the API, or * (no cookies)", parseOrigins},
	{"MAX_STREAMS", "max-streams", "0", "streams open on this instance, 503 beyond (0: no limit)",
		count(func(s *Settings) *int { return &s.HTTP.MaxStreams }, 0)},
	{"MAX_STREAMS_PER_CLIENT", "max-streams-per-client", "0", "streams one client address holds open, 429 beyond (0: no limit)",
		count(func(s *Settings) *int { return &s.HTTP.MaxStreamsPerClient }, 0)},
	{"MAX_SUBSCRIBERS_PER_ORDER", "max-subscribers-per-order", "0", "streams open on one order on this instance, 503 beyond (0: no limit)",
		count(func(s *Settings) *int { return &s.HTTP.MaxSubscribersPerOrder }, 0)},
	{"TRUSTED_PROXIES", "trusted-proxies", "", "comma-separated CIDRs of proxies whose X-Forwarded-For is believed", parseProxies},
	{"METRICS", "metrics", "false", "serve Prometheus metrics at GET /metrics",
		boolean(func(s *Settings) *bool { return &s.Metrics })},
	{"METRICS_EMF_SERVICE", "metrics-emf-service", "", "write open streams to stdout each minute as a CloudWatch embedded metric format line, dimension Service=this (needs METRICS=true)",
		str(func(s *Settings) *string { return &s.MetricsEMFService })},
	{"READ_HEADER_TIMEOUT", "read-header-timeout", "10s", "how long a client may take to send its request headers (local server)",
		duration(func(s *Settings) *time.Duration { return &s.Server.ReadHeaderTimeout }, positive)},
	{"IDLE_TIMEOUT", "idle-timeout", "2m", "how long an idle keep-alive connection stays open (local server)",
		duration(func(s *Settings) *time.Duration { return &s.Server.IdleTimeout }, positive)},
	{"FLUSH_PADDING", "flush-padding", "0", "bytes of SSE comment sent after each event and heartbeat, for front ends that hold small chunks (0: off)",
		count(func(s *Settings) *int { return &s.HTTP.FlushPadding }, MaxFlushPadding)},
	{"SHUTDOWN_DRAIN", "shutdown-drain", "10s", "at shutdown, end open streams spread over this long (0: at once)",
		duration(func(s *Settings) *time.Duration { return &s.Server.ShutdownDrain }, notNegative)},
	{"RETRY_JITTER", "retry-jitter", "", "spread each stream's retry: over [RETRY_INTERVAL, RETRY_INTERVAL+this) (unset: exactly RETRY_INTERVAL)",
		duration(func(s *Settings) *time.Duration { return &s.HTTP.RetryJitter }, notNegative)},
	{"ORDER_IDLE_EXPIRY", "idle-expiry", "720h", "forget an unfinished order this long after its last event",
		duration(func(s *Settings) *time.Duration { return &s.Broker.Options.IdleExpiry }, positive)},
	{"ADDR_FILE", "addr-file", "", "once listening, write the address listened on to this file, for scripts and tests",
		str(func(s *Settings) *string { return &s.Server.AddrFile })},
}

// parsing is the settings being read, and what the cross-checks need.
type parsing struct {
	Settings
	auth        httpapi.AuthConfig // the AUTH_* values, for one NewVerifier
	peerTimeout bool               // STREAM_PEER_TIMEOUT was set
	failed      map[string]bool    // settings whose value did not parse: no cross-check of theirs
}

// Override is a deployment's own default for one setting, in place of the
// table's: the variable (or flag) still wins over it.
type Override struct{ Name, Value string }

// FromEnv reads the settings from the environment (a deployment with no
// command line: the Lambda functions), over the table's defaults and the
// deployment's overrides. It reports every bad value at once.
func FromEnv(getenv func(string) string, overrides ...Override) (Settings, error) {
	return load(getenv, nil, nil, overrides)
}

// FromArgs reads the settings as the local server takes them: its flags
// (args[1:]; args[0] names the program) over the environment, over the
// defaults. -h prints every flag to out and returns flag.ErrHelp. It
// reports every bad value at once.
func FromArgs(args []string, getenv func(string) string, out io.Writer) (Settings, error) {
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(out)
	return load(getenv, fs, args[1:], nil)
}

func load(getenv func(string) string, fs *flag.FlagSet, args []string, overrides []Override) (Settings, error) {
	values := make([]string, len(table))
	labels := make([]string, len(table))
	defaults := make(map[string]string, len(overrides))
	for _, o := range overrides {
		if lookup(o.Name) == nil {
			return Settings{}, fmt.Errorf("config: an override for %s, which is no setting", o.Name)
		}
		defaults[o.Name] = o.Value
	}
	for i, st := range table {
		values[i], labels[i] = st.def, st.name
		if v, ok := defaults[st.name]; ok {
			values[i] = v
		}
		if v := getenv(st.name); v != "" {
			values[i] = v
		}
	}
	if fs != nil {
		for i, st := range table {
			if st.flag != "" {
				usage := st.usage + " ($" + st.name + ")"
				if k := st.value.kind; k != "" && k != "string" {
					usage += ", a `" + k + "`" // -h shows it as the flag's argument
				}
				fs.Var(&flagValue{value: &values[i], label: &labels[i], flag: st.flag, isBool: st.value.kind == ""}, st.flag, usage)
			}
		}
		if err := fs.Parse(args); err != nil {
			return Settings{}, err
		}
		if fs.NArg() > 0 {
			return Settings{}, fmt.Errorf("unexpected arguments %q: every setting is a flag or an environment variable", fs.Args())
		}
	}
	p := &parsing{failed: make(map[string]bool)}
	var errs []error
	for i, st := range table {
		if values[i] == "" && labels[i] == st.name {
			continue // unset; an empty flag (-addr "") is a value, and parsed
		}
		if err := st.value.parse(p, labels[i], values[i]); err != nil {
			errs = append(errs, err)
			p.failed[st.name] = true
		}
	}
	errs = append(errs, p.crossCheck()...)
	if err := errors.Join(errs...); err != nil {
		return Settings{}, err
	}
	return p.Settings, nil
}

// crossCheck checks what no one setting can say alone, leaving out the
// settings that did not parse (their error is said already), and builds
// the verifier once from the AUTH_* values.
func (p *parsing) crossCheck() []error {
	var errs []error
	b := p.Broker
	switch {
	case p.failed["REDIS_URL"] || p.failed["REDIS_CLUSTER"] || p.failed["REDIS_WAIT_REPLICAS"]:
	case b.RedisURL == "" && (b.RedisCluster || b.RedisWaitReplicas > 0):
		errs = append(errs, errors.New("REDIS_CLUSTER and REDIS_WAIT_REPLICAS need REDIS_URL"))
	case b.RedisURL != "":
		if err := broker.CheckRedisURL(b.RedisURL, b.RedisCluster); err != nil {
			errs = append(errs, fmt.Errorf("REDIS_URL (REDIS_CLUSTER=%t): %w", b.RedisCluster, err))
		}
		// Every key needs one: without it orders sit among the
		// database's other keys, where another application may take
		// them (the flag's empty value is a value, not the default).
		if b.RedisKeyPrefix == "" {
			errs = append(errs, errors.New("REDIS_KEY_PREFIX (-redis-key-prefix) is empty: every key of this deployment needs a prefix (the default is orderstream:)"))
		}
	}
	// The Redis broker keeps an unfinished order at least as long as a
	// finished one; say so rather than quietly stretch a shorter setting.
	if o := b.Options; !p.failed["ORDER_IDLE_EXPIRY"] && !p.failed["ORDER_RETENTION"] && o.IdleExpiry < o.Retention {
		errs = append(errs, fmt.Errorf("ORDER_IDLE_EXPIRY (%v) must be at least ORDER_RETENTION (%v)", o.IdleExpiry, o.Retention))
	}
	// The EMF line reports the metrics' gauge, and its service is a
	// CloudWatch dimension value (at most 1024 characters).
	if e := p.MetricsEMFService; e != "" && !p.failed["METRICS"] && (!p.Metrics || len(e) > 1024) {
		errs = append(errs, fmt.Errorf("METRICS_EMF_SERVICE=%q: needs METRICS=true (it reports the metrics' gauge) and at most 1024 characters (a CloudWatch dimension value)", e))
	}
	// A dead peer is found within about twice the time a live but stuck
	// one is given (STREAM_WRITE_TIMEOUT), so that a reader that is slow
	// but there is cut as slow, not taken for gone.
	if !p.peerTimeout {
		p.Server.PeerTimeout = 2 * p.HTTP.WriteTimeout
	}
	v, err := httpapi.NewVerifier(p.auth)
	if err != nil {
		errs = append(errs, fmt.Errorf("AUTH_JWT_*: %w", err))
	}
	p.HTTP.Auth = v
	return errs
}

// lookup returns the named setting, nil if there is none.
func lookup(name string) *setting {
	for i := range table {
		if table[i].name == name {
			return &table[i]
		}
	}
	return nil
}

// flagValue is a setting's flag: it keeps the text, which load parses with
// the environment's values, so that a flag and a variable are read alike
// and their errors reported together.
type flagValue struct {
	value  *string
	label  *string // becomes "-flag" once set, for the error messages
	flag   string
	isBool bool
}

func (f *flagValue) String() string {
	if f == nil || f.value == nil {
		return ""
	}
	return *f.value
}

func (f *flagValue) Set(v string) error {
	*f.value, *f.label = v, "-"+f.flag
	return nil
}

// IsBoolFlag lets a boolean flag stand alone (-metrics).
func (f *flagValue) IsBoolFlag() bool { return f.isBool }

// The parsers of the table's kinds of value.

func str(field func(*Settings) *string) value {
	return value{"string", func(p *parsing, _, v string) error {
		*field(&p.Settings) = v
		return nil
	}}
}

// auth gathers an AUTH_* value for the one verifier crossCheck builds.
func auth(set func(a *httpapi.AuthConfig, v string)) value {
	return value{"string", func(p *parsing, _, v string) error {
		set(&p.auth, v)
		return nil
	}}
}

func boolean(field func(*Settings) *bool) value {
	return value{"", func(p *parsing, label, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("%s=%q: not a boolean such as true or false", label, v)
		}
		*field(&p.Settings) = b
		return nil
	}}
}

// count reads a whole number from 0 to most (0: no bound).
func count(field func(*Settings) *int, most int) value {
	return value{"int", func(p *parsing, label, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("%s=%q: not a whole number", label, v)
		}
		if n < 0 {
			return fmt.Errorf("%s must not be negative, got %d", label, n)
		}
		if most > 0 && n > most {
			return fmt.Errorf("%s must be at most %d, got %d", label, most, n)
		}
		*field(&p.Settings) = n
		return nil
	}}
}

func duration(field func(*Settings) *time.Duration, check func(time.Duration) string) value {
	return value{"duration", func(p *parsing, label, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("%s=%q: not a Go duration such as 15s", label, v)
		}
		if problem := check(d); problem != "" {
			return fmt.Errorf("%s must %s, got %v", label, problem, d)
		}
		*field(&p.Settings) = d
		return nil
	}}
}

func positive(d time.Duration) string {
	if d <= 0 {
		return "be positive"
	}
	return ""
}

func notNegative(d time.Duration) string {
	if d < 0 {
		return "not be negative"
	}
	return ""
}

func atLeast(least time.Duration) func(time.Duration) string {
	return func(d time.Duration) string {
		if d < least {
			return "be at least " + least.String()
		}
		return ""
	}
}

// parsePeerTimeout reads STREAM_PEER_TIMEOUT, whose default crossCheck
// derives from STREAM_WRITE_TIMEOUT when it is unset.
func parsePeerTimeout(p *parsing, label, v string) error {
	d, err := time.ParseDuration(v)
	if err != nil {
		return fmt.Errorf("%s=%q: not a Go duration such as 20s", label, v)
	}
	if d < 0 {
		return fmt.Errorf("%s must not be negative, got %v", label, d)
	}
	if d > 0 && d < time.Second {
		// The kernel's keep-alive probes count in whole seconds.
		return fmt.Errorf("%s must be 0 or at least 1s, got %v", label, d)
	}
	p.Server.PeerTimeout, p.peerTimeout = d, true
	return nil
}

var parseCookie = value{"string", func(p *parsing, label, v string) error {
	if (&http.Cookie{Name: v, Value: "x"}).Valid() != nil {
		return fmt.Errorf("%s=%q is not a cookie name", label, v)
	}
	p.auth.Cookie = v
	return nil
}}

var parseOrigins = value{"string", func(p *parsing, label, v string) error {
	origins, err := httpapi.ParseOrigins(v)
	if err != nil {
		return fmt.Errorf("%s: %w", label, err)
	}
	p.HTTP.CORSAllowedOrigins = origins
	return nil
}}

var parseProxies = value{"string", func(p *parsing, label, v string) error {
	proxies, err := httpapi.ParseTrustedProxies(v)
	if err != nil {
		return fmt.Errorf("%s=%q: %w (want CIDRs such as 10.0.0.0/8, comma-separated)", label, v, err)
	}
	p.HTTP.TrustedProxies = proxies
	return nil
}}

// Names are every setting's variable, in the table's order.
func Names() []string {
	names := make([]string, len(table))
	for i, st := range table {
		names[i] = st.name
	}
	return names
}
