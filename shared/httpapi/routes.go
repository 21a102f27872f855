package httpapi

import (
	"log/slog"
	"net/http"

	"github.com/orderstream/orderstream/shared/broker"
)

// addRoutes is the whole API on one screen; see shared/CONTRACT.md.
func addRoutes(mux *http.ServeMux, logger *slog.Logger, b broker.Broker, cfg Config) {
	mux.Handle("GET /{$}", handlePage())
	mux.Handle("GET /healthz", handleHealth(logger, b))
	mux.Handle("GET /orders/{id}", handleGetOrder(logger, b))
	mux.Handle("GET /orders/{id}/stream", handleStream(logger, b, cfg))
	mux.Handle("POST /orders/{id}/events", handlePublish(logger, b))
	mux.Handle("POST /orders/{id}/simulate", handleSimulate(logger, b))
}
