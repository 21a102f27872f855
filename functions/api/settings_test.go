package main

import (
	"testing"

	"github.com/orderstream/orderstream/functions/internal/samtemplate"
)

// TestTemplateDefaultsAreTheFunctions: what template.yaml gives the api
// function under default parameters is what the function takes with
// nothing set: the settings table's defaults (it has none of its own).
func TestTemplateDefaultsAreTheFunctions(t *testing.T) {
	samtemplate.CheckDefaults(t, "../../template.yaml",
		[]string{"ApiFunction"},
		[]string{"HEARTBEAT_INTERVAL", "RETRY_INTERVAL", "ORDER_RETENTION", "REDIS_KEY_PREFIX", "REDIS_CLUSTER", "REDIS_WAIT_REPLICAS"},
		nil)
}
