// Package auth enforces a route's require_auth (the auth step of
// docs/request-path.md): a valid `Authorization: Bearer <JWT>` or
// `X-API-Key`, unless the clean path is under PUBLIC_PATHS. The caller's
// identity goes upstream as X-User-ID and X-Auth-Method (set by the proxy from
// request.Info; client copies were removed at the edge).
package auth

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/internal/gwerror"
	"github.com/portcullis/portcullis/internal/request"
	"github.com/portcullis/portcullis/internal/telemetry"
)

// Failure reasons, the values of auth_failures_total{reason}.
const (
	ReasonMissing    = "missing"
	ReasonInvalid    = "invalid"
	ReasonExpired    = "expired"
	ReasonRevoked    = "revoked"
	ReasonStoreError = "store_error"
)

// Methods, the values of X-Auth-Method.
const (
	MethodJWT    = "jwt"
	MethodAPIKey = "api-key"
)

// TokenVerifier checks a bearer token. reason is ReasonInvalid or
// ReasonExpired when err is not nil.
type TokenVerifier interface {
	Enabled() bool
	VerifySubject(token string) (subject, reason string, err error)
}

// KeyLookup finds the name behind an API key.
type KeyLookup interface {
	Enabled() bool
	LookupName(ctx context.Context, key string) (name string, err error)
}

// Key lookup outcomes KeyLookup implementations return (wrapped or as is).
var (
	ErrKeyRevoked = errors.New("revoked API key")
	ErrKeyStore   = errors.New("API key store unavailable")
)

// Verifier is what every route's auth step uses.
type Verifier struct {
	tokens   TokenVerifier
	keys     KeyLookup
	public   []string
	log      *slog.Logger
	failures *prometheus.CounterVec
}

// NewVerifier builds the shared state. tokens or keys may be nil (that method
// is off). publicPaths are clean-path prefixes (PUBLIC_PATHS).
func NewVerifier(tokens TokenVerifier, keys KeyLookup, publicPaths []string, log *slog.Logger, reg prometheus.Registerer) (*Verifier, error) {
	s := &Verifier{tokens: tokens, keys: keys, public: publicPaths, log: log}
	s.failures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "auth_failures_total",
		Help: "Requests refused by authentication, by reason (missing, invalid, expired, revoked, store_error).",
	}, []string{"reason"})
	var err error
	if s.failures, err = telemetry.Register(reg, s.failures); err != nil {
		return nil, err
	}
	for _, r := range []string{ReasonMissing, ReasonInvalid, ReasonExpired, ReasonRevoked, ReasonStoreError} {
		s.failures.WithLabelValues(r)
	}
	return s, nil
}

// Public reports whether a clean path is under PUBLIC_PATHS, on a segment
// boundary (/health covers /health and /health/x, not /healthz).
func (s *Verifier) Public(path string) bool {
	for _, p := range s.public {
		if p == "/" || path == p || (strings.HasPrefix(path, p) && path[len(p)] == '/') {
			return true
		}
	}
	return false
}

// New returns the step for one route: a pass-through when the route does not
// require auth.
func New(s *Verifier, requireAuth bool) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if !requireAuth {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			in := request.From(r.Context())
			if s.Public(in.Path) {
				next.ServeHTTP(w, r)
				return
			}
			if reason, status := s.authenticate(r, in); reason != "" {
				s.failures.WithLabelValues(reason).Inc()
				s.refuse(w, r, in, reason, status)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// authenticate fills in.UserID and in.AuthMethod, or returns why not.
func (s *Verifier) authenticate(r *http.Request, in *request.Info) (reason string, status int) {
	if authz := r.Header.Get("Authorization"); authz != "" {
		token, ok := bearer(authz)
		if !ok || s.tokens == nil || !s.tokens.Enabled() {
			return ReasonInvalid, http.StatusUnauthorized
		}
		sub, why, err := s.tokens.VerifySubject(token)
		if err != nil {
			in.Err = err
			return why, http.StatusUnauthorized
		}
		// An API key riding along is not forwarded either: the upstream gets
		// one identity, and no key material.
		r.Header.Del("X-Api-Key")
		in.UserID, in.AuthMethod = sub, MethodJWT
		return "", 0
	}
	if key := r.Header.Get("X-Api-Key"); key != "" {
		if s.keys == nil || !s.keys.Enabled() {
			return ReasonInvalid, http.StatusUnauthorized
		}
		name, err := s.keys.LookupName(r.Context(), key)
		switch {
		case errors.Is(err, ErrKeyStore):
			// Fail closed, but say it is us: key auth only is down.
			in.Err = err
			return ReasonStoreError, http.StatusServiceUnavailable
		case errors.Is(err, ErrKeyRevoked):
			return ReasonRevoked, http.StatusUnauthorized
		case err != nil:
			return ReasonInvalid, http.StatusUnauthorized
		}
		// The key has done its job; the upstream gets the identity, not the
		// secret.
		r.Header.Del("X-Api-Key")
		in.UserID, in.AuthMethod = name, MethodAPIKey
		return "", 0
	}
	return ReasonMissing, http.StatusUnauthorized
}

// bearer extracts the token of an "Authorization: Bearer <token>" header
// (scheme case-insensitive, RFC 9110 §11.1).
func bearer(v string) (string, bool) {
	const scheme = "bearer "
	if len(v) <= len(scheme) || !strings.EqualFold(v[:len(scheme)], scheme) {
		return "", false
	}
	t := strings.TrimSpace(v[len(scheme):])
	return t, t != ""
}

func (s *Verifier) refuse(w http.ResponseWriter, r *http.Request, in *request.Info, reason string, status int) {
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "5")
		gwerror.Write(w, r, status, "authentication temporarily unavailable")
		return
	}
	challenge := `Bearer realm="portcullis"`
	if reason != ReasonMissing {
		challenge += `, error="invalid_token"`
	}
	w.Header().Set("WWW-Authenticate", challenge)
	msg := "authentication required"
	switch reason {
	case ReasonExpired:
		msg = "token expired"
	case ReasonInvalid:
		msg = "invalid credentials"
	case ReasonRevoked:
		msg = "credentials revoked"
	}
	if s.log != nil {
		s.log.Debug("auth refused", "request_id", in.ID, "client_ip", in.ClientIPText, "reason", reason, "path", in.Path)
	}
	gwerror.Write(w, r, status, msg)
}
