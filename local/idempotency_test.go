package main

import (
	"net/http"
	"testing"

	"github.com/orderstream/orderstream/shared/broker/redistest"
)

// TestIdempotentPublishThroughRun retries publishes with their
// Idempotency-Key through the whole server, on both brokers: each retry
// answers the first update byte for byte and the stream carries each event
// once.
func TestIdempotentPublishThroughRun(t *testing.T) {
	for name, env := range map[string]func(t *testing.T) map[string]string{
		"memory": func(*testing.T) map[string]string { return map[string]string{} },
		"redis":  func(t *testing.T) map[string]string { return map[string]string{"REDIS_URL": redistest.Start(t).URL()} },
	} {
		t.Run(name, func(t *testing.T) {
			srv := startServer(t, env(t))
			id := newID()
			events := srv.URL + "/orders/" + id + "/events"
			st := openStream(t, srv.URL+"/orders/"+id+"/stream", nil)
			defer st.close()
			keyed := func(key string) http.Header {
				return http.Header{"Content-Type": {"application/json"}, "Idempotency-Key": {key}}
			}
			post := func(status, key string, want int) string {
				t.Helper()
				res := do(t, http.MethodPost, events, keyed(key), `{"status":"`+status+`"}`)
				body := bodyOf(res)
				if res.StatusCode != want {
					t.Fatalf("%s with key %q: %d %s, want %d", status, key, res.StatusCode, body, want)
				}
				return body
			}
			created := post("Created", "c-1", http.StatusCreated)
			if again := post("Created", "c-1", http.StatusCreated); again != created {
				t.Fatalf("retry answered %s, want %s", again, created)
			}
			post("Delivered", "d-1", http.StatusCreated)
			if again := post("Created", "c-1", http.StatusCreated); again != created {
				t.Fatalf("retry after the order finished answered %s, want %s", again, created)
			}
			post("Packed", "c-1", http.StatusUnprocessableEntity)
			post("Created", "", http.StatusBadRequest)
			if got := statusesOf([]event{st.next(t), st.next(t)}); got[0] != "Created" || got[1] != "Delivered" {
				t.Fatalf("stream carried %v", got)
			}
			st.expectEnd(t)
		})
	}
}
