package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/orderstream/orderstream/shared/broker"
	"github.com/orderstream/orderstream/shared/order"
)

// orderID reads the {id} path segment, answering 400 itself when it is bad.
func orderID(w http.ResponseWriter, r *http.Request) (uuid.UUID, bool) {
	id, err := order.ParseID(r.PathValue("id"))
	if err != nil {
		writeProblem(w, r, http.StatusBadRequest, err.Error())
		return uuid.Nil, false
	}
	return id, true
}

// publishRequest is the body of POST /orders/{id}/events.
type publishRequest struct {
	Status *string `json:"status"`
}

func handlePublish(logger *slog.Logger, b broker.Broker, m *metrics) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A bad id is answered before the body is read.
		id, ok := orderID(w, r)
		if !ok {
			return
		}
		var req publishRequest
		if derr := decode(w, r, &req); derr != nil {
			writeProblem(w, r, derr.status, derr.detail)
			return
		}
		key, ok := idempotencyKey(w, r)
		if !ok {
			return
		}
		ev, err := Publish(r.Context(), b, PublishInput{OrderID: id.String(), Status: req.Status, IdempotencyKey: key})
		var ie *InputError
		switch {
		case errors.As(err, &ie):
			writeProblem(w, r, http.StatusBadRequest, inputProblem(ie))
			return
		case err != nil:
			writeBrokerError(logger, m, "publish", w, r, err)
			return
		}
		m.eventPublished()
		w.Header().Set("Location", "/orders/"+id.String())
		writeJSON(w, http.StatusCreated, []byte(ev.Data))
	})
}

// inputProblem says what is wrong with a publish in the request's own terms.
func inputProblem(ie *InputError) string {
	switch ie.Field {
	case "idempotencyKey":
		return fmt.Sprintf("header %s: %v", idempotencyKeyHeader, ie.Err)
	case "orderId":
		return ie.Err.Error()
	default:
		return ie.Field + " " + ie.Err.Error()
	}
}

// idempotencyKeyHeader lets a publisher retry safely (CONTRACT.md, Endpoints).
const idempotencyKeyHeader = "Idempotency-Key"

// idempotencyKey reads the Idempotency-Key header, "" if there is none,
// answering 400 itself when it is repeated (two keys would make the request
// mean two things). Publish checks the key itself.
func idempotencyKey(w http.ResponseWriter, r *http.Request) (string, bool) {
	vals := r.Header.Values(idempotencyKeyHeader)
	switch {
	case len(vals) == 0:
		return "", true
	case len(vals) > 1:
		writeProblem(w, r, http.StatusBadRequest, fmt.Sprintf("header %s is repeated: send one key", idempotencyKeyHeader))
		return "", false
	case vals[0] == "":
		// An empty header is a key that is malformed, not one that is absent.
		writeProblem(w, r, http.StatusBadRequest, fmt.Sprintf("header %s: %v", idempotencyKeyHeader, broker.CheckIdempotencyKey("")))
		return "", false
	}
	return vals[0], true
}

func handleGetOrder(logger *slog.Logger, b broker.Broker, m *metrics) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := orderID(w, r)
		if !ok {
			return
		}
		ev, err := b.Latest(r.Context(), id)
		if err != nil {
			writeBrokerError(logger, m, "latest", w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, []byte(ev.Data))
	})
}

// healthTimeout keeps /healthz inside the contract's 3 s to report a lost broker.
const healthTimeout = 2500 * time.Millisecond

func handleHealth(logger *slog.Logger, b broker.Broker, m *metrics, shuttingDown func() bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if shuttingDown != nil && shuttingDown() {
			// Shutting down: the balancer should send new work elsewhere,
			// while what is open here still gets served.
			writeProblem(w, r, http.StatusServiceUnavailable, "this instance is shutting down")
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), healthTimeout)
		defer cancel()
		if err := b.Ping(ctx); err != nil {
			logger.Warn("health check failed", "err", err)
			m.brokerError("ping")
			writeProblem(w, r, http.StatusServiceUnavailable, "the event broker is unreachable")
			return
		}
		writeJSON(w, http.StatusOK, []byte(`{"status":"ok"}`+"\n"))
	})
}

const (
	defaultSimulateInterval = 2 * time.Second
	maxSimulateInterval     = 10 * time.Second
)

func handleSimulate(logger *slog.Logger, b broker.Broker, m *metrics) http.Handler {
	type response struct {
		OrderID   string `json:"orderId"`
		Published int    `json:"published"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := orderID(w, r)
		if !ok {
			return
		}
		interval := defaultSimulateInterval
		if q := r.URL.Query(); q.Has("interval") {
			d, err := time.ParseDuration(q.Get("interval"))
			if err != nil || d < 0 || d > maxSimulateInterval {
				writeProblem(w, r, http.StatusBadRequest,
					fmt.Sprintf("interval %q must be a Go duration from 0s to %v", q.Get("interval"), maxSimulateInterval))
				return
			}
			interval = d
		}
		// The answer comes only when the simulation is done: lift the
		// server-wide write deadline for as long as it can take.
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(7*interval + 30*time.Second))
		n, err := simulate(r.Context(), b, id, interval, m.eventPublished)
		if err != nil {
			writeBrokerError(logger, m, "simulate", w, r, err)
			return
		}
		encodeJSON(w, http.StatusOK, response{OrderID: id.String(), Published: n})
	})
}

// simulate publishes every status from the order's next one through
// Delivered, the first at once and then one per interval. Another publisher
// may move the order meanwhile: each step starts from the order's status at
// that moment, and a refused step (someone got there first) is retried from
// the new status. It calls onPublish after each of its events and returns
// how many it published itself.
func simulate(ctx context.Context, b broker.Broker, id uuid.UUID, interval time.Duration, onPublish func()) (int, error) {
	published := 0
	var wait <-chan time.Time // nil: the first step goes at once
	for {
		if wait != nil {
			select {
			case <-ctx.Done():
				return published, ctx.Err()
			case <-wait:
			}
		}
		var current order.Status
		latest, err := b.Latest(ctx, id)
		switch {
		case err == nil:
			current = latest.Update.Status
		case !errors.Is(err, broker.ErrNotFound):
			return published, err
		}
		next, ok := current.Next()
		if !ok {
			if published == 0 {
				return 0, &order.TransitionError{Current: current, Requested: order.Delivered}
			}
			return published, nil // someone else finished it
		}
		_, err = b.Publish(ctx, id, broker.PublishRequest{Status: next})
		var te *order.TransitionError
		switch {
		case errors.As(err, &te):
			wait = nil // moved under us: go on at once from where it is now
			continue
		case err != nil:
			return published, err
		}
		published++
		onPublish()
		if next == order.Delivered {
			return published, nil
		}
		wait = time.After(interval)
	}
}
