package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/orderstream/orderstream/functions/internal/awsfake"
	"github.com/orderstream/orderstream/shared/broker/redistest"
)

const (
	testRedisSecret = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:orderstream/redis-AbCdEf"
	testJWTParam    = "/orderstream/jwt-secret"
)

// TestSecretsByReference runs the built bootstrap as deployed with secrets by
// reference: its environment names a Secrets Manager secret and an SSM
// parameter, the real AWS SDK reads them from a fake of both APIs at init,
// and the function uses what they hold: Redis with its password, and auth on.
func TestSecretsByReference(t *testing.T) {
	redis := redistest.Start(t, redistest.Password("s3cret-by-ref"))
	fake := awsfake.Start(t)
	fake.PutSecret(testRedisSecret, redis.URL())
	fake.PutParameter(testJWTParam, strings.Repeat("k", 40))

	f := startFunction(t, append(fake.Env(),
		"REDIS_URL_REF="+testRedisSecret,
		"AUTH_JWT_SECRET_REF="+testJWTParam,
		"REDIS_KEY_PREFIX=secretstest:")...)

	p, body := f.call(t, urlEvent("POST", "/orders/"+uuid.NewString()+"/events", "", map[string]string{"content-type": "application/json"}, `{"status":"Created"}`))
	if p.StatusCode != 401 {
		t.Errorf("publish without a token: %d %s, want 401 (auth on from the SSM parameter)", p.StatusCode, body)
	}
	p, body = f.call(t, urlEvent("GET", "/healthz", "", nil, ""))
	if p.StatusCode != 200 {
		t.Errorf("healthz: %d %s", p.StatusCode, body)
	}
	if !strings.Contains(f.proc.Stdout(), `"broker":"redis"`) {
		t.Errorf("not started with the Redis broker from the secret: %s", f.proc.Stdout())
	}
	if got := fake.Requests("GetSecretValue"); len(got) != 1 || got[0] != testRedisSecret {
		t.Errorf("GetSecretValue calls %v, want one for %s", got, testRedisSecret)
	}
	for _, out := range []string{f.proc.Stdout(), f.proc.Stderr()} {
		if strings.Contains(out, "s3cret-by-ref") {
			t.Errorf("the Redis password reached the logs: %s", out)
		}
	}
}

// TestSecretInitErrors: a secret that is missing, denied or malformed stops
// the instance at init with an error posted to the Runtime API that names
// the variable and the template parameter, and exit status 1.
func TestSecretInitErrors(t *testing.T) {
	fake := awsfake.Start(t)
	fake.Deny(testRedisSecret)
	fake.PutParameter("/orderstream/bad-url", "redis://cache.example:6379 \n")
	tests := []struct {
		name string
		env  string
		want []string
	}{
		{"missing", "AUTH_JWT_SECRET_REF=/orderstream/gone", []string{"AUTH_JWT_SECRET_REF=/orderstream/gone", "AuthJwtSecretRef", "not found"}},
		{"denied", "REDIS_URL_REF=" + testRedisSecret, []string{"REDIS_URL_REF=" + testRedisSecret, "RedisUrlSecret", "access denied"}},
		{"malformed", "REDIS_URL_REF=/orderstream/bad-url", []string{"REDIS_URL_REF=/orderstream/bad-url", "RedisUrlSecret", "malformed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := startFunction(t, append(fake.Env(), tt.env)...)
			ie, ok := f.rt.WaitInitError(wait)
			if !ok {
				t.Fatalf("no POST /runtime/init/error; stderr %s", f.proc.Stderr())
			}
			var body struct{ ErrorMessage, ErrorType string }
			if err := json.Unmarshal(ie.Body, &body); err != nil {
				t.Fatalf("init error body %q: %v", ie.Body, err)
			}
			if body.ErrorType != "Runtime.InitError" {
				t.Errorf("error type %q", body.ErrorType)
			}
			for _, w := range tt.want {
				if !strings.Contains(body.ErrorMessage, w) {
					t.Errorf("init error lacks %q: %s", w, body.ErrorMessage)
				}
			}
			if code := f.proc.Wait(wait); code != 1 {
				t.Errorf("exit code %d, want 1", code)
			}
		})
	}
}
