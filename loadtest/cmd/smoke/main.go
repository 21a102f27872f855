// Command smoke checks a deployment's streaming as a person watching it
// would: it opens one order's stream, publishes a few statuses with gaps
// between them, and reports the time to the stream's first byte and each
// event's delay from its publish. Its verdict says plainly whether events
// arrive at once or are held back until the next write (a heartbeat or the
// next event), which a front end that buffers small chunks would do.
//
//	make smoke TARGET=https://<function-url>/
//	go run ./cmd/smoke -target http://127.0.0.1:8080 -gap 500ms
//
// Exit status: 0 events arrive at once, 1 held back, 2 the check could not
// run (no stream, a publish refused, a timeout).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args, os.Stdout))
}

func run(ctx context.Context, args []string, stdout io.Writer) int {
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(stdout)
	var c Check
	fs.StringVar(&c.Target, "target", os.Getenv("TARGET"), "the deployment's base URL (StreamUrl), or a local server ($TARGET)")
	fs.DurationVar(&c.Gap, "gap", 3*time.Second, "time between publishes: longer than the delay that counts as held back")
	fs.DurationVar(&c.HeldAfter, "held-after", time.Second, "an event later than this after its publish counts as held back")
	fs.DurationVar(&c.Timeout, "timeout", 2*time.Minute, "give up after this long")
	fs.StringVar(&c.Token, "token", os.Getenv("TOKEN"), "bearer token for a deployment with auth on ($TOKEN; needs the publish scope and the order)")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if c.Target == "" {
		fmt.Fprintln(stdout, "smoke: -target (or TARGET) is required: the deployment's StreamUrl")
		return 2
	}
	rep, err := c.Run(ctx)
	if err != nil {
		fmt.Fprintln(stdout, "smoke:", err)
		return 2
	}
	rep.Print(stdout)
	if rep.HeldBack() > 0 {
		return 1
	}
	return 0
}
