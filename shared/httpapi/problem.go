package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/orderstream/orderstream/shared/broker"
	"github.com/orderstream/orderstream/shared/order"
)

// problem is an RFC 9457 problem details body.
type problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail"`
	Instance string `json:"instance,omitempty"`
	// CurrentStatus names where the order stands when a transition is refused.
	CurrentStatus string `json:"currentStatus,omitempty"`
}

// retryAfterSeconds is what a client is told to wait when the broker is down.
const retryAfterSeconds = 3

// writeProblem answers with a problem+json error. It never fails the request
// further: a client that is gone simply doesn't read it.
func writeProblem(w http.ResponseWriter, r *http.Request, status int, detail string) {
	writeProblemBody(w, problem{Status: status, Detail: detail, Instance: r.URL.Path})
}

func writeProblemBody(w http.ResponseWriter, p problem) {
	if p.Type == "" {
		p.Type = "about:blank"
	}
	if p.Title == "" {
		p.Title = http.StatusText(p.Status)
	}
	if p.Status == http.StatusServiceUnavailable || p.Status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds))
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Del("Content-Length")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

// writeBrokerError turns what a broker said into the contract's answer:
// refusals are the client's business (409, 422, 404); anything else means the
// broker can't serve now (503 with Retry-After, counted under op), never a
// 500, since nothing the client sent caused it.
func writeBrokerError(logger *slog.Logger, m *metrics, op string, w http.ResponseWriter, r *http.Request, err error) {
	var te *order.TransitionError
	var ke *broker.IdempotencyKeyError
	switch {
	case errors.As(err, &ke):
		writeProblem(w, r, http.StatusUnprocessableEntity, fmt.Sprintf("header %s: %v", idempotencyKeyHeader, ke))
	case errors.As(err, &te):
		writeProblemBody(w, problem{
			Status:        http.StatusConflict,
			Detail:        te.Error(),
			Instance:      r.URL.Path,
			CurrentStatus: te.Current.String(),
		})
	case errors.Is(err, broker.ErrNotFound):
		writeProblem(w, r, http.StatusNotFound, "no such order: it has no events (yet, or any more)")
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		// The client left; nobody reads the answer.
		w.WriteHeader(statusClientClosedRequest)
	default:
		logger.Warn("broker unavailable", "method", r.Method, "path", r.URL.Path, "err", err)
		m.brokerError(op)
		writeProblem(w, r, http.StatusServiceUnavailable, "the event broker is unavailable; try again shortly")
	}
}

// statusClientClosedRequest is logged for requests whose client went away
// (nginx's convention); the client never sees it.
const statusClientClosedRequest = 499
