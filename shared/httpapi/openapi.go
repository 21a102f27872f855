package httpapi

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/orderstream/orderstream/docs"
)

// handleOpenAPI serves the API reference this server was built with, so
// that tools (client generators, API explorers) read the one that matches
// the deployment. It changes only with a new build: clients revalidate
// (no-cache) with the ETag and get 304 while it is the same.
func handleOpenAPI() http.Handler {
	sum := sha256.Sum256([]byte(docs.OpenAPI))
	etag := `"` + hex.EncodeToString(sum[:16]) + `"`
	size := strconv.Itoa(len(docs.OpenAPI))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("ETag", etag)
		h.Set("Cache-Control", "no-cache")
		if etagMatches(r.Header.Values("If-None-Match"), etag) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		h.Set("Content-Type", "application/yaml")
		h.Set("Content-Length", size)
		h.Set("X-Content-Type-Options", "nosniff")
		_, _ = io.WriteString(w, docs.OpenAPI)
	})
}

// etagMatches reports whether an If-None-Match list names etag (weakly,
// as RFC 9110 compares for If-None-Match) or is "*".
func etagMatches(lists []string, etag string) bool {
	for _, list := range lists {
		for _, t := range strings.Split(list, ",") {
			t = strings.TrimSpace(t)
			if t == "*" || strings.TrimPrefix(t, "W/") == etag {
				return true
			}
		}
	}
	return false
}
