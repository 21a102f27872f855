// Package boot is what the Lambda entry points share: the steps before they
// serve (a check that they run under Lambda, secrets by reference, the
// settings, the broker: Init), handing their handler to the runtime loop
// (Serve), their log format, and telling Lambda why an instance could not
// start. It is edge wiring only; the service itself is shared/httpapi.
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

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/orderstream/orderstream/functions/internal/secrets"
	"github.com/orderstream/orderstream/shared/config"
	"github.com/orderstream/orderstream/shared/service"
)

// Main is every function's main: it runs run until SIGTERM and, when run
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

// Function is a function initialised by Init: its settings, its logger,
// and the broker and core configuration they chose.
type Function struct {
	*service.Service
	Settings config.Settings
	Logger   *slog.Logger
}

// Init is what every function does before it serves: it fails early, with a
// hint, outside Lambda; reads the secrets given by reference (REDIS_URL_REF,
// AUTH_JWT_*_REF) once, to stand in for the plain settings from then on;
// reads the settings over the function's own defaults (overrides); and
// opens what they choose. Every error it returns happened during
// initialisation. The caller closes the Function.
func Init(ctx context.Context, getenv func(string) string, stdout io.Writer, overrides ...config.Override) (*Function, error) {
	if err := CheckRuntimeAPI(getenv); err != nil {
		return nil, err
	}
	getenv, err := secrets.FromEnv(ctx, getenv)
	if err != nil {
		return nil, err
	}
	s, err := config.FromEnv(getenv, overrides...)
	if err != nil {
		return nil, err
	}
	logger := Logger(stdout)
	svc, err := service.Open(ctx, logger, s)
	if err != nil {
		return nil, err
	}
	return &Function{Service: svc, Settings: s, Logger: logger}, nil
}

// Serve says the function (name) starts, with attrs, hands handler to the
// Lambda runtime loop and returns when ctx ends (SIGTERM at shutdown).
// Every invocation's context derives from ctx.
func Serve[TIn, TOut any, H lambda.HandlerFunc[TIn, TOut]](ctx context.Context, f *Function, name string, handler H, attrs ...any) error {
	f.Logger.Info("starting", append([]any{"function", name, "broker", f.Kind}, attrs...)...)
	// Start never returns: it serves invocations until the process ends, and
	// exits the process itself if the Runtime API fails. WithEnableSIGTERM
	// registers an internal extension, without which Lambda sends no SIGTERM
	// before it stops an instance.
	go lambda.StartHandlerFunc(handler,
		lambda.WithContext(ctx),
		lambda.WithEnableSIGTERM(func() { f.Logger.Info("SIGTERM: instance shutting down") }))
	<-ctx.Done()
	f.Logger.Info("stopped")
	return nil
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
