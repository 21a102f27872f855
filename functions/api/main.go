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
	"io"

	"github.com/awslabs/aws-lambda-go-api-proxy/httpadapter"

	"github.com/orderstream/orderstream/functions/internal/boot"
	"github.com/orderstream/orderstream/shared/httpapi"
)

func main() { boot.Main("orderstream api function", run) }

// run wires configuration, broker and handler, hands them to the Lambda
// runtime loop and returns when ctx ends (SIGTERM at shutdown). Every error
// it returns happened during initialisation.
func run(ctx context.Context, _ []string, getenv func(string) string, stdout io.Writer) error {
	f, err := boot.Init(ctx, getenv, stdout)
	if err != nil {
		return err
	}
	defer f.Close()
	cfg := f.HTTP
	cfg.HistoryOnly = true // a buffered response can't stream: a bounded replay
	adapter := httpadapter.NewV2(httpapi.NewServer(f.Logger, f.Broker, cfg))
	// ProxyWithContext hands the invocation's context, and so its deadline,
	// to the request.
	return boot.Serve(ctx, f, "api", adapter.ProxyWithContext)
}
