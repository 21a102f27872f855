package lambdatest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/orderstream/orderstream/shared/httpapi/httpapitest"
)

// BuildBootstrap builds the main package in dir (a functions/* directory) as
// Lambda runs it: a binary named bootstrap, with -tags lambda.norpc, into a
// new directory under parent. When the tests run with -race, so is the
// bootstrap built, so that races in the Lambda path fail the tests too (see
// Process.Stop).
func BuildBootstrap(parent, dir string) (string, error) {
	out, err := os.MkdirTemp(parent, "bootstrap-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(out, "bootstrap")
	args := []string{"build", "-tags", "lambda.norpc", "-o", bin}
	if RaceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command(GoTool(), append(args, ".")...)
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	return bin, nil
}

// GoTool is the go command: the one `go test` put first on PATH, or
// GOROOT's.
func GoTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(os.Getenv("GOROOT"), "bin", "go")
}

// LambdaEnv is the environment Lambda gives every runtime (the parts the
// functions could read), pointed at the Runtime API at addr. Nothing of the
// test's own environment leaks in.
func LambdaEnv(addr string, extra ...string) []string {
	env := []string{
		"AWS_LAMBDA_RUNTIME_API=" + addr,
		"AWS_LAMBDA_FUNCTION_NAME=orderstream-test",
		"AWS_LAMBDA_FUNCTION_VERSION=$LATEST",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE=128",
		"AWS_LAMBDA_LOG_GROUP_NAME=/aws/lambda/orderstream-test",
		"AWS_LAMBDA_LOG_STREAM_NAME=2026/01/01/[$LATEST]0123456789abcdef",
		"AWS_REGION=eu-west-1",
		"_HANDLER=bootstrap",
		"TZ=:UTC",
	}
	if RaceEnabled {
		// A race-enabled binary sleeps 1 s at exit by default: keep process
		// stops quick.
		env = append(env, "GORACE=atexit_sleep_ms=50")
	}
	return append(env, extra...)
}

// Process is a running bootstrap (or any program) whose output is kept.
type Process struct {
	t      testing.TB
	cmd    *exec.Cmd
	stdout *httpapitest.SyncBuffer
	stderr *httpapitest.SyncBuffer
	exited chan struct{}
	err    error // of Wait, once exited is closed
}

// Start runs bin with env (and no other environment). Stop, or the end of
// the test, kills it if it still runs.
func Start(t testing.TB, bin string, env []string, args ...string) *Process {
	t.Helper()
	SkipShort(t)
	p := &Process{t: t, stdout: &httpapitest.SyncBuffer{}, stderr: &httpapitest.SyncBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = env
	p.cmd.Stdout = p.stdout
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(p.Stop)
	return p
}

// Stdout and Stderr return the output so far.
func (p *Process) Stdout() string { return p.stdout.String() }
func (p *Process) Stderr() string { return p.stderr.String() }

// Signal sends sig to the process.
func (p *Process) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Wait waits for the process to exit and returns its exit code, or -1 if it
// still runs after timeout.
func (p *Process) Wait(timeout time.Duration) int {
	select {
	case <-p.exited:
	case <-time.After(timeout):
		return -1
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	if p.err != nil {
		return -1
	}
	return 0
}

// Stop ends the process (SIGTERM, then SIGKILL after a second) and fails the
// test if the race detector reported anything. Its output goes to the test
// log when the test failed.
func (p *Process) Stop() {
	select {
	case <-p.exited:
	default:
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		if p.Wait(time.Second) == -1 {
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	}
	if strings.Contains(p.stderr.String(), "WARNING: DATA RACE") {
		p.t.Errorf("%s: the race detector reported:\n%s", filepath.Base(p.cmd.Path), p.stderr.String())
	}
	if p.t.Failed() {
		p.t.Logf("%s stdout:\n%s\nstderr:\n%s", filepath.Base(p.cmd.Path), p.stdout.String(), p.stderr.String())
	}
}

// SkipShort skips t under -short (the fast inner loop, make test-fast):
// it runs a built bootstrap (under a fake Runtime API or aws-lambda-rie),
// which a TestMain that sees -short does not build. make test runs it.
func SkipShort(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("system test (a built bootstrap, as Lambda runs it): skipped by -short; make test runs it")
	}
}
