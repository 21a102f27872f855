// Command k6 is k6 with the orderstream SSE extension (k6/x/sse) built in.
// It lives in the loadtest module so that k6 (AGPL-3.0) never links into
// the service: see ../../NOTICE.
package main

import (
	k6cmd "go.k6.io/k6/cmd"

	_ "github.com/orderstream/orderstream/loadtest/xsse" // registers k6/x/sse
)

func main() {
	k6cmd.Execute()
}
