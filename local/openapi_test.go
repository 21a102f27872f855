package main

import (
	"fmt"
	"os"
	"testing"

	"github.com/orderstream/orderstream/docs/openapitest"
)

// runCheckingAPIDoc runs the tests with every answer they get through
// http.DefaultClient (the helpers in main_test.go, http.Get and the like)
// checked against docs/openapi.yaml, and fails the run if one does not
// match: the real server through run(), streams as registered sockets
// included.
func runCheckingAPIDoc(m *testing.M) int {
	v, err := openapitest.Load()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return v.Run(m)
}
