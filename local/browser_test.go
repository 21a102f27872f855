package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/orderstream/orderstream/shared/broker/redistest"
)

var updateDocsScreenshot = flag.Bool("update-docs-screenshot", false,
	"also write TestPageInBrowser's screenshot to docs/page.png (for the README)")

// findChromium returns the browser's path, failing (not skipping) when it is
// missing: a machine without it must not pass by testing less.
func findChromium(t *testing.T) string {
	t.Helper()
	skipShort(t, "a real headless Chromium")
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("chromium is not installed: this test drives a real headless browser; " +
		"install it with `apt-get install chromium` (make test does)")
	return ""
}

// recordEvents runs before the page's own script: it wraps EventSource so
// that the test sees every event and every (re)connection the browser made,
// including any the page itself would have filtered out as duplicates, and
// fetch, so that it sees what each write sent.
const recordEvents = `
window.__received = [];
window.__opens = 0;
window.__writes = [];
const nativeFetch = window.fetch;
window.fetch = (url, init = {}) => {
  if (init.method === "POST") {
    window.__writes.push({ body: init.body || "", sha: new Headers(init.headers).get("x-amz-content-sha256") });
  }
  return nativeFetch(url, init);
};
const NativeEventSource = window.EventSource;
window.EventSource = class extends NativeEventSource {
  constructor(url, init) {
    super(url, init);
    this.addEventListener("open", () => { window.__opens++; });
    this.addEventListener("order-update", (e) => {
      window.__received.push(e.lastEventId + " " + JSON.parse(e.data).status);
    });
  }
};
`

// TestPageInBrowser opens the page in headless Chromium, starts a
// simulation, restarts the server on the same port in the middle of it and
// checks that the page resumes without a gap or a duplicate and stops after
// Delivered. The server runs on Redis, as a restarted instance would: the
// in-process broker forgets everything when its process ends.
func TestPageInBrowser(t *testing.T) {
	chromium := findChromium(t)
	redis := redistest.Start(t)
	env := map[string]string{"REDIS_URL": redis.URL(), "RETRY_INTERVAL": "300ms"}
	s := startServer(t, env)
	u, err := url.Parse(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	env["ADDR"] = u.Host // the restart takes the same port

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	browser := newBrowser(t, ctx, chromium)

	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(browser, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	// waitJS polls a JavaScript expression until it is true.
	waitJS := func(what, expr string) {
		t.Helper()
		for {
			ok, err := chromedp.Run(browser, chromedp.Evaluate[bool](expr))
			if err != nil {
				t.Fatalf("waiting for %s: %v", what, err)
			}
			if ok {
				return
			}
			select {
			case <-ctx.Done():
				t.Fatalf("timed out waiting for %s", what)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	statusCount := `document.querySelectorAll("#timeline li[data-status]").length`

	id := newID()
	do("open the page",
		chromedp.Func(func(ctx context.Context, tab *chromedp.Target) error {
			_, err := cdp.Call(ctx, tab, page.AddScriptToEvaluateOnNewDocument,
				page.AddScriptToEvaluateOnNewDocumentParams{Source: recordEvents})
			return err
		}),
		chromedp.Navigate(s.URL+"/"),
		chromedp.WaitVisible(chromedp.ID("simulate")),
		chromedp.SetValue(chromedp.ID("order"), id),
		chromedp.SetValue(chromedp.ID("interval"), "500ms"),
		chromedp.Click(chromedp.ID("simulate")),
	)
	waitJS("the first two statuses", statusCount+" >= 2")

	// Restart mid-run: streams end at once; the simulation request gets its
	// shutdown grace and publishes the rest while no server listens.
	if err := s.stop(); err != nil {
		t.Fatalf("stop the first server: %v", err)
	}
	if seen := eval[int](t, browser, statusCount); seen >= 6 {
		t.Fatal("the page had every status before the restart: the test cut nothing")
	}
	s2 := startServer(t, env)

	waitJS("Delivered", `[...document.querySelectorAll("#timeline li[data-status]")].some(li => li.dataset.status === "Delivered")`)
	waitJS("the finished state", `document.getElementById("state").className === "finished"`)

	shown := eval[[]string](t, browser, `[...document.querySelectorAll("#timeline li[data-status]")].map(li => li.dataset.eventId + " " + li.dataset.status)`)
	received := eval[[]string](t, browser, `window.__received`)
	opens := eval[int](t, browser, `window.__opens`)
	want := []string{"Created", "PaymentConfirmed", "Packed", "Shipped", "OutForDelivery", "Delivered"}
	for what, got := range map[string][]string{"shown": shown, "received by EventSource": received} {
		var statuses, ids []string
		for _, line := range got {
			eventID, status, _ := strings.Cut(line, " ")
			statuses = append(statuses, status)
			ids = append(ids, eventID)
		}
		if !slices.Equal(statuses, want) {
			t.Errorf("%s: %q, want every status once, in order: %q", what, statuses, want)
		}
		seen := map[string]bool{}
		for _, eventID := range ids {
			if seen[eventID] {
				t.Errorf("%s: event id %q twice: %q", what, eventID, ids)
			}
			seen[eventID] = true
		}
	}
	if opens < 2 {
		t.Errorf("EventSource opened %d times; the restart should have made it reconnect", opens)
	}
	// Every write carries its body's SHA-256 (a function URL behind
	// CloudFront takes a POST only with it).
	writes := eval[[]map[string]string](t, browser, `window.__writes`)
	if len(writes) == 0 {
		t.Error("the page's simulate request was not seen")
	}
	for _, w := range writes {
		if sum := sha256.Sum256([]byte(w["body"])); w["sha"] != hex.EncodeToString(sum[:]) {
			t.Errorf("a write with body %q sent x-amz-content-sha256 %q, want %x", w["body"], w["sha"], sum)
		}
	}
	if notes := eval[int](t, browser, `document.querySelectorAll("#timeline li.note").length`); notes == 0 {
		t.Error("the page did not say that the connection was lost")
	}

	// No reconnect loop: once Delivered is shown the page closes its
	// EventSource, and the second server sees no new stream request while
	// several retry intervals pass.
	streamPath := "path=/orders/" + id + "/stream"
	// The resumed stream's request line comes when it ends, after Delivered.
	deadline := time.Now().Add(30 * time.Second)
	for s2.log.count("msg=request", streamPath) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the second server logged no stream request: the page did not resume there")
		}
		time.Sleep(20 * time.Millisecond)
	}
	requests := s2.log.count("msg=request", streamPath)
	time.Sleep(5 * 300 * time.Millisecond) // five retry intervals; a correctness wait, not a timing claim
	if readyState := eval[int](t, browser, `source.readyState`); readyState != 2 {
		t.Errorf("EventSource readyState %d after Delivered, want 2 (CLOSED)", readyState)
	}
	if again := s2.log.count("msg=request", streamPath); again != requests {
		t.Errorf("the page made %d more stream requests after Delivered", again-requests)
	}

	png, err := chromedp.Run(browser, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	shot := filepath.Join(t.ArtifactDir(), "page.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", shot)
	if *updateDocsScreenshot {
		docs := filepath.Join("..", "docs", "page.png")
		if err := os.MkdirAll(filepath.Dir(docs), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(docs, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot for the README: %s", docs)
	}
}

// newBrowser starts headless Chromium for the test; it ends with ctx or the
// test.
func newBrowser(t *testing.T, ctx context.Context, chromium string) context.Context {
	t.Helper()
	opts := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]),
		chromedp.ExecPath(chromium),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(900, 860),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(cancelAlloc)
	browser, cancelBrowser := chromedp.NewContext(allocCtx)
	t.Cleanup(cancelBrowser)
	return browser
}

// eval returns what a JavaScript expression evaluates to in the page.
func eval[T any](t *testing.T, browser context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(browser, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}
