package main

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// FLUSH_PADDING adds a comment block after every write of a stream. These
// tests hold the two decoders we don't own to what the stream tests hold
// ours to (shared/httpapi TestFlushPadding): a browser's EventSource and the
// npm eventsource package see exactly the events published, no more, each
// as it is published.

const (
	paddingBytes = "102400" // the template's default
	// eventsourceVersion is the npm eventsource package the test installs
	// (into bin/npm, once): 4.x runs on Node 20.
	eventsourceVersion = "4.1.1"
)

var paddedStatuses = []string{"Created", "Packed", "Shipped", "Delivered"}

// publishWithGaps publishes the statuses a little apart, so that each must
// arrive on its own write (and heartbeats pass in between).
func publishWithGaps(t *testing.T, base, id string) {
	t.Helper()
	for _, s := range paddedStatuses {
		time.Sleep(150 * time.Millisecond)
		publish(t, base, id, s)
	}
}

func TestFlushPaddingInBrowser(t *testing.T) {
	chromium := findChromium(t)
	s := startServer(t, map[string]string{"FLUSH_PADDING": paddingBytes, "HEARTBEAT_INTERVAL": "100ms"})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	browser := newBrowser(t, ctx, chromium)
	id := newID()
	// Same origin as the stream (no CORS): /healthz is a small document.
	listen := `
window.__got = []; window.__messages = 0;
window.es = new EventSource("/orders/` + id + `/stream");
es.addEventListener("order-update", (e) => window.__got.push(JSON.parse(e.data).status));
es.onmessage = () => window.__messages++;  // unnamed events: padding must make none
es.addEventListener("order-update", (e) => { if (JSON.parse(e.data).status === "Delivered") es.close(); });
true`
	if err := chromedp.Do(browser, chromedp.Navigate(s.URL+"/healthz")); err != nil {
		t.Fatal(err)
	}
	eval[bool](t, browser, listen)
	deadline := time.Now().Add(30 * time.Second)
	for eval[int](t, browser, "es.readyState") != 1 { // OPEN: the statuses below arrive live
		if time.Now().After(deadline) {
			t.Fatal("the browser's EventSource did not open")
		}
		time.Sleep(20 * time.Millisecond)
	}
	publishWithGaps(t, s.URL, id)
	deadline = time.Now().Add(30 * time.Second)
	for eval[int](t, browser, "window.__got.length") < len(paddedStatuses) {
		if time.Now().After(deadline) {
			t.Fatalf("the browser got %v", eval[[]string](t, browser, "window.__got"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := eval[[]string](t, browser, "window.__got"); !slices.Equal(got, paddedStatuses) {
		t.Errorf("browser EventSource got %v, want %v", got, paddedStatuses)
	}
	if n := eval[int](t, browser, "window.__messages"); n != 0 {
		t.Errorf("browser EventSource fired %d message events: the padding was taken for data", n)
	}
}

// npmEventsource returns the directory where the npm eventsource package is
// installed, installing it there first if needed. No node or npm: the test
// fails (make deps installs them).
func npmEventsource(t *testing.T) string {
	t.Helper()
	skipShort(t, "Node and the npm eventsource package")
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing: apt-get install nodejs npm (make deps does)", tool)
		}
	}
	dir, err := filepath.Abs(filepath.Join("..", "bin", "npm"))
	if err != nil {
		t.Fatal(err)
	}
	pkg := filepath.Join(dir, "node_modules", "eventsource", "package.json")
	if b, err := os.ReadFile(pkg); err == nil && strings.Contains(string(b), `"version": "`+eventsourceVersion+`"`) {
		return dir
	}
	cmd := exec.Command("npm", "install", "--prefix", dir, "--no-audit", "--no-fund", "eventsource@"+eventsourceVersion)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm install eventsource@%s: %v\n%s", eventsourceVersion, err, out)
	}
	return dir
}

// eventsourceClient prints one line a dispatched event ("order-update
// <status>" or "message <data>") and exits after Delivered.
const eventsourceClient = `
import { EventSource } from "eventsource";
const es = new EventSource(process.argv[2]);
es.addEventListener("order-update", (e) => {
  const status = JSON.parse(e.data).status;
  console.log("order-update " + status);
  if (status === "Delivered") { es.close(); process.exit(0); }
});
es.onmessage = (e) => console.log("message of " + e.data.length + " bytes");
es.onopen = () => console.log("open");
setTimeout(() => { console.log("timeout"); process.exit(1); }, 60000);
`

func TestFlushPaddingNpmEventsource(t *testing.T) {
	dir := npmEventsource(t)
	script := filepath.Join(dir, "padding-client.mjs") // beside node_modules, so the import resolves
	if err := os.WriteFile(script, []byte(eventsourceClient), 0o644); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, map[string]string{"FLUSH_PADDING": paddingBytes, "HEARTBEAT_INTERVAL": "100ms"})
	id := newID()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", script, s.URL+"/orders/"+id+"/stream")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(out)
	if !lines.Scan() || lines.Text() != "open" {
		first := lines.Text()
		cancel()
		_ = cmd.Wait() // stderr is complete after Wait
		t.Fatalf("node client: %q, stderr %s", first, stderr.String())
	}
	publishWithGaps(t, s.URL, id) // the client's lines wait in the pipe
	var got []string
	for lines.Scan() {
		got = append(got, lines.Text())
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("node client: %v; stderr %s", err, stderr.String())
	}
	var want []string
	for _, st := range paddedStatuses {
		want = append(want, "order-update "+st)
	}
	if !slices.Equal(got, want) {
		t.Errorf("npm eventsource dispatched %q, want %q", got, want)
	}
}
