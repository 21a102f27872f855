package image

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"debug/buildinfo"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/orderstream/orderstream/deploy/layers"
)

var created = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func options(t *testing.T) Options {
	root, err := layers.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return Options{Repo: root, Version: "v0.0.0-test", Revision: "0123456789abcdef", Created: created}
}

// One build for the tests that only read it (both platforms: a cold arm64
// compile is most of this package's time).
var (
	builtOnce sync.Once
	built     v1.ImageIndex
	builtErr  error
)

func build(t *testing.T) v1.ImageIndex {
	t.Helper()
	skipShort(t, "the server compiled for linux/amd64 and linux/arm64")
	builtOnce.Do(func() { built, builtErr = Build(context.Background(), options(t)) })
	if builtErr != nil {
		t.Fatal(builtErr)
	}
	return built
}

// TestReproducible: the same tree builds to the same digest (fixed
// timestamps, no build paths), and a different timestamp to another one,
// so the comparison can fail.
func TestReproducible(t *testing.T) {
	first := build(t)
	again, err := Build(context.Background(), options(t))
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := first.Digest()
	d2, _ := again.Digest()
	if d1 != d2 {
		t.Fatalf("two builds of the same tree: %s and %s", d1, d2)
	}
	img, err := PlatformImage(first, Platforms[0])
	if err != nil {
		t.Fatal(err)
	}
	bin := binaryOf(t, img)
	o := options(t)
	a, err := FromBinary(bin, Platforms[0], o)
	if err != nil {
		t.Fatal(err)
	}
	o.Created = o.Created.Add(time.Second)
	b, err := FromBinary(bin, Platforms[0], o)
	if err != nil {
		t.Fatal(err)
	}
	da, _ := a.Digest()
	db, _ := b.Digest()
	want, _ := img.Digest()
	if da != want || da == db {
		t.Fatalf("digest %s from the same binary (index has %s), %s a second later: want equal, then different", da, want, db)
	}
	t.Logf("index %s", d1)
}

// binaryOf returns the one file of img's one layer, checking the layer
// holds nothing else and carries the fixed time.
func binaryOf(t *testing.T, img v1.Image) []byte {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 1 {
		t.Fatalf("%d layers, want 1 (an empty base and the binary)", len(ls))
	}
	rc, err := ls[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	var bin []byte
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name != Binary[1:] || h.Typeflag != tar.TypeReg || h.Mode != 0o755 || h.Uid != 0 || h.Gid != 0 || !h.ModTime.Equal(created) {
			t.Fatalf("layer entry %s (type %c, mode %o, owner %d:%d, time %v): want only %s, a regular file 0755 owned by root, at %v",
				h.Name, h.Typeflag, h.Mode, h.Uid, h.Gid, h.ModTime, Binary[1:], created)
		}
		if bin, err = io.ReadAll(tr); err != nil {
			t.Fatal(err)
		}
	}
	if bin == nil {
		t.Fatal("the layer holds no binary")
	}
	return bin
}

// readBack writes idx as a layout and reads it back with the same library:
// what a registry or a runtime gets.
func readBack(t *testing.T, idx v1.ImageIndex) v1.ImageIndex {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layout")
	if err := WriteLayout(dir, idx); err != nil {
		t.Fatal(err)
	}
	got, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestImageConfigAndBinary(t *testing.T) {
	idx := readBack(t, build(t))
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != len(Platforms) {
		t.Fatalf("%d manifests in the index, want one per platform: %v", len(im.Manifests), Platforms)
	}
	for _, p := range Platforms {
		t.Run(p.String(), func(t *testing.T) {
			img, err := PlatformImage(idx, p)
			if err != nil {
				t.Fatal(err)
			}
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			c := cf.Config
			uid, gid, ok := strings.Cut(c.User, ":")
			u, uerr := strconv.Atoi(uid)
			g, gerr := strconv.Atoi(gid)
			if !ok || uerr != nil || gerr != nil || u == 0 || g == 0 {
				t.Errorf("User %q: want numeric uid:gid, not root (runAsNonRoot checks a number)", c.User)
			}
			if !slices.Equal(c.Entrypoint, []string{Binary}) || len(c.Cmd) != 0 {
				t.Errorf("Entrypoint %v Cmd %v, want [%s] and no Cmd", c.Entrypoint, c.Cmd, Binary)
			}
			if _, ok := c.ExposedPorts["8080/tcp"]; !ok || len(c.ExposedPorts) != 1 {
				t.Errorf("ExposedPorts %v, want 8080/tcp", c.ExposedPorts)
			}
			if !slices.Contains(c.Env, "ADDR=:8080") {
				t.Errorf("Env %v lacks ADDR=:8080", c.Env)
			}
			if c.StopSignal != "SIGTERM" {
				t.Errorf("StopSignal %q", c.StopSignal)
			}
			for k, want := range map[string]string{
				"org.opencontainers.image.version":  "v0.0.0-test",
				"org.opencontainers.image.revision": "0123456789abcdef",
				"org.opencontainers.image.source":   Source,
				"org.opencontainers.image.created":  "2026-12-01T12:00:00Z",
			} {
				if c.Labels[k] != want {
					t.Errorf("label %s = %q, want %q", k, c.Labels[k], want)
				}
			}
			if cf.OS != p.OS || cf.Architecture != p.Architecture || !cf.Created.Time.Equal(created) {
				t.Errorf("config %s/%s created %v, want %s at %v", cf.OS, cf.Architecture, cf.Created, p, created)
			}
			checkBinary(t, binaryOf(t, img), p)
		})
	}
}

// checkBinary: the binary is make build's (CGO off, trimpath), for the
// platform, statically linked (the base has no libc or loader), and carries
// the fallback CA roots (the base has no /etc/ssl).
func checkBinary(t *testing.T, bin []byte, p v1.Platform) {
	t.Helper()
	bi, err := buildinfo.Read(bytes.NewReader(bin))
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	for k, want := range map[string]string{"CGO_ENABLED": "0", "-trimpath": "true", "GOOS": p.OS, "GOARCH": p.Architecture} {
		if settings[k] != want {
			t.Errorf("build setting %s = %q, want %q", k, settings[k], want)
		}
	}
	if bi.Path != "github.com/orderstream/orderstream/local" {
		t.Errorf("the binary is %s, want the local server", bi.Path)
	}
	if !slices.ContainsFunc(bi.Deps, func(m *debug.Module) bool { return m.Path == "golang.org/x/crypto/x509roots/fallback" }) {
		t.Errorf("the binary lacks golang.org/x/crypto/x509roots/fallback: rediss:// could not verify on an empty base")
	}
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		t.Fatal(err)
	}
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			t.Errorf("the binary names a dynamic loader: not static")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the binary needs %v", libs)
	}
	wantMachine := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[p.Architecture]
	if f.Machine != wantMachine {
		t.Errorf("ELF machine %v, want %v", f.Machine, wantMachine)
	}
}

// TestDockerTarball: the tarball holds the same image (same config) for
// the host's platform, tagged orderstream:version, readable back.
func TestDockerTarball(t *testing.T) {
	idx := build(t)
	p := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	path := filepath.Join(t.TempDir(), "image.tar")
	if err := WriteTarball(path, "orderstream:v0.0.0-test", idx, p); err != nil {
		t.Fatal(err)
	}
	got, err := tarball.ImageFromPath(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	want, err := PlatformImage(idx, p)
	if err != nil {
		t.Fatal(err)
	}
	gc, _ := got.ConfigName()
	wc, _ := want.ConfigName()
	if gc != wc {
		t.Fatalf("tarball's config %s, the index's %s", gc, wc)
	}
	m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(path) })
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 1 || !slices.Equal(m[0].RepoTags, []string{"orderstream:v0.0.0-test"}) {
		t.Fatalf("tarball manifest %+v, want one image tagged orderstream:v0.0.0-test", m)
	}
}

// TestMakefileBuildsTheSameBinary: `make build` and the image compile the
// server alike.
func TestMakefileBuildsTheSameBinary(t *testing.T) {
	root, err := layers.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	mk, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^build:.*\n((?:\t.*\n)+)`).FindSubmatch(mk)
	if m == nil {
		t.Fatal("the Makefile has no build rule")
	}
	for _, want := range append(slices.Clone(BuildEnv), BuildFlags...) {
		if !strings.Contains(string(m[1]), want) {
			t.Errorf("make build's recipe lacks %s:\n%s", want, m[1])
		}
	}
}

// TestImageServes runs the binary from the image's layer as the image's
// user, with the image's environment, against a real redis-server (plain
// redis://: the roots are for rediss://, which needs no other change):
// health, publish, stream, read, a problem for an unknown path, the EMF line
// the ECS scaling policy reads, and a clean exit on SIGTERM.
func TestImageServes(t *testing.T) {
	idx := readBack(t, build(t))
	img, err := PlatformImage(idx, v1.Platform{OS: "linux", Architecture: runtime.GOARCH})
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	// A directory the image's user can reach (t.TempDir is root's alone).
	dir, err := os.MkdirTemp("", "orderstream-image-run-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	bin := filepath.Join(dir, "orderstream")
	if err := os.WriteFile(bin, binaryOf(t, img), 0o755); err != nil {
		t.Fatal(err)
	}
	redisURL := startRedis(t)
	// ADDR_FILE is written through a temporary file beside it.
	runDir := filepath.Join(dir, "run")
	os.Mkdir(runDir, 0o777)
	os.Chmod(runDir, 0o777)
	addrFile := filepath.Join(runDir, "addr")

	cmd := exec.Command(bin)
	cmd.Env = append(slices.Clone(cf.Config.Env), // ADDR=:8080, overridden for the test's free port
		"ADDR=127.0.0.1:0", "ADDR_FILE="+addrFile, "REDIS_URL="+redisURL, "SHUTDOWN_DRAIN=500ms",
		"METRICS=true", "METRICS_EMF_SERVICE=orderstream-test")
	if os.Geteuid() == 0 {
		uid, gid, _ := strings.Cut(cf.Config.User, ":")
		u, _ := strconv.Atoi(uid)
		g, _ := strconv.Atoi(gid)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(u), Gid: uint32(g)}}
	} else {
		t.Logf("not root: running as uid %d rather than the image's %s", os.Geteuid(), cf.Config.User)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1000)
	exited := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() { cmd.Process.Kill() })

	var base string
	for deadline := time.Now().Add(30 * time.Second); base == ""; time.Sleep(20 * time.Millisecond) {
		if b, _ := os.ReadFile(addrFile); len(bytes.TrimSpace(b)) > 0 {
			base = "http://" + string(bytes.TrimSpace(b))
		}
		if time.Now().After(deadline) {
			t.Fatal("the image's binary did not start listening")
		}
	}
	checkContract(t, base)

	// The first EMF line: what the ECS scaling policy must name.
	var emf struct {
		Service     string
		StreamsOpen *float64
		AWS         struct {
			CloudWatchMetrics []struct {
				Namespace  string
				Dimensions [][]string
				Metrics    []struct{ Name, Unit string }
			}
		} `json:"_aws"`
	}
	for found := false; !found; {
		select {
		case line := <-lines:
			if strings.HasPrefix(line, "{") {
				if err := json.Unmarshal([]byte(line), &emf); err != nil {
					t.Fatalf("EMF line %s: %v", line, err)
				}
				found = true
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no EMF line on stdout with METRICS_EMF_SERVICE set")
		}
	}
	cw := emf.AWS.CloudWatchMetrics
	if emf.Service != "orderstream-test" || emf.StreamsOpen == nil || len(cw) != 1 || cw[0].Namespace != layers.EMFNamespace ||
		fmt.Sprint(cw[0].Dimensions) != fmt.Sprint([][]string{{layers.EMFDimension}}) || len(cw[0].Metrics) != 1 || cw[0].Metrics[0].Name != layers.EMFMetric {
		t.Errorf("EMF line %+v: want namespace %s, metric %s, dimension %s=orderstream-test", emf, layers.EMFNamespace, layers.EMFMetric, layers.EMFDimension)
	}

	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no exit 30s after SIGTERM")
	}
}

// checkContract: a few rows of the contract through the image's binary.
func checkContract(t *testing.T, base string) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	res, err := client.Get(base + "/healthz")
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("healthz: %v %v", res, err)
	}
	res.Body.Close()
	id := "7c9e6679-7425-40de-944b-e07fc1f90ae7"
	publish := func(status string) {
		res, err := client.Post(base+"/orders/"+id+"/events", "application/json", strings.NewReader(`{"status":"`+status+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusCreated || !strings.Contains(string(body), `"status":"`+status+`"`) {
			t.Fatalf("publish %s: %d %s", status, res.StatusCode, body)
		}
	}
	publish("Created")
	streamClient := &http.Client{} // no timeout: the stream stays open
	res, err = streamClient.Get(base + "/orders/" + id + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	events := make(chan string, 10)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(res.Body)
		first := true
		for sc.Scan() {
			line := sc.Text()
			if first && !strings.HasPrefix(line, "retry: ") {
				events <- "first line not retry: " + line
			}
			first = false
			if data, ok := strings.CutPrefix(line, "data: "); ok {
				events <- data
			}
		}
	}()
	next := func(want string) {
		t.Helper()
		select {
		case data := <-events:
			if !strings.Contains(data, `"status":"`+want+`"`) {
				t.Fatalf("stream event %s, want %s", data, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no %s event", want)
		}
	}
	next("Created")
	publish("Delivered")
	next("Delivered")
	select {
	case _, open := <-events:
		if open {
			t.Fatal("an event after the terminal one")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stream did not end after Delivered")
	}
	res, err = client.Get(base + "/orders/" + id)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.Contains(string(body), `"Delivered"`) {
		t.Fatalf("get: %d %s", res.StatusCode, body)
	}
	res, err = client.Get(base + "/no/such/path")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound || res.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("unknown path: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
}

// skipShort skips a system test under -short (the fast inner loop, as in
// the service's module); make deploy-test runs it.
func skipShort(t *testing.T, what string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("system test (%s): skipped by -short; make deploy-test runs it", what)
	}
}

// startRedis runs a redis-server on a free loopback port for the test (the
// service's tests use the same Debian package; make deps installs it).
func startRedis(t *testing.T) string {
	t.Helper()
	skipShort(t, "a real redis-server")
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal("redis-server is missing: make deps installs it (apt-get install redis-server)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", t.TempDir())
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Write([]byte("PING\r\n"))
			buf := make([]byte, 7)
			c.SetReadDeadline(time.Now().Add(time.Second))
			n, _ := io.ReadFull(c, buf)
			c.Close()
			if string(buf[:n]) == "+PONG\r\n" {
				return "redis://" + addr
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("redis-server did not answer PING")
		}
	}
}
