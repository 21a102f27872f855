// Command ingest is the Lambda function that takes order events from an SQS
// queue (standard or FIFO; EventBridge events reach it through the same
// queue): each message is published exactly as POST /orders/{id}/events with
// its Idempotency-Key would be, and the messages to retry are reported in
// batchItemFailures. See README.md for the message format and the outcomes.
package main

import (
	"context"
	"fmt"
	"io"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/orderstream/orderstream/functions/internal/boot"
	"github.com/orderstream/orderstream/functions/internal/secrets"
	"github.com/orderstream/orderstream/shared/config"
)

func main() { boot.Main("orderstream ingest function", run) }

// run wires configuration, broker and handler, hands them to the Lambda
// runtime loop and returns when ctx ends (SIGTERM at shutdown). Every error
// it returns happened during initialisation.
func run(ctx context.Context, _ []string, getenv func(string) string, stdout io.Writer) error {
	if err := boot.CheckRuntimeAPI(getenv); err != nil {
		return err
	}
	// Secrets given by reference (REDIS_URL_REF) are read once, here, and
	// stand in for the plain settings from then on.
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

	brokerKind := "memory"
	if cfg.RedisURL != "" {
		brokerKind = "redis"
	}
	logger.Info("starting", "function", "ingest", "broker", brokerKind)

	// Start never returns (see the stream function).
	go lambda.StartHandlerFunc(newHandler(logger, b, newMetrics(stdout, getenv("AWS_LAMBDA_FUNCTION_NAME"))),
		lambda.WithContext(ctx),
		lambda.WithEnableSIGTERM(func() { logger.Info("SIGTERM: instance shutting down") }))

	<-ctx.Done()
	logger.Info("stopped")
	return nil
}
