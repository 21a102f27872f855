package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"time"
)

const (
	maxBodyBytes    = MaxBodyBytes
	bodyReadTimeout = 10 * time.Second
)

// writeJSON answers with a JSON body that is already encoded: broker events
// carry their JSON, so it is never marshalled per request.
func writeJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func encodeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only our own types reach here; they always marshal.
		panic(fmt.Sprintf("encode response: %v", err))
	}
	writeJSON(w, status, append(b, '\n'))
}

// decodeError is a failed decode, already mapped to its HTTP status.
type decodeError struct {
	status int
	detail string
}

// decode reads a JSON body into v, enforcing the contract's limits: JSON
// content type (415), 64 KiB (413), one well-formed value (400), and a
// deadline so a client trickling its body can't hold the handler (408).
func decode(w http.ResponseWriter, r *http.Request, v any) *decodeError {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return &decodeError{http.StatusUnsupportedMediaType, "Content-Type is missing; send application/json"}
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		return &decodeError{http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Type %q is not application/json", ct)}
	}
	if r.ContentLength > maxBodyBytes {
		return &decodeError{http.StatusRequestEntityTooLarge, fmt.Sprintf("body of %d bytes is over the limit of %d", r.ContentLength, maxBodyBytes)}
	}
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(bodyReadTimeout))
	body := http.MaxBytesReader(w, r.Body, maxBodyBytes)
	dec := json.NewDecoder(body)
	err = dec.Decode(v)
	if err == nil {
		// Exactly one value: trailing data means the client sent something else.
		if err = dec.Decode(&struct{}{}); err == io.EOF {
			return nil
		} else if err == nil {
			err = errors.New("more than one JSON value")
		}
	}
	var maxErr *http.MaxBytesError
	var synErr *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	var netErr net.Error
	switch {
	case errors.As(err, &maxErr):
		return &decodeError{http.StatusRequestEntityTooLarge, fmt.Sprintf("body is over the limit of %d bytes", maxBodyBytes)}
	case errors.As(err, &netErr) && netErr.Timeout():
		return &decodeError{http.StatusRequestTimeout, "the body did not arrive in time"}
	case errors.Is(err, io.EOF):
		return &decodeError{http.StatusBadRequest, "body is empty; send a JSON object"}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return &decodeError{http.StatusBadRequest, "body is truncated JSON"}
	case errors.As(err, &synErr):
		return &decodeError{http.StatusBadRequest, fmt.Sprintf("body is not JSON: %v (at byte %d)", synErr, synErr.Offset)}
	case errors.As(err, &typeErr) && typeErr.Field == "":
		return &decodeError{http.StatusBadRequest, "body must be a JSON object"}
	case errors.As(err, &typeErr):
		return &decodeError{http.StatusBadRequest, fmt.Sprintf("field %q must be a JSON %s", typeErr.Field, typeErr.Type)}
	default:
		return &decodeError{http.StatusBadRequest, fmt.Sprintf("body is not valid: %v", err)}
	}
}
