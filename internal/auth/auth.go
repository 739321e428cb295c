// Package auth decides who a request's caller is, from the credentials it
// carried: a bearer JWT (jwtauth) or an API key (apikey), and whether a
// clean path is public (PUBLIC_PATHS). It counts refusals by reason in
// auth_failures_total. The step that enforces a route's require_auth is
// internal/middleware/auth; Build assembles the verifiers from the
// configuration.
package auth

import (
	"context"
	"errors"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

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

// Identity is who a request's caller is.
type Identity struct {
	User   string // the JWT's sub, or the key's name
	Method string // MethodJWT or MethodAPIKey
}

// Verifier is what every route's auth step uses.
type Verifier struct {
	tokens   TokenVerifier
	keys     KeyLookup
	public   []string
	failures *prometheus.CounterVec
}

// NewVerifier builds the verifier. tokens or keys may be nil (that method
// is off). publicPaths are clean-path prefixes (PUBLIC_PATHS).
func NewVerifier(tokens TokenVerifier, keys KeyLookup, publicPaths []string, reg prometheus.Registerer) (*Verifier, error) {
	v := &Verifier{tokens: tokens, keys: keys, public: publicPaths}
	v.failures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "auth_failures_total",
		Help: "Requests refused by authentication, by reason (missing, invalid, expired, revoked, store_error).",
	}, []string{"reason"})
	var err error
	if v.failures, err = telemetry.Register(reg, v.failures); err != nil {
		return nil, err
	}
	for _, r := range []string{ReasonMissing, ReasonInvalid, ReasonExpired, ReasonRevoked, ReasonStoreError} {
		v.failures.WithLabelValues(r)
	}
	return v, nil
}

// Enabled reports whether any method is on (a JWT secret or JWKS, or an
// API key source): without one, no request can pass a route that requires
// auth.
func (v *Verifier) Enabled() bool {
	return (v.tokens != nil && v.tokens.Enabled()) || (v.keys != nil && v.keys.Enabled())
}

// Public reports whether a clean path is under PUBLIC_PATHS, on a segment
// boundary (/health covers /health and /health/x, not /healthz).
func (v *Verifier) Public(path string) bool {
	for _, p := range v.public {
		if p == "/" || path == p || (strings.HasPrefix(path, p) && path[len(p)] == '/') {
			return true
		}
	}
	return false
}

// Authenticate checks the credentials a request carried: its Authorization
// header (a bearer JWT wins when present, and a bad one is not rescued by a
// key) and its X-API-Key. On failure it returns the reason, counted in
// auth_failures_total, and the cause when there is one worth logging.
func (v *Verifier) Authenticate(ctx context.Context, authorization, apiKey string) (Identity, string, error) {
	id, reason, err := v.authenticate(ctx, authorization, apiKey)
	if reason != "" {
		v.failures.WithLabelValues(reason).Inc()
	}
	return id, reason, err
}

func (v *Verifier) authenticate(ctx context.Context, authorization, apiKey string) (Identity, string, error) {
	if authorization != "" {
		token, ok := bearer(authorization)
		if !ok || v.tokens == nil || !v.tokens.Enabled() {
			return Identity{}, ReasonInvalid, nil
		}
		sub, why, err := v.tokens.VerifySubject(token)
		if err != nil {
			return Identity{}, why, err
		}
		return Identity{User: sub, Method: MethodJWT}, "", nil
	}
	if apiKey != "" {
		if v.keys == nil || !v.keys.Enabled() {
			return Identity{}, ReasonInvalid, nil
		}
		name, err := v.keys.LookupName(ctx, apiKey)
		switch {
		case errors.Is(err, ErrKeyStore):
			return Identity{}, ReasonStoreError, err
		case errors.Is(err, ErrKeyRevoked):
			return Identity{}, ReasonRevoked, nil
		case err != nil:
			return Identity{}, ReasonInvalid, nil
		}
		return Identity{User: name, Method: MethodAPIKey}, "", nil
	}
	return Identity{}, ReasonMissing, nil
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
