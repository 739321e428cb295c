package gateway

import (
	"net/http"

	"github.com/portcullis/portcullis/internal/middleware"
)

func middlewarePublic(g *Gateway) (http.Handler, error) { return middleware.Public(g.deps()) }

// middlewarePublicServing is the public chain with final as the only own
// endpoint, at path: the edge steps without a route or a proxy behind.
func middlewarePublicServing(g *Gateway, path string, final http.Handler) (http.Handler, error) {
	d := g.deps()
	d.Own = map[string]http.Handler{path: final}
	return middleware.Public(d)
}

func middlewareOps(g *Gateway, next http.Handler) http.Handler { return middleware.Ops(g.deps(), next) }
