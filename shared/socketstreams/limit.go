package socketstreams

import (
	"runtime"
	"strconv"
)

// Limit is how many live streams a server may hold at once. Each holds a
// descriptor (its socket), and so do the process's other connections: the
// listener, requests in flight (a publish, /healthz), the broker's
// connections, the registry's epoll sets, the log. Past the open-file limit
// accept fails (net/http backs off and retries, and /healthz, publishes and
// streams alike wait), so with MAX_STREAMS unset the streams get what the
// limit leaves once a reserve is set aside for the rest; streams past it
// are refused (503, Retry-After, the connection closed), which holds no
// descriptor.
type Limit struct {
	// Max is the cap; 0: none known (no MAX_STREAMS, no open-file limit).
	Max int
	// From says where Max comes from, for the startup log: "MAX_STREAMS",
	// "open-file limit", or "" for no cap.
	From string
	// Files is the process's open-file limit (RLIMIT_NOFILE's soft limit,
	// which Go raises to the hard limit at start), 0 if there is none.
	Files int
	// Reserved is what Files keeps for everything but streams.
	Reserved int
	// Over is MAX_STREAMS when it asked for more than Files leaves; Max is
	// then what Files leaves.
	Over int
}

// String says the cap and where it came from, for the log.
func (l Limit) String() string {
	switch l.From {
	case "":
		return "none"
	case "MAX_STREAMS":
		return strconv.Itoa(l.Max) + " (MAX_STREAMS)"
	}
	return strconv.Itoa(l.Max) + " (open-file limit " + strconv.Itoa(l.Files) + " less " + strconv.Itoa(l.Reserved) + " reserved)"
}

// baseReserve is the descriptors a server holds besides its streams and
// its broker's connections: standard streams, the listener, Go's poller,
// the metrics' reads of /proc, the address file, and room for the requests
// in flight and idle keep-alive connections of publishers and health
// checks (a registry's epoll sets, one per core, come on top). Small on
// purpose: a stream refused closes its connection at once, so at the cap
// the rest of the server needs tens of descriptors, not a share of the
// limit (load runs hold streams up to the limit less 150).
const baseReserve = 64

// streamLimit works out the Limit from MAX_STREAMS (0: unset) and the
// descriptors reserve adds to the base reserve (the broker's).
func streamLimit(maxStreams, reserve int) Limit {
	files := openFileLimit()
	if files <= 0 {
		if maxStreams > 0 {
			return Limit{Max: maxStreams, From: "MAX_STREAMS"}
		}
		return Limit{}
	}
	l := Limit{Files: files, Reserved: baseReserve + runtime.GOMAXPROCS(0) + max(0, reserve)}
	// A limit too small for the reserve still serves some streams.
	fit := max(files-l.Reserved, files/2)
	l.Reserved = files - fit
	switch {
	case maxStreams > 0 && maxStreams <= fit:
		l.Max, l.From = maxStreams, "MAX_STREAMS"
	default:
		if maxStreams > 0 {
			l.Over = maxStreams
		}
		l.Max, l.From = fit, "open-file limit"
	}
	return l
}
