package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
)

// TestBehindCloudFront sends the built bootstrap what its function URL
// receives behind CloudFront with origin access control and auth on: every
// request's Authorization is CloudFront's SigV4 signature, and each POST
// carries x-amz-content-sha256. The token in the cookie (function URL
// events carry cookies apart from the headers) or in
// X-Orderstream-Authorization is what counts; without either, 401.
func TestBehindCloudFront(t *testing.T) {
	secret := strings.Repeat("k", 40)
	f := startFunction(t, "AUTH_JWT_SECRET="+secret)
	sign := func(c jwt.MapClaims) string {
		c["exp"] = time.Now().Add(time.Hour).Unix()
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(secret))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	order := uuid.NewString()
	publisher := sign(jwt.MapClaims{"scope": "orders:publish"})
	reader := sign(jwt.MapClaims{"orders": []string{order}})
	const sigv4 = "AWS4-HMAC-SHA256 Credential=ASIAEXAMPLEEXAMPLE/20261124/eu-west-1/lambda/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=0123456789abcdef"
	body := `{"status":"Created"}`
	sum := sha256.Sum256([]byte(body))

	call := func(method, path string, headers map[string]string, cookies []string, body string) int {
		t.Helper()
		h := map[string]string{"authorization": sigv4, "x-amz-date": "20261124T140000Z", "via": "2.0 abc.cloudfront.net (CloudFront)"}
		for k, v := range headers {
			h[k] = v
		}
		var ev events.LambdaFunctionURLRequest
		if err := json.Unmarshal(urlEvent(method, path, "", h, body), &ev); err != nil {
			t.Fatal(err)
		}
		ev.Cookies = cookies
		raw, _ := json.Marshal(ev)
		p, _ := f.call(t, raw)
		return p.StatusCode
	}
	if got := call("POST", "/orders/"+order+"/events", map[string]string{
		"content-type": "application/json", "x-amz-content-sha256": hex.EncodeToString(sum[:]),
		"x-orderstream-authorization": "Bearer " + publisher,
	}, nil, body); got != 201 {
		t.Errorf("publish with the signature and X-Orderstream-Authorization: %d, want 201", got)
	}
	if got := call("GET", "/orders/"+order, nil, []string{"orderstream_token=" + reader}, ""); got != 200 {
		t.Errorf("get with the signature and the cookie: %d, want 200", got)
	}
	if got := call("GET", "/orders/"+order, nil, nil, ""); got != 401 {
		t.Errorf("get with the signature alone: %d, want 401", got)
	}
	if got := call("POST", "/orders/"+order+"/events", map[string]string{"content-type": "application/json"}, []string{"orderstream_token=" + publisher}, body); got != 401 {
		t.Errorf("publish with the signature and a cookie: %d, want 401 (publishers never use cookies)", got)
	}
}
