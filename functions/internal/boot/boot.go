// Package boot is what both Lambda entry points share: their log format, and
// telling Lambda why an instance could not start. It is edge wiring only; the
// service itself is shared/httpapi.
package boot

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// Main is both functions' main: it runs run until SIGTERM and, when run
// fails (which it does only while initialising), tells the Runtime API why
// and exits non-zero.
func Main(name string, run func(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		if rerr := ReportInitError(os.Getenv, err); rerr != nil {
			fmt.Fprintln(os.Stderr, rerr)
		}
		stop()
		os.Exit(1)
	}
}

// Logger writes one JSON object a line to w: Lambda sends stdout to
// CloudWatch Logs, where JSON lines can be queried field by field (and
// filtered by level when the function's log format is JSON).
func Logger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, nil))
}

// CheckRuntimeAPI fails early, with a hint, when the binary is started
// outside Lambda (aws-lambda-go would otherwise exit from inside Start).
func CheckRuntimeAPI(getenv func(string) string) error {
	if getenv("AWS_LAMBDA_RUNTIME_API") == "" {
		return fmt.Errorf("AWS_LAMBDA_RUNTIME_API is unset: this is a Lambda bootstrap; serve locally with `go run ./local`")
	}
	return nil
}

// ReportInitError tells the Lambda Runtime API why initialisation failed
// (POST /runtime/init/error), so that the failed invocation and the logs say
// "MAX_STREAM_DURATION=...: not a Go duration" instead of a bare exit status.
// The caller exits non-zero afterwards either way.
func ReportInitError(getenv func(string) string, initErr error) error {
	api := getenv("AWS_LAMBDA_RUNTIME_API")
	if api == "" {
		return nil // not in Lambda: the error on stderr is all there is
	}
	const errorType = "Runtime.InitError"
	body, err := json.Marshal(struct {
		ErrorMessage string   `json:"errorMessage"`
		ErrorType    string   `json:"errorType"`
		StackTrace   []string `json:"stackTrace"`
	}{initErr.Error(), errorType, []string{}})
	if err != nil {
		return err
	}
	req, err := http.NewRequest(http.MethodPost, "http://"+api+"/2018-06-01/runtime/init/error", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("report init error: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Lambda-Runtime-Function-Error-Type", errorType)
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil}}
	res, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("report init error: %w", err)
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, res.Body)
	if res.StatusCode != http.StatusAccepted {
		return fmt.Errorf("report init error: runtime API answered %s", res.Status)
	}
	return nil
}
