package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/orderstream/orderstream/functions/internal/awsfake"
	"github.com/orderstream/orderstream/functions/internal/lambdatest"
)

// TestSecretInitError: the api function reads the same references as the
// stream function; one it may not read stops it at init with the reason
// posted to the Runtime API.
func TestSecretInitError(t *testing.T) {
	fake := awsfake.Start(t)
	const ref = "/orderstream/redis-url"
	fake.Deny(ref)
	rt := lambdatest.NewRuntime(t)
	proc := lambdatest.Start(t, bootstrap, lambdatest.LambdaEnv(rt.Addr(), append(fake.Env(), "REDIS_URL_REF="+ref)...))
	ie, ok := rt.WaitInitError(30 * time.Second)
	if !ok {
		t.Fatalf("no POST /runtime/init/error; stderr %s", proc.Stderr())
	}
	var body struct{ ErrorMessage, ErrorType string }
	if err := json.Unmarshal(ie.Body, &body); err != nil {
		t.Fatalf("init error body %q: %v", ie.Body, err)
	}
	for _, want := range []string{"REDIS_URL_REF=" + ref, "RedisUrlSecret", "access denied"} {
		if !strings.Contains(body.ErrorMessage, want) {
			t.Errorf("init error lacks %q: %s", want, body.ErrorMessage)
		}
	}
	if code := proc.Wait(30 * time.Second); code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	if got := fake.Requests("GetParameter"); len(got) != 1 || got[0] != ref {
		t.Errorf("GetParameter calls %v", got)
	}
}
