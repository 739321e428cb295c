// Package auth is the step that enforces a route's require_auth: a valid
// `Authorization: Bearer <JWT>` or `X-API-Key` (internal/auth decides),
// unless the clean path is under PUBLIC_PATHS. The caller's identity goes
// upstream as X-User-ID and X-Auth-Method (set by the proxy from
// request.Info; client copies were removed at the edge); the API key
// itself never does.
package auth

import (
	"log/slog"
	"net/http"

	authn "github.com/portcullis/portcullis/internal/auth"
	"github.com/portcullis/portcullis/internal/gwerror"
	"github.com/portcullis/portcullis/internal/request"
)

// New returns the step for one route: a pass-through when the route does
// not require auth. log gets a debug line per refusal (nil: none).
func New(v *authn.Verifier, requireAuth bool, log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if !requireAuth {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			in := request.From(r.Context())
			if v.Public(in.Path) {
				next.ServeHTTP(w, r)
				return
			}
			id, reason, err := v.Authenticate(r.Context(), r.Header.Get("Authorization"), r.Header.Get("X-Api-Key"))
			if reason != "" {
				if err != nil {
					in.Err = err
				}
				refuse(w, r, in, reason, log)
				return
			}
			// The key has done its job (and one riding along a JWT is not
			// the caller's): the upstream gets one identity, no key material.
			r.Header.Del("X-Api-Key")
			in.UserID, in.AuthMethod = id.User, id.Method
			next.ServeHTTP(w, r)
		})
	}
}

func refuse(w http.ResponseWriter, r *http.Request, in *request.Info, reason string, log *slog.Logger) {
	if reason == authn.ReasonStoreError {
		// Fail closed, but say it is us: key auth only is down.
		w.Header().Set("Retry-After", "5")
		gwerror.Write(w, r, http.StatusServiceUnavailable, "authentication temporarily unavailable")
		return
	}
	challenge := `Bearer realm="portcullis"`
	if reason != authn.ReasonMissing {
		challenge += `, error="invalid_token"`
	}
	w.Header().Set("WWW-Authenticate", challenge)
	msg := "authentication required"
	switch reason {
	case authn.ReasonExpired:
		msg = "token expired"
	case authn.ReasonInvalid:
		msg = "invalid credentials"
	case authn.ReasonRevoked:
		msg = "credentials revoked"
	}
	if log != nil {
		log.Debug("auth refused", "request_id", in.ID, "client_ip", in.ClientIPText, "reason", reason, "path", in.Path)
	}
	gwerror.Write(w, r, http.StatusUnauthorized, msg)
}
