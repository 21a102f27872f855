// Package secrets gives the Lambda functions their secret settings by
// reference: the environment names where a secret lives (a Secrets Manager
// secret ARN, or an SSM SecureString parameter), never the secret, so that
// lambda:GetFunctionConfiguration shows no password. Each reference is read
// once, at init, and put in place of the plain setting before
// config.FromEnv sees it; the plain settings (REDIS_URL, AUTH_JWT_*) still
// work, as they do locally. It is edge wiring: nothing in shared/ knows that
// a setting came from AWS.
package secrets

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/orderstream/orderstream/shared/httpapi"
)

// A Setting is a plain setting that may instead be given by reference.
type Setting struct {
	Env       string             // the plain variable: REDIS_URL
	RefEnv    string             // the variable naming where its value lives: REDIS_URL_REF
	Parameter string             // the template parameter that fills RefEnv, for messages
	Check     func(string) error // the value's shape, so a malformed secret is named here
}

// Settings are the settings that hold secrets, with the template parameters
// that name them (template.yaml).
var Settings = []Setting{
	{Env: "REDIS_URL", RefEnv: "REDIS_URL_REF", Parameter: "RedisUrlSecret", Check: checkRedisURL},
	{Env: "AUTH_JWT_SECRET", RefEnv: "AUTH_JWT_SECRET_REF", Parameter: "AuthJwtSecretRef", Check: checkJWTSecret},
	{Env: "AUTH_JWT_PUBLIC_KEY", RefEnv: "AUTH_JWT_PUBLIC_KEY_REF", Parameter: "AuthJwtPublicKeyRef", Check: checkPublicKey},
}

// A Store reads the value a reference names.
type Store interface {
	Read(ctx context.Context, ref string) (string, error)
}

// Resolve returns getenv with every setting whose RefEnv is set answered by
// the value its reference names, read from the store that open returns.
// open is called only when some reference is set, so a function configured
// with plain values makes no AWS call and needs no AWS permission. Every
// error names the variable, the template parameter and the reference.
func Resolve(ctx context.Context, getenv func(string) string, settings []Setting, open func(context.Context) (Store, error)) (func(string) string, error) {
	var wanted []Setting
	var errs []error
	for _, s := range settings {
		ref := getenv(s.RefEnv)
		if ref == "" {
			continue
		}
		if getenv(s.Env) != "" {
			// Two sources are one too many: say so rather than pick one.
			errs = append(errs, fmt.Errorf("%s and %s are both set: set one (template parameter %s names the secret)", s.Env, s.RefEnv, s.Parameter))
			continue
		}
		wanted = append(wanted, s)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if len(wanted) == 0 {
		return getenv, nil
	}
	store, err := open(ctx)
	if err != nil {
		return nil, fmt.Errorf("read secrets (%s): %w", refNames(wanted), err)
	}
	values := make(map[string]string, len(wanted))
	for _, s := range wanted {
		ref := getenv(s.RefEnv)
		v, err := store.Read(ctx, ref)
		if err == nil && v == "" {
			err = errors.New("the secret is empty")
		}
		if err == nil && s.Check != nil {
			err = s.Check(v)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s=%s (template parameter %s): %w", s.RefEnv, ref, s.Parameter, err))
			continue
		}
		values[s.Env] = v
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return func(name string) string {
		if v, ok := values[name]; ok {
			return v
		}
		return getenv(name)
	}, nil
}

func refNames(settings []Setting) string {
	names := make([]string, len(settings))
	for i, s := range settings {
		names[i] = s.RefEnv
	}
	return strings.Join(names, ", ")
}

// checkRedisURL catches what a secret typed by hand gets wrong; the broker
// checks the rest when it connects. The value itself is never in a message.
func checkRedisURL(v string) error {
	if strings.ContainsAny(v, " \t\r\n") {
		return errors.New("malformed: the Redis URL contains whitespace (a trailing newline?)")
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
		return errors.New("malformed: not a redis:// or rediss:// URL")
	}
	return nil
}

// checkJWTSecret and checkPublicKey apply the core's own rules (length of
// an HS256 secret, a parseable PEM key); their messages hold no key bytes.
func checkJWTSecret(v string) error {
	if err := (httpapi.AuthConfig{Secret: []byte(v)}).Validate(); err != nil {
		return fmt.Errorf("malformed: %w", err)
	}
	return nil
}

func checkPublicKey(v string) error {
	if err := (httpapi.AuthConfig{PublicKeyPEM: []byte(v)}).Validate(); err != nil {
		return fmt.Errorf("malformed: %w", err)
	}
	return nil
}
