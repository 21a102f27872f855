//go:build clusterfaults

package main

// A Redis Cluster master killed under two server processes, too slow for
// every `make test`: `make test-cluster-faults` runs it.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/orderstream/orderstream/shared/broker/redistest"
)

// TestRedisClusterFailoverThroughHTTP SIGKILLs a master while streams are
// open on one instance and publishers (with Idempotency-Key, retrying on
// 503) drive orders on every shard through the other, with
// REDIS_WAIT_REPLICAS=1: meanwhile publishes answer 201 or 503 with
// Retry-After, never anything else; streams keep their heartbeats; and
// afterwards every stream delivered each acknowledged update once, in order.
func TestRedisClusterFailoverThroughHTTP(t *testing.T) {
	cluster := redistest.StartCluster(t)
	env := map[string]string{
		"REDIS_URL": cluster.URL(), "REDIS_CLUSTER": "true", "REDIS_WAIT_REPLICAS": "1",
		"HEARTBEAT_INTERVAL": "200ms",
	}
	watch, drive := startProcess(t, env), startProcess(t, env)
	const orders = 9
	ids := make([]string, orders)
	streams := make([]*stream, orders)
	// Each stream is read all along, so that its keep-alives are seen as
	// they come; a reader ends with the stream (after Delivered: io.EOF).
	received := make([][]event, orders)
	ends := make([]error, orders)
	var readers sync.WaitGroup
	for i := range ids {
		ids[i] = newID()
		streams[i] = openStream(t, watch.URL+"/orders/"+ids[i]+"/stream", nil)
		readers.Go(func() {
			for {
				ev, err := streams[i].nextOrErr(90 * time.Second)
				if err != nil {
					ends[i] = err
					return
				}
				received[i] = append(received[i], ev)
			}
		})
	}
	acked := make([][]update, orders)
	unavailable := make([]int, orders)
	started := make(chan struct{}, orders)
	deadline := time.Now().Add(90 * time.Second)
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() {
			for n, s := range happyPath {
				if n == 2 {
					started <- struct{}{}
				}
				header := http.Header{"Content-Type": {"application/json"}, "Idempotency-Key": {id + "-" + s}}
				for {
					res := do(t, http.MethodPost, drive.URL+"/orders/"+id+"/events", header, `{"status":"`+s+`"}`)
					if res.StatusCode == http.StatusCreated {
						var u update
						if err := json.NewDecoder(res.Body).Decode(&u); err != nil {
							t.Errorf("order %d: %v", i, err)
							return
						}
						acked[i] = append(acked[i], u)
						break
					}
					if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" || time.Now().After(deadline) {
						t.Errorf("order %d: publish %s: %d (Retry-After %q) %s; only 201 or 503 with Retry-After may answer",
							i, s, res.StatusCode, res.Header.Get("Retry-After"), bodyOf(res))
						return
					}
					unavailable[i]++
					time.Sleep(100 * time.Millisecond)
				}
				time.Sleep(300 * time.Millisecond)
			}
		})
	}
	for range orders {
		<-started
	}
	masters, err := cluster.Masters()
	if err != nil {
		t.Fatal(err)
	}
	beats := make([]int, orders)
	for i, st := range streams {
		beats[i] = st.keepAlives()
	}
	victim := masters[0]
	replica := cluster.ReplicaOf(victim)
	start := time.Now()
	victim.Kill()
	// Heartbeats go on while the shard is down.
	time.Sleep(2 * time.Second)
	for i, st := range streams {
		if st.keepAlives() <= beats[i] {
			t.Errorf("order %d: no keep-alive in the 2 s after the kill", i)
		}
	}
	// The killed node comes back as the promoted replica's replica, so that
	// WAIT 1 can be met again on that shard.
	for !replica.IsMaster() {
		if time.Since(start) > 45*time.Second {
			t.Fatal("no replica promoted within 45s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	victim.Restart()
	cluster.WaitHealthy()
	t.Logf("failed over and healed %v after the kill", time.Since(start).Round(time.Millisecond))
	wg.Wait()
	if t.Failed() {
		return
	}
	readers.Wait()
	total := 0
	for i := range streams {
		total += unavailable[i]
		if ends[i] != io.EOF {
			t.Errorf("order %d: stream ended with %v, want a clean end after Delivered", i, ends[i])
		}
		var got []string
		for _, ev := range received[i] {
			got = append(got, fmt.Sprint(ev.Update.Status, "@", ev.Update.Timestamp.UnixMicro()))
		}
		var want []string
		for _, u := range acked[i] {
			want = append(want, fmt.Sprint(u.Status, "@", u.Timestamp.UnixMicro()))
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("order %d: stream delivered %v, publishes acknowledged %v", i, got, want)
		}
	}
	t.Logf("%d orders, %d publishes answered 503 + Retry-After and were retried", orders, total)
}
