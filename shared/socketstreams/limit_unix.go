//go:build unix

package socketstreams

import (
	"math"
	"syscall"
)

// openFileLimit is the process's open-file limit (RLIMIT_NOFILE's soft
// limit; Go's syscall package raised it to the hard limit at start, as Go
// does since 1.19), 0 if there is none or it cannot be read.
func openFileLimit() int {
	var l syscall.Rlimit
	// RLIM_INFINITY is all ones: past MaxInt32, as no real limit is.
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil || l.Cur > math.MaxInt32 {
		return 0
	}
	return int(l.Cur)
}
