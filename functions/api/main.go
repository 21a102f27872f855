// Command api is the buffered Lambda function behind an API Gateway HTTP API
// (payload format 2.0; also what `sam local start-api` invokes): publish,
// simulate, get, healthz and the page, served by shared/httpapi through
// aws-lambda-go-api-proxy's httpadapter. A buffered response can't stream, so
// GET /orders/{id}/stream answers as a bounded replay (httpapi.Config
// HistoryOnly): the history after Last-Event-ID, then the end of the body;
// EventSource reconnects after retry: and so polls, losing nothing. Live
// streams are the stream function's job.
//
// API Gateway gives an integration 30 s at most. A simulation takes 5
// intervals, up to 50 s at the contract's 10 s maximum: above ~5.5 s per step
// the caller gets API Gateway's timeout instead of the count, while the
// function (timeout 60 s in template.yaml) still completes the simulation, so
// no order is left half-simulated. Long simulations belong on the stream
// function's URL, which serves the same route for up to 15 min.
package main

import (
	"context"
	"fmt"
	"io"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/awslabs/aws-lambda-go-api-proxy/httpadapter"

	"github.com/orderstream/orderstream/functions/internal/boot"
	"github.com/orderstream/orderstream/functions/internal/secrets"
	"github.com/orderstream/orderstream/shared/config"
	"github.com/orderstream/orderstream/shared/httpapi"
)

func main() { boot.Main("orderstream api function", run) }

// run wires configuration, broker and handler, hands them to the Lambda
// runtime loop and returns when ctx ends (SIGTERM at shutdown). Every error
// it returns happened during initialisation.
func run(ctx context.Context, _ []string, getenv func(string) string, stdout io.Writer) error {
	if err := boot.CheckRuntimeAPI(getenv); err != nil {
		return err
	}
	// Secrets given by reference (REDIS_URL_REF, AUTH_JWT_*_REF) are read
	// once, here, and stand in for the plain settings from then on.
	getenv, err := secrets.FromEnv(ctx, getenv)
	if err != nil {
		return err
	}
	cfg, err := config.FromEnv(getenv)
	if err != nil {
		return err
	}
	logger := boot.Logger(stdout)

	b, err := cfg.OpenBroker(ctx, logger)
	if err != nil {
		return fmt.Errorf("open broker: %w", err)
	}
	defer b.Close()

	httpCfg := cfg.HTTP()
	httpCfg.HistoryOnly = true
	adapter := httpadapter.NewV2(httpapi.NewServer(logger, b, httpCfg))

	brokerKind := "memory"
	if cfg.RedisURL != "" {
		brokerKind = "redis"
	}
	logger.Info("starting", "function", "api", "broker", brokerKind)

	// Start never returns (see the stream function); ProxyWithContext hands
	// the invocation's context, and so its deadline, to the request.
	go lambda.StartHandlerFunc(adapter.ProxyWithContext,
		lambda.WithContext(ctx),
		lambda.WithEnableSIGTERM(func() { logger.Info("SIGTERM: instance shutting down") }))

	<-ctx.Done()
	logger.Info("stopped")
	return nil
}
