package httpapi

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/orderstream/orderstream/shared/broker"
	"github.com/orderstream/orderstream/shared/broker/brokertest"
)

// postEvent publishes status to the order with the given Idempotency-Key
// headers (none: no header) and returns the answer's status, content type and body.
func postEvent(t *testing.T, url, id, status string, keys ...string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequest("POST", url+"/orders/"+id+"/events", strings.NewReader(`{"status":"`+status+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for _, k := range keys {
		req.Header.Add("Idempotency-Key", k)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res.StatusCode, res.Header.Get("Content-Type"), string(body)
}

func TestIdempotencyKey(t *testing.T) {
	b := broker.NewMemory(brokertest.Options())
	defer b.Close()
	srv, _ := newTestServer(t, b, Config{})

	type step struct {
		status string
		keys   []string
		want   int
		// same names an earlier step whose body this one must repeat
		// byte for byte; -1 for none.
		same int
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"retry answers the first update", []step{
			{"Created", []string{"k1"}, 201, -1},
			{"Created", []string{"k1"}, 201, 0},
		}},
		{"retry after the order moved on", []step{
			{"Created", []string{"a"}, 201, -1},
			{"Packed", []string{"b"}, 201, -1},
			{"Created", []string{"a"}, 201, 0},
			{"Packed", nil, 409, -1}, // no key: a repeated status is refused as before
			{"Packed", []string{"b"}, 201, 1},
		}},
		{"retry after the order finished", []step{
			{"Created", nil, 201, -1},
			{"Delivered", []string{"end"}, 201, -1},
			{"Delivered", []string{"end"}, 201, 1},
			{"Delivered", []string{"other"}, 409, -1},
		}},
		{"same key, other status", []step{
			{"Created", []string{"k"}, 201, -1},
			{"Packed", []string{"k"}, 422, -1},
			{"Packed", []string{"k2"}, 201, -1},
		}},
		{"a refused request stores no key", []step{
			{"Shipped", nil, 201, -1},
			{"Cancelled", []string{"c"}, 409, -1},
			{"Delivered", []string{"c"}, 201, -1},
		}},
		{"longest key, every visible character", []step{
			{"Created", []string{strings.Repeat("x", 255)}, 201, -1},
			{"Packed", []string{"!~\"#$%&'()*+,-./09:;<=>?@AZ[\\]^_`az{|}"}, 201, -1},
			{"Packed", []string{"!~\"#$%&'()*+,-./09:;<=>?@AZ[\\]^_`az{|}"}, 201, 1},
		}},
		{"malformed keys", []step{
			{"Created", []string{""}, 400, -1},
			{"Created", []string{strings.Repeat("x", 256)}, 400, -1},
			{"Created", []string{"with space"}, 400, -1},
			{"Created", []string{"tab\there"}, 400, -1},
			{"Created", []string{"é"}, 400, -1},
			{"Created", []string{"a", "b"}, 400, -1},
			{"Created", []string{"ok"}, 201, -1}, // nothing was published before
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := uuid.NewString()
			bodies := make([]string, len(tt.steps))
			for i, s := range tt.steps {
				code, ctype, body := postEvent(t, srv.URL, id, s.status, s.keys...)
				bodies[i] = body
				if code != s.want {
					t.Fatalf("step %d (%s, keys %q): %d %s, want %d", i, s.status, s.keys, code, body, s.want)
				}
				if code >= 400 {
					var p problem
					if ctype != "application/problem+json" || json.Unmarshal([]byte(body), &p) != nil || p.Status != code {
						t.Fatalf("step %d: %s %q is no problem+json", i, ctype, body)
					}
					if (code == 400 || code == 422) && !strings.Contains(p.Detail, "Idempotency-Key") {
						t.Errorf("step %d: detail %q does not name the header", i, p.Detail)
					}
				}
				if s.same >= 0 && body != bodies[s.same] {
					t.Fatalf("step %d: body %s, want the body of step %d: %s", i, body, s.same, bodies[s.same])
				}
			}
		})
	}
}
