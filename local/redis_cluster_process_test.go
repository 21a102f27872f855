package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/orderstream/orderstream/shared/broker/redistest"
)

// TestRedisClusterInstancesShareOrders runs two server processes on one
// Redis Cluster (REDIS_CLUSTER=true): orders all over the key space are
// watched on one and published on the other, then resumed on either with
// the last event id; an Idempotency-Key retried on the other instance
// answers the first update.
func TestRedisClusterInstancesShareOrders(t *testing.T) {
	cluster := redistest.StartCluster(t, redistest.Password("pw"))
	env := map[string]string{"REDIS_URL": cluster.URL(), "REDIS_CLUSTER": "true", "HEARTBEAT_INTERVAL": "200ms"}
	a, b := startProcess(t, env), startProcess(t, env)
	for i := range 9 { // enough orders to land on every master
		id := newID()
		watch, drive := a, b
		if i%2 == 1 {
			watch, drive = b, a
		}
		st := openStream(t, watch.URL+"/orders/"+id+"/stream", nil)
		var got []event
		for _, s := range happyPath[:3] {
			publish(t, drive.URL, id, s)
			got = append(got, st.next(t))
		}
		st.close()
		if want := happyPath[:3]; strings.Join(statusesOf(got), ",") != strings.Join(want, ",") {
			t.Fatalf("order %d: watched %v, want %v", i, statusesOf(got), want)
		}

		// A retry on the other instance answers the first update.
		keyed := http.Header{"Content-Type": {"application/json"}, "Idempotency-Key": {"ship-" + id}}
		first := do(t, http.MethodPost, drive.URL+"/orders/"+id+"/events", keyed, `{"status":"Shipped"}`)
		retry := do(t, http.MethodPost, watch.URL+"/orders/"+id+"/events", keyed, `{"status":"Shipped"}`)
		if f, r := bodyOf(first), bodyOf(retry); first.StatusCode != http.StatusCreated || retry.StatusCode != http.StatusCreated || f != r {
			t.Fatalf("order %d: publish %d %s, retry elsewhere %d %s", i, first.StatusCode, f, retry.StatusCode, r)
		}

		// Resume on each instance from the last id seen: exactly the rest.
		for _, p := range []*process{a, b} {
			resumed := openStream(t, p.URL+"/orders/"+id+"/stream", http.Header{"Last-Event-ID": {got[len(got)-1].ID}})
			if ev := resumed.next(t); ev.ID == got[len(got)-1].ID || ev.Update.Status != "Shipped" {
				t.Fatalf("order %d: resumed with %s %s, want the Shipped event after it", i, ev.ID, ev.Update.Status)
			}
			resumed.close()
		}
	}
	for _, p := range []*process{a, b} {
		if res := get(t, p.URL+"/healthz"); res.StatusCode != http.StatusOK {
			t.Fatalf("healthz: %d %s", res.StatusCode, bodyOf(res))
		}
	}
}
