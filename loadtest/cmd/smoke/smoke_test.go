package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// startLocal builds the service's local server (the root module's ./local)
// and runs it on a free loopback port with env; it returns its base URL.
func startLocal(t *testing.T, env ...string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "orderstream")
	build := exec.Command("go", "build", "-o", bin, "./local")
	build.Dir = filepath.Join("..", "..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build ./local: %v\n%s", err, out)
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), append([]string{"ADDR=127.0.0.1:0"}, env...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	addr := make(chan string, 1)
	go func() { // owned by the process: ends when its stdout closes
		re := regexp.MustCompile(`msg=listening addr=(\S+)`)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case a := <-addr:
		return "http://" + a
	case <-time.After(60 * time.Second):
		t.Fatal("the local server did not log its address")
		return ""
	}
}

// TestSmokeAgainstLocalServer is `make smoke` against the service itself,
// with and without FLUSH_PADDING: events arrive at once.
func TestSmokeAgainstLocalServer(t *testing.T) {
	for _, padding := range []string{"0", "102400"} {
		t.Run("FLUSH_PADDING="+padding, func(t *testing.T) {
			base := startLocal(t, "HEARTBEAT_INTERVAL=1s", "FLUSH_PADDING="+padding)
			var out strings.Builder
			code := run(context.Background(), []string{"smoke", "-target", base + "/", "-gap", "300ms", "-held-after", "2s", "-timeout", "1m"}, &out)
			t.Log("\n" + out.String())
			if code != 0 || !strings.Contains(out.String(), "verdict: events arrive at once") {
				t.Errorf("exit %d, want 0 and events at once", code)
			}
			if !strings.Contains(out.String(), "first byte:") || strings.Count(out.String(), "after the publish: at once") != len(statuses) {
				t.Errorf("the report lacks the first byte or an event line")
			}
		})
	}
}

// holdingServer is a front end that holds small chunks: each event is sent
// only with the next heartbeat, as a buffering proxy would pass it on.
func holdingServer(t *testing.T, heartbeat time.Duration) *httptest.Server {
	published := make(chan string, len(statuses))
	mux := http.NewServeMux()
	mux.HandleFunc("POST /orders/{id}/events", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if got, want := r.Header.Get("X-Amz-Content-Sha256"), fmt.Sprintf("%x", sha256.Sum256(body)); got != want {
			// What CloudFront's origin access control needs of a POST.
			http.Error(w, "x-amz-content-sha256 "+got+", want "+want, http.StatusForbidden)
			return
		}
		published <- string(body)
		w.WriteHeader(http.StatusCreated)
	})
	mux.HandleFunc("GET /orders/{id}/stream", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "retry: 3000\n\n")
		w.(http.Flusher).Flush()
		var held strings.Builder
		tick := time.NewTicker(heartbeat)
		defer tick.Stop()
		for id := 1; ; {
			select {
			case p := <-published:
				fmt.Fprintf(&held, "id: %d\nevent: order-update\ndata: %s\n\n", id, p)
				id++
			case <-tick.C:
				fmt.Fprint(w, held.String()+": keep-alive\n\n")
				w.(http.Flusher).Flush()
				if strings.Contains(held.String(), "Delivered") {
					return
				}
				held.Reset()
			case <-r.Context().Done():
				return
			}
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// TestSmokeDetectsHeldBack: the check can fail, and says why.
func TestSmokeDetectsHeldBack(t *testing.T) {
	srv := holdingServer(t, 1500*time.Millisecond)
	var out strings.Builder
	code := run(context.Background(), []string{"smoke", "-target", srv.URL, "-gap", "100ms", "-held-after", "500ms", "-timeout", "1m"}, &out)
	t.Log("\n" + out.String())
	if code != 1 || !strings.Contains(out.String(), "verdict: HELD BACK") || !strings.Contains(out.String(), "arrived together with the next write") {
		t.Errorf("exit %d, want 1 and a held-back verdict naming the next write", code)
	}
}

func TestSmokeNeedsTarget(t *testing.T) {
	t.Setenv("TARGET", "")
	var out strings.Builder
	if code := run(context.Background(), []string{"smoke"}, &out); code != 2 || !strings.Contains(out.String(), "-target") {
		t.Errorf("exit %d, output %q", code, out.String())
	}
}
