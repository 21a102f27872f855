package httpapi

import (
	"log/slog"
	"net/http"

	"github.com/orderstream/orderstream/shared/broker"
)

// routeTable is what addRoutes fills: the server's mux, or a test's list
// (docs/openapi.yaml must document every route, TestOpenAPIListsEveryRoute).
type routeTable interface {
	Handle(pattern string, handler http.Handler)
}

// addRoutes is the whole API on one screen; docs/openapi.yaml documents it. Routes
// beyond the contract exist only when their setting is on. With auth nil
// (no key configured), publisher and subscriber let every request through.
func addRoutes(mux routeTable, logger *slog.Logger, b broker.Broker, cfg Config, m *metrics, limits *streamLimits, auth *authenticator) {
	mux.Handle("GET /{$}", handlePage())
	mux.Handle("GET /healthz", handleHealth(logger, b, m, cfg.ShuttingDown))
	mux.Handle("GET /orders/{id}", auth.subscriber(handleGetOrder(logger, b, m)))
	mux.Handle("GET /orders/{id}/stream", auth.subscriber(handleStream(logger, b, cfg, m, limits)))
	mux.Handle("POST /orders/{id}/events", auth.publisher(handlePublish(logger, b, m)))
	mux.Handle("POST /orders/{id}/simulate", auth.publisher(handleSimulate(logger, b, m)))
	mux.Handle("GET /openapi.yaml", handleOpenAPI())
	if m != nil {
		mux.Handle("GET /metrics", auth.metricsReader(m.handler()))
	}
}
