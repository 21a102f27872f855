//go:build !unix

package socketstreams

// openFileLimit is 0: no open-file limit is known here.
func openFileLimit() int { return 0 }
