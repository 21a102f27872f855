// Package docs holds the API reference, openapi.yaml, so that the server
// can serve the very document it was built with and the tests can hold the
// server to it (docs/openapitest).
package docs

import _ "embed"

// OpenAPI is openapi.yaml: the API reference, OpenAPI 3.1.
//
//go:embed openapi.yaml
var OpenAPI string
