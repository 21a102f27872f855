package secrets_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/orderstream/orderstream/functions/internal/awsfake"
	"github.com/orderstream/orderstream/functions/internal/secrets"
)

const (
	redisARN  = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:orderstream/redis-AbCdEf"
	jwtParam  = "/orderstream/jwt-secret"
	keyARN    = "arn:aws:ssm:eu-west-1:123456789012:parameter/orderstream/jwt-public-key"
	redisURL  = "rediss://default:p4ssw0rd-never-logged@cache.example:6379/0"
	jwtSecret = "0123456789abcdef0123456789abcdef-secret"
)

func publicKeyPEM(t *testing.T) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func envOf(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

// TestResolveAgainstFakeAWS runs the real SDK against a fake of the Secrets
// Manager and SSM APIs.
func TestResolveAgainstFakeAWS(t *testing.T) {
	fake := awsfake.Start(t)
	for _, kv := range fake.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	pemKey := publicKeyPEM(t)
	fake.PutSecret(redisARN, redisURL)
	fake.PutParameter(jwtParam, jwtSecret)
	fake.PutParameter(keyARN, pemKey)
	fake.PutSecret(redisARN+"-newline", redisURL+"\n")
	fake.PutSecret(redisARN+"-http", "https://cache.example")
	fake.PutSecret(redisARN+"-empty", "")
	fake.PutBinarySecret(redisARN + "-binary")
	fake.PutParameter("/orderstream/short", "too-short")
	fake.PutParameter("/orderstream/not-pem", "-----BEGIN PUBLIC KEY-----\nbroken\n")
	fake.Deny(redisARN + "-denied")
	fake.Deny("/orderstream/denied")

	tests := []struct {
		name    string
		env     map[string]string
		want    map[string]string // resolved settings
		wantErr []string          // substrings of the error
	}{
		{
			name: "secrets manager and ssm by name and by arn",
			env:  map[string]string{"REDIS_URL_REF": redisARN, "AUTH_JWT_SECRET_REF": jwtParam, "HEARTBEAT_INTERVAL": "1s"},
			want: map[string]string{"REDIS_URL": redisURL, "AUTH_JWT_SECRET": jwtSecret, "HEARTBEAT_INTERVAL": "1s"},
		},
		{
			name: "public key by ssm arn",
			env:  map[string]string{"AUTH_JWT_PUBLIC_KEY_REF": keyARN},
			want: map[string]string{"AUTH_JWT_PUBLIC_KEY": pemKey},
		},
		{
			name:    "missing secret",
			env:     map[string]string{"REDIS_URL_REF": redisARN + "-gone"},
			wantErr: []string{"REDIS_URL_REF=" + redisARN + "-gone", "RedisUrlSecret", "not found", "ResourceNotFoundException"},
		},
		{
			name:    "missing parameter",
			env:     map[string]string{"AUTH_JWT_SECRET_REF": "/orderstream/gone"},
			wantErr: []string{"AUTH_JWT_SECRET_REF=/orderstream/gone", "AuthJwtSecretRef", "not found", "ParameterNotFound"},
		},
		{
			name:    "denied secret",
			env:     map[string]string{"REDIS_URL_REF": redisARN + "-denied"},
			wantErr: []string{"REDIS_URL_REF", "access denied", "AccessDeniedException"},
		},
		{
			name:    "denied parameter",
			env:     map[string]string{"AUTH_JWT_PUBLIC_KEY_REF": "/orderstream/denied"},
			wantErr: []string{"AUTH_JWT_PUBLIC_KEY_REF", "AuthJwtPublicKeyRef", "access denied"},
		},
		{
			name:    "redis url with a trailing newline",
			env:     map[string]string{"REDIS_URL_REF": redisARN + "-newline"},
			wantErr: []string{"REDIS_URL_REF", "malformed", "trailing newline"},
		},
		{
			name:    "not a redis url",
			env:     map[string]string{"REDIS_URL_REF": redisARN + "-http"},
			wantErr: []string{"REDIS_URL_REF", "malformed", "rediss://"},
		},
		{
			name:    "empty secret",
			env:     map[string]string{"REDIS_URL_REF": redisARN + "-empty"},
			wantErr: []string{"REDIS_URL_REF", "empty"},
		},
		{
			name:    "binary secret",
			env:     map[string]string{"REDIS_URL_REF": redisARN + "-binary"},
			wantErr: []string{"REDIS_URL_REF", "binary"},
		},
		{
			name:    "short hs256 secret",
			env:     map[string]string{"AUTH_JWT_SECRET_REF": "/orderstream/short"},
			wantErr: []string{"AUTH_JWT_SECRET_REF", "malformed", "9 bytes"},
		},
		{
			name:    "broken pem",
			env:     map[string]string{"AUTH_JWT_PUBLIC_KEY_REF": "/orderstream/not-pem"},
			wantErr: []string{"AUTH_JWT_PUBLIC_KEY_REF", "malformed"},
		},
		{
			name:    "not a reference",
			env:     map[string]string{"REDIS_URL_REF": "orderstream-redis"},
			wantErr: []string{"REDIS_URL_REF=orderstream-redis", "malformed reference"},
		},
		{
			name:    "plain and reference both set",
			env:     map[string]string{"REDIS_URL_REF": redisARN, "REDIS_URL": "redis://localhost:6379"},
			wantErr: []string{"REDIS_URL and REDIS_URL_REF are both set"},
		},
		{
			name:    "every failure is reported, not only the first",
			env:     map[string]string{"REDIS_URL_REF": redisARN + "-gone", "AUTH_JWT_SECRET_REF": "/orderstream/denied"},
			wantErr: []string{"REDIS_URL_REF", "AUTH_JWT_SECRET_REF"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			getenv, err := secrets.Resolve(ctx, envOf(tt.env), secrets.Settings, secrets.OpenAWS)
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("no error; REDIS_URL=%q", getenv("REDIS_URL"))
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error lacks %q: %v", w, err)
					}
				}
				for _, secret := range []string{"p4ssw0rd", jwtSecret, "too-short", "https://cache.example"} {
					if strings.Contains(err.Error(), secret) {
						t.Errorf("error holds the secret %q: %v", secret, err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tt.want {
				if got := getenv(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
		})
	}
	// Read once at init: one request per reference resolved above (and the
	// failing ones), never one per getenv.
	n := 0
	for _, ref := range fake.Requests("GetSecretValue") {
		if ref == redisARN {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%s read %d times by the successful case, want 1", redisARN, n)
	}
}

// TestResolveWithoutReferences: a function configured with plain values (as
// locally) opens no AWS client at all.
func TestResolveWithoutReferences(t *testing.T) {
	open := func(context.Context) (secrets.Store, error) {
		t.Error("opened the store with no reference set")
		return nil, errors.New("unexpected")
	}
	env := map[string]string{"REDIS_URL": "redis://localhost:6379", "AUTH_JWT_SECRET": jwtSecret}
	getenv, err := secrets.Resolve(context.Background(), envOf(env), secrets.Settings, open)
	if err != nil {
		t.Fatal(err)
	}
	if getenv("REDIS_URL") != env["REDIS_URL"] || getenv("AUTH_JWT_SECRET") != jwtSecret {
		t.Errorf("plain settings changed: %q %q", getenv("REDIS_URL"), getenv("AUTH_JWT_SECRET"))
	}
}

// TestResolveOpenFails: a store that cannot be opened names the references
// that needed it.
func TestResolveOpenFails(t *testing.T) {
	open := func(context.Context) (secrets.Store, error) { return nil, errors.New("no credentials") }
	_, err := secrets.Resolve(context.Background(), envOf(map[string]string{"AUTH_JWT_SECRET_REF": jwtParam}), secrets.Settings, open)
	if err == nil || !strings.Contains(err.Error(), "AUTH_JWT_SECRET_REF") || !strings.Contains(err.Error(), "no credentials") {
		t.Errorf("error %v", err)
	}
}
