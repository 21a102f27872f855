package secrets

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestFromEnvNoAnswer: a store that never answers (a VPC without a route to
// it) ends init within the timeout, with the reason and what to do.
func TestFromEnvNoAnswer(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	for k, v := range map[string]string{
		"AWS_ENDPOINT_URL_SSM": srv.URL, "AWS_ACCESS_KEY_ID": "AKIDFAKE", "AWS_SECRET_ACCESS_KEY": "fake",
		"AWS_REGION": "eu-west-1", "AWS_EC2_METADATA_DISABLED": "true",
	} {
		t.Setenv(k, v)
	}
	start := time.Now()
	_, err := fromEnv(context.Background(), func(k string) string {
		return map[string]string{"REDIS_URL_REF": "/orderstream/redis-url"}[k]
	}, 500*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "REDIS_URL_REF") || !strings.Contains(err.Error(), "SecretsEndpointsVpcId") {
		t.Errorf("error %v, want one naming the reference and the endpoints", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("took %v with a 500ms timeout", took)
	}
}
