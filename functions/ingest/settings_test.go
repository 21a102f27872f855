package main

import (
	"testing"

	"github.com/orderstream/orderstream/functions/internal/samtemplate"
)

// TestTemplateDefaultsAreTheFunctions: what template.yaml gives the ingest
// function (when Ingest is on) under every other parameter's default is
// what the function takes with nothing set: the settings table's defaults
// (it has none of its own). Its broker settings are the ones that count:
// it must write where the stream functions read. It gets no AUTH_* key
// (the template sets them to nothing: it checks no token), which
// samtemplate's TestTemplateIngest checks through the SAM transform.
func TestTemplateDefaultsAreTheFunctions(t *testing.T) {
	samtemplate.CheckDefaults(t, "../../template.yaml",
		[]string{"IngestFunction"},
		[]string{"HEARTBEAT_INTERVAL", "RETRY_INTERVAL", "ORDER_RETENTION", "REDIS_KEY_PREFIX", "REDIS_CLUSTER", "REDIS_WAIT_REPLICAS"},
		nil)
}
