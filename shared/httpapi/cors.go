package httpapi

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// cors lets browser pages on other origins call the API. It answers
// preflights itself, whatever the path, and puts its headers on every answer
// to an allowed origin before the handler runs, so that problems (404, 401,
// 429, 503) and streams carry them too: a page that can't read an error's
// status can't react to it.
type cors struct {
	any     bool            // "*": every origin, without credentials
	origins map[string]bool // exact origins, with credentials (cookies)
}

// Headers a cross-origin page may send (beyond the safelisted ones) and read.
const (
	corsAllowMethods = "GET, HEAD, POST"
	// X-Amz-Content-Sha256: pages send it on writes (a function URL behind
	// CloudFront takes a POST only with it); X-Orderstream-Authorization is
	// AuthHeader.
	corsAllowHeaders  = "Authorization, Content-Type, Last-Event-ID, Cache-Control, Idempotency-Key, X-Orderstream-Authorization, X-Amz-Content-Sha256"
	corsExposeHeaders = "Retry-After, WWW-Authenticate, Location"
	corsMaxAge        = "600"
)

// newCORS returns nil (no CORS at all) for an empty list.
func newCORS(origins []string) *cors {
	if len(origins) == 0 {
		return nil
	}
	c := &cors{origins: make(map[string]bool)}
	for _, o := range origins {
		if o == "*" {
			c.any = true
			continue
		}
		c.origins[strings.ToLower(o)] = true
	}
	return c
}

func (c *cors) wrap(next http.Handler) http.Handler {
	if c == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		// Answers differ by Origin: caches must keep them apart.
		h.Add("Vary", "Origin")
		origin := r.Header.Get("Origin")
		preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
		if origin == "" {
			next.ServeHTTP(w, r)
			return
		}
		credentials := c.origins[strings.ToLower(origin)]
		if !credentials && !c.any {
			if preflight {
				writeProblem(w, r, http.StatusForbidden, fmt.Sprintf("origin %q is not allowed to call this API", origin))
				return
			}
			// No CORS headers: the browser keeps the answer from the page.
			next.ServeHTTP(w, r)
			return
		}
		if credentials {
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Allow-Credentials", "true")
		} else {
			h.Set("Access-Control-Allow-Origin", "*")
		}
		if preflight {
			h.Add("Vary", "Access-Control-Request-Method")
			h.Add("Vary", "Access-Control-Request-Headers")
			h.Set("Access-Control-Allow-Methods", corsAllowMethods)
			h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
			h.Set("Access-Control-Max-Age", corsMaxAge)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		h.Set("Access-Control-Expose-Headers", corsExposeHeaders)
		next.ServeHTTP(w, r)
	})
}

// ParseOrigins reads a comma-separated list of origins as
// CORS_ALLOWED_ORIGINS holds them: "*" or scheme://host[:port], with no
// path, query or user. It returns them as browsers send them (lowercase).
func ParseOrigins(s string) ([]string, error) {
	var out []string
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if f == "*" {
			out = append(out, f)
			continue
		}
		u, err := url.Parse(f)
		if err != nil {
			return nil, fmt.Errorf("origin %q: %w", f, err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
			(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
			return nil, fmt.Errorf("origin %q: want scheme://host[:port], such as https://shop.example", f)
		}
		out = append(out, strings.ToLower(u.Scheme+"://"+u.Host))
	}
	return out, nil
}
