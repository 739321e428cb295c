// Package route is the routing step: it cleans the path, matches it to a
// route of the table in force (longest prefix on segment boundaries) and
// hands the request to that route's own chain. It is the last global step:
// what follows is per route.
package route

import (
	"context"
	"net"
	"net/http"

	"github.com/portcullis/portcullis/internal/gwerror"
	"github.com/portcullis/portcullis/internal/request"
	"github.com/portcullis/portcullis/internal/router"
	"github.com/portcullis/portcullis/internal/routetable"
)

// Tunnel wraps the client side of an upgraded connection; cancel ends the
// request, which makes the proxy close the backend's side too.
type Tunnel func(c net.Conn, cancel func()) net.Conn

// New returns the step over the table in force. tunnel, when set, wraps
// every connection a route upgrades (WebSocket), so the gateway can close
// idle tunnels and say goodbye to them at shutdown.
func New(table *routetable.Holder, tunnel Tunnel) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in := request.From(r.Context())
		clean, err := router.CleanPath(r.URL.EscapedPath())
		if err != nil {
			in.Err = err
			gwerror.Write(w, r, http.StatusBadRequest, "bad request path")
			return
		}
		in.Path = clean
		e, ok := table.Load().Table.Match(clean)
		if !ok {
			gwerror.Write(w, r, http.StatusNotFound, "no route")
			return
		}
		rt := e.Value
		in.Endpoint = rt.Config.Prefix
		if tunnel != nil && len(r.Header["Upgrade"]) > 0 {
			ctx, cancel := context.WithCancel(r.Context())
			defer cancel()
			r = r.WithContext(ctx)
			in.OnHijack(func(c net.Conn) net.Conn { return tunnel(c, cancel) })
		}
		rt.Handler.ServeHTTP(w, r)
	})
}
