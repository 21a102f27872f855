package main

import (
	"testing"

	"github.com/orderstream/orderstream/functions/internal/samtemplate"
)

// TestTemplateDefaultsAreTheFunctions: what template.yaml gives the stream
// function under default parameters is what the function takes with
// nothing set (the settings table's defaults and its own 5m cap), but for
// the choices the template makes on purpose.
func TestTemplateDefaultsAreTheFunctions(t *testing.T) {
	samtemplate.CheckDefaults(t, "../../template.yaml",
		[]string{"StreamFunction", "VpcStreamFunction"},
		[]string{"HEARTBEAT_INTERVAL", "RETRY_INTERVAL", "ORDER_RETENTION", "REDIS_KEY_PREFIX", "REDIS_CLUSTER", "REDIS_WAIT_REPLICAS", "MAX_STREAM_DURATION"},
		map[string]map[string]string{
			"StreamFunction": {
				"FLUSH_PADDING": "function URLs are reported to hold small chunks back: the template pads by default (functions/README.md)",
			},
			"VpcStreamFunction": {
				"CORS_ALLOWED_ORIGINS": "AllowedOrigins is also the function URL's and the HTTP API's CORS; a REST API proxy has none of its own, so the core answers for it",
			},
		},
		maxStreamDuration)
}
