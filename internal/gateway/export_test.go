package gateway

import (
	"net/http"

	"github.com/portcullis/portcullis/internal/middleware"
)

func middlewareGlobal(g *Gateway, next http.Handler) (http.Handler, error) {
	return middleware.Global(g.deps(), next)
}

func middlewareOps(g *Gateway, next http.Handler) http.Handler { return middleware.Ops(g.deps(), next) }
