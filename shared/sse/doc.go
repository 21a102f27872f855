// Package sse reads and writes the Server-Sent Events wire format.
//
// The encoder returns an error rather than escaping or dropping input it
// cannot represent: a CR or LF in an id or event name, or a CR in data, is a
// line break to every client, so it would split the field, let the value
// inject fields of its own, or dispatch a truncated event, and a NUL makes
// clients silently ignore the id. None of that is detectable on the client
// side, so the only safe place to catch it is before the frame is written.
package sse
