package gateway

import (
	"net/http"

	"github.com/portcullis/portcullis/internal/middleware"
)

// rebuildPipeline builds the request path again, after a test adjusted g.
func rebuildPipeline(g *Gateway) error {
	p, err := middleware.New(g.deps())
	if err != nil {
		return err
	}
	g.pipeline, g.handler = p, p.Public
	return nil
}

// middlewarePublicServing is the public chain with final as the only own
// endpoint, at path: the edge steps without a route or a proxy behind.
func middlewarePublicServing(g *Gateway, path string, final http.Handler) (http.Handler, error) {
	d := g.deps()
	d.Own = map[string]http.Handler{path: final}
	p, err := middleware.New(d)
	if err != nil {
		return nil, err
	}
	return p.Public, nil
}

func middlewareOps(g *Gateway, next http.Handler) http.Handler { return g.pipeline.Ops(next) }
