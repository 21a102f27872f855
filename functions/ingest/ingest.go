package main

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/orderstream/orderstream/shared/broker"
	"github.com/orderstream/orderstream/shared/httpapi"
	"github.com/orderstream/orderstream/shared/order"
)

// outcome is what became of one message (the contract's "Order events from a
// queue").
type outcome int

const (
	accepted    outcome = iota // published, or a repeat of what was: done
	stale                      // a transition the rules refuse: done, retrying cannot help
	malformed                  // bad JSON, id, status or key: failed
	conflict                   // its key was used for another status: failed
	unavailable                // the broker could not take it: failed
	skipped                    // not tried (see stopReason): failed, so the queue retries it
)

func (o outcome) failed() bool { return o >= malformed }

// deadlineMargin is how long before the invocation's deadline the batch
// stops: what is not done by then is reported failed, and the answer still
// reaches Lambda before it would time the invocation out (a timeout makes
// SQS retry the whole batch, the done messages too).
const deadlineMargin = 2 * time.Second

// newHandler returns the function's handler: each message of a batch is
// published exactly as POST /orders/{id}/events with its Idempotency-Key
// would be (httpapi.Publish), in the batch's order, one after another, so that
// an order's statuses in one batch are published in the order sent. The
// messages that must be retried are reported in batchItemFailures (the
// event source mapping has ReportBatchItemFailures); the others are done.
func newHandler(logger *slog.Logger, b broker.Broker, m *metrics) func(context.Context, events.SQSEvent) (events.SQSEventResponse, error) {
	return func(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
		res := events.SQSEventResponse{BatchItemFailures: []events.SQSBatchItemFailure{}}
		if deadline, ok := ctx.Deadline(); ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, deadline.Add(-deadlineMargin))
			defer cancel()
		}
		fifo := isFIFO(ev.Records)
		var t tally
		stopReason := "" // set once the rest of the batch is not to be tried
		for _, msg := range ev.Records {
			o := skipped
			if stopReason == "" && ctx.Err() != nil {
				stopReason = "the invocation's deadline is near"
			}
			if stopReason == "" {
				o = handleMessage(ctx, logger, b, msg)
			}
			t.add(o)
			if !o.failed() {
				continue
			}
			res.BatchItemFailures = append(res.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: msg.MessageId})
			switch {
			case stopReason != "":
			case o == unavailable:
				// Each further try would wait for the same broker.
				stopReason = "the broker is unavailable"
			case fifo:
				// A later status must not overtake this one; SQS redelivers
				// them in order.
				stopReason = "a FIFO batch stops at its first failure"
			}
		}
		if t.skipped > 0 {
			logger.Warn("messages not tried, reported failed for the queue to retry",
				"count", t.skipped, "reason", stopReason, "batch", len(ev.Records))
		}
		m.record(t)
		return res, nil
	}
}

// handleMessage publishes one message and logs what is not plainly done.
func handleMessage(ctx context.Context, logger *slog.Logger, b broker.Broker, msg events.SQSMessage) outcome {
	log := logger.With("messageId", msg.MessageId)
	if n := msg.Attributes["ApproximateReceiveCount"]; n != "" && n != "1" {
		log = log.With("receiveCount", n)
	}
	in, err := parseMessage(msg.Body)
	if err == nil {
		log = log.With("orderId", in.OrderID)
		var ev broker.Event
		ev, err = httpapi.Publish(ctx, b, in)
		if err == nil {
			log.Debug("published", "eventId", ev.ID, "status", ev.Update.Status.String())
			return accepted
		}
	}
	var ie *httpapi.InputError
	var te *order.TransitionError
	var ke *broker.IdempotencyKeyError
	switch {
	case errors.As(err, &ie):
		log.Warn("malformed message: the queue retries it, then moves it to the dead-letter queue", "err", err)
		return malformed
	case errors.As(err, &te):
		log.Warn("stale message dropped: the order is past its status", "status", te.Requested.String(), "current", te.Current.String())
		return stale
	case errors.As(err, &ke):
		log.Warn("idempotency key reused for another status: the queue retries it, then moves it to the dead-letter queue", "err", err)
		return conflict
	default:
		log.Error("broker unavailable", "err", err)
		return unavailable
	}
}

// isFIFO tells a FIFO queue's batch by its queue's name, which ends in
// .fifo. (A group id does not tell: standard queues take them too, for
// fairness between groups, and keep no order.)
func isFIFO(msgs []events.SQSMessage) bool {
	for _, m := range msgs {
		if strings.HasSuffix(m.EventSourceARN, ".fifo") {
			return true
		}
	}
	return false
}
