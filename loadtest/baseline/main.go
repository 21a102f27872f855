// Command baseline measures the physical limit of SSE fan-out on this box,
// so that orderstream's figures can be stated as a fraction of it.
//
//	baseline serve [-addr 127.0.0.1:0] [-heartbeat 15s] [-shape loop|goroutine|writev]
//	    a raw fan-out server: the same frames, nothing else; from one writing
//	    loop (a write(2) per frame per connection), from a goroutine and
//	    channel per connection (the same), or from a goroutine per connection
//	    that writes every frame queued for it in one writev(2)
//	baseline bench -raw URL -service URL [-n 10000] [-k 100] [-rounds 3]
//	    the same lean client against both, in alternating rounds:
//	    deliveries/s and latency p50/p95/p99, and their ratios
//	baseline bench -hold 20s -raw URL -service URL -n 10000
//	    hold idle streams (measure the servers' memory meanwhile)
//	baseline table -in results/figures
//	    a figures run's JSON as one table (figures.md, figures.json): each
//	    figure for orderstream and every raw form, the best raw, the ratio
//
// Server and client are separate processes: each may hold 20,000 open files.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: baseline serve|bench|table [flags]  (-h for flags)")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "bench":
		err = bench(os.Args[2:])
	case "table":
		err = table(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q: want serve, bench or table", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "baseline:", err)
		os.Exit(1)
	}
}
