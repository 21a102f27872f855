// Command stream is the response-streaming Lambda function: the whole
// orderstream API (streams, and every other route too) served by
// shared/httpapi through aws-lambda-go's lambdaurl adapter, so that each SSE
// frame leaves the function as it is written.
//
// It answers two kinds of event with the same handler: a Lambda function
// URL's (InvokeMode RESPONSE_STREAM; the path without a VPC) and an API
// Gateway REST API's streaming Lambda proxy integration's (the VPC path,
// where function URLs do not stream). See template.yaml.
package main

import (
	"context"
	"io"
	"net/http"
	"time"

	"github.com/orderstream/orderstream/functions/internal/boot"
	"github.com/orderstream/orderstream/shared/config"
	"github.com/orderstream/orderstream/shared/httpapi"
)

func main() { boot.Main("orderstream stream function", run) }

// maxStreamDuration is the function's own default for MAX_STREAM_DURATION
// (the variable still wins). Lambda bills a stream until it ends and never
// learns that its client left, so the cap is what an abandoned stream costs
// at most (5 min at 128 MB arm64: about $0.0005). Ending costs the client
// one reconnection after its retry: delay, resuming with Last-Event-ID,
// nothing lost; against a 5 min cap that is one new invocation per 5 min of
// watching, negligible next to the duration billed. It is a third of the 15
// min function timeout, so the end is always ours (a clean end of the body)
// and never Lambda's timeout.
var maxStreamDuration = config.Override{Name: "MAX_STREAM_DURATION", Value: "5m"}

// deadlineMargin is how long before the invocation's deadline every request
// is ended, whatever MAX_STREAM_DURATION says (0, or longer than the
// function's timeout): time for the last bytes to leave and the response to
// be closed, so the client sees a clean end and resumes.
const deadlineMargin = 2 * time.Second

// run wires configuration, broker and handler, hands them to the Lambda
// runtime loop and returns when ctx ends (SIGTERM at shutdown). Every error
// it returns happened during initialisation.
func run(ctx context.Context, _ []string, getenv func(string) string, stdout io.Writer) error {
	f, err := boot.Init(ctx, getenv, stdout, maxStreamDuration)
	if err != nil {
		return err
	}
	defer f.Close()
	var h http.Handler = httpapi.NewServer(f.Logger, f.Broker, f.HTTP)
	h = endBeforeDeadline(deadlineMargin, h)
	// Lambda stops an instance only between invocations, so no stream is
	// open when Serve returns; on a runtime that did otherwise, a stream's
	// context derives from ctx, and it ends with it.
	return boot.Serve(ctx, f, "stream", eventHandler(h),
		"maxStreamDuration", f.HTTP.MaxStreamDuration.String(),
		"heartbeatInterval", f.HTTP.HeartbeatInterval.String())
}

// endBeforeDeadline ends each request deadlineMargin before its invocation's
// deadline by cancelling its context, which the core treats as the end of a
// stream. Without it a stream outliving the function's timeout would be cut
// by Lambda mid-frame and reported as a failed invocation.
func endBeforeDeadline(margin time.Duration, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if deadline, ok := r.Context().Deadline(); ok {
			ctx, cancel := context.WithDeadline(r.Context(), deadline.Add(-margin))
			defer cancel()
			r = r.WithContext(ctx)
		}
		next.ServeHTTP(w, r)
	})
}
