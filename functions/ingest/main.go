// Command ingest is the Lambda function that takes order events from an SQS
// queue (standard or FIFO; EventBridge events reach it through the same
// queue): each message is published exactly as POST /orders/{id}/events with
// its Idempotency-Key would be, and the messages to retry are reported in
// batchItemFailures. See README.md for the message format and the outcomes.
package main

import (
	"context"
	"io"

	"github.com/orderstream/orderstream/functions/internal/boot"
)

func main() { boot.Main("orderstream ingest function", run) }

// run wires configuration, broker and handler, hands them to the Lambda
// runtime loop and returns when ctx ends (SIGTERM at shutdown). Every error
// it returns happened during initialisation. The function checks no token:
// template.yaml gives it no AUTH_* key, so its settings build no verifier.
func run(ctx context.Context, _ []string, getenv func(string) string, stdout io.Writer) error {
	f, err := boot.Init(ctx, getenv, stdout)
	if err != nil {
		return err
	}
	defer f.Close()
	m := newMetrics(stdout, getenv("AWS_LAMBDA_FUNCTION_NAME"))
	return boot.Serve(ctx, f, "ingest", newHandler(f.Logger, f.Broker, m))
}
