// Package awsfake is a fake of the two AWS APIs the functions read secrets
// from, speaking their wire protocol (AWS JSON 1.1: POST / with an
// X-Amz-Target header naming the operation, JSON in and out, errors as
// {"__type": code, "message": text} with a 4xx status), so that the real
// AWS SDK for Go, pointed at it with AWS_ENDPOINT_URL_SECRETS_MANAGER and
// AWS_ENDPOINT_URL_SSM, is what the tests exercise.
package awsfake

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// Server fakes secretsmanager.GetSecretValue and AmazonSSM.GetParameter.
// Set its maps before the code under test reads them.
type Server struct {
	URL string

	mu       sync.Mutex
	secrets  map[string]string   // secret ARN: SecretString
	binary   map[string]bool     // secret ARN: holds SecretBinary only
	params   map[string]string   // parameter name: decrypted value
	denied   map[string]bool     // reference: AccessDeniedException
	requests map[string][]string // operation: the references asked for
}

// Start starts a fake on a free loopback port; it stops when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{
		secrets:  map[string]string{},
		binary:   map[string]bool{},
		params:   map[string]string{},
		denied:   map[string]bool{},
		requests: map[string][]string{},
	}
	srv := httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

// Env is the environment that points the AWS SDK at the fake, with static
// credentials (it checks that requests are signed, not with what).
func (s *Server) Env() []string {
	return []string{
		"AWS_ENDPOINT_URL_SECRETS_MANAGER=" + s.URL,
		"AWS_ENDPOINT_URL_SSM=" + s.URL,
		"AWS_ACCESS_KEY_ID=AKIDFAKEFAKEFAKE",
		"AWS_SECRET_ACCESS_KEY=fake-secret-access-key",
		"AWS_SESSION_TOKEN=fake-session-token",
		"AWS_REGION=eu-west-1",
		"AWS_EC2_METADATA_DISABLED=true",
	}
}

// PutSecret stores a Secrets Manager secret's string under its ARN.
func (s *Server) PutSecret(arn, value string) { s.set(s.secrets, arn, value) }

// PutBinarySecret stores a secret that has no SecretString.
func (s *Server) PutBinarySecret(arn string) { s.mu.Lock(); s.binary[arn] = true; s.mu.Unlock() }

// PutParameter stores an SSM SecureString parameter.
func (s *Server) PutParameter(name, value string) { s.set(s.params, name, value) }

// Deny makes every read of ref fail with AccessDeniedException.
func (s *Server) Deny(ref string) { s.mu.Lock(); s.denied[ref] = true; s.mu.Unlock() }

// Requests returns the references read so far with an operation
// ("GetSecretValue" or "GetParameter").
func (s *Server) Requests(op string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.requests[op]...)
}

func (s *Server) set(m map[string]string, k, v string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m[k] = v
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 ") {
		fail(w, http.StatusForbidden, "MissingAuthenticationTokenException", "unsigned request")
		return
	}
	var in struct {
		SecretID       string `json:"SecretId"`
		Name           string `json:"Name"`
		WithDecryption bool   `json:"WithDecryption"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		fail(w, http.StatusBadRequest, "SerializationException", err.Error())
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch target := r.Header.Get("X-Amz-Target"); target {
	case "secretsmanager.GetSecretValue":
		s.requests["GetSecretValue"] = append(s.requests["GetSecretValue"], in.SecretID)
		switch v, ok := s.secrets[in.SecretID]; {
		case s.denied[in.SecretID]:
			fail(w, http.StatusBadRequest, "AccessDeniedException", "User: arn:aws:sts::123456789012:assumed-role/fake is not authorized to perform: secretsmanager:GetSecretValue on resource: "+in.SecretID)
		case s.binary[in.SecretID]:
			reply(w, map[string]any{"ARN": in.SecretID, "Name": in.SecretID, "SecretBinary": "AAEC", "VersionId": "v1"})
		case !ok:
			fail(w, http.StatusBadRequest, "ResourceNotFoundException", "Secrets Manager can't find the specified secret.")
		default:
			reply(w, map[string]any{"ARN": in.SecretID, "Name": in.SecretID, "SecretString": v, "VersionId": "v1"})
		}
	case "AmazonSSM.GetParameter":
		s.requests["GetParameter"] = append(s.requests["GetParameter"], in.Name)
		switch v, ok := s.params[in.Name]; {
		case s.denied[in.Name]:
			fail(w, http.StatusBadRequest, "AccessDeniedException", "User: arn:aws:sts::123456789012:assumed-role/fake is not authorized to perform: ssm:GetParameter on resource: "+in.Name)
		case !ok:
			fail(w, http.StatusBadRequest, "ParameterNotFound", "")
		case !in.WithDecryption:
			// A SecureString read without decryption is ciphertext: the
			// caller must ask for WithDecryption.
			reply(w, map[string]any{"Parameter": map[string]any{"Name": in.Name, "Type": "SecureString", "Value": "AQICAHciphertext", "Version": 1}})
		default:
			reply(w, map[string]any{"Parameter": map[string]any{"Name": in.Name, "Type": "SecureString", "Value": v, "Version": 1}})
		}
	default:
		fail(w, http.StatusBadRequest, "UnknownOperationException", target)
	}
}

func reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	_ = json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"__type": code, "message": msg})
}
