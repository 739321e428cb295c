// Package jwtauth verifies bearer JWTs: HS256 with JWT_SECRET and
// RS256/ES256/EdDSA against a JWKS (JWT_JWKS_URL), algorithms pinned per key type.
package jwtauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Failure reasons, the values of auth_failures_total{reason} this package
// produces (the caller adds "missing" when no token was sent at all).
const (
	ReasonMissing = "missing"
	ReasonInvalid = "invalid"
	ReasonExpired = "expired"
)

// Limits and defaults.
const (
	// MaxTokenBytes caps a token before any parsing (CVE-2025-30204 shape:
	// allocation driven by attacker-sized input).
	MaxTokenBytes = 8 << 10
	// MaxSubjectBytes caps `sub`, which goes upstream as X-User-ID.
	MaxSubjectBytes = 256

	DefaultLeeway               = 30 * time.Second
	DefaultRefreshInterval      = 5 * time.Minute
	DefaultUnknownKIDRefreshMin = time.Minute
	DefaultHTTPTimeout          = 5 * time.Second
)

// Errors Verify wraps; for logs (at debug) and tests, never for clients.
var (
	ErrDisabled      = errors.New("no JWT key source configured")
	ErrTokenTooLarge = errors.New("token larger than 8 KiB")
	ErrBadSubject    = errors.New("sub must be 1-256 bytes of printable ASCII without commas or surrounding spaces")
	ErrNoKey         = errors.New("no key for this token")
	ErrCritHeader    = errors.New("token carries a crit header")
)

// Options configures a Verifier. Zero values take the documented defaults.
type Options struct {
	// Secret is JWT_SECRET. Empty: HS256 tokens are refused.
	Secret []byte
	// Issuer is JWT_ISSUER; when set, iss must equal it.
	Issuer string
	// Audience is JWT_AUDIENCE; when set, aud must contain it.
	Audience string
	// JWKSURL is JWT_JWKS_URL; when set, RS256 (RSA keys ≥ 2048 bits), ES256
	// (P-256 keys) and EdDSA (Ed25519 keys) tokens are verified against it.
	JWKSURL string
	// Leeway is the clock skew allowed for exp/nbf/iat; default 30s.
	Leeway time.Duration
	// RefreshInterval is the JWKS background refresh period; default 5m.
	// While the JWKS cannot be fetched, retries back off from 1s up to it.
	RefreshInterval time.Duration
	// UnknownKIDRefreshMin spaces the fetches caused by tokens whose key is
	// unknown (at most one per interval, so random kids cannot hammer the JWKS
	// host); default 1m.
	UnknownKIDRefreshMin time.Duration
	// HTTPClient fetches the JWKS; default a client with a 5s timeout.
	HTTPClient *http.Client
	// Log is the base logger (component "auth" is added); nil discards.
	Log *slog.Logger
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// Claims is the verified identity of a token.
type Claims struct {
	Subject   string // sub: 1–256 bytes of printable ASCII, safe as a header value
	Issuer    string
	Audience  []string
	Expires   time.Time
	IssuedAt  time.Time // zero when absent
	NotBefore time.Time // zero when absent
	ID        string    // jti
	Algorithm string    // HS256, RS256, ES256 or EdDSA
	KeyID     string    // kid header, when present
}

// Verifier verifies bearer tokens. Safe for concurrent use.
type Verifier struct {
	secret  []byte
	jwks    *jwks // nil without JWT_JWKS_URL
	parser  *jwt.Parser
	keyfunc jwt.Keyfunc
	log     *slog.Logger
}

// New builds a Verifier. With a JWKS URL it fetches the set once (bounded by
// the HTTP client's timeout) and refreshes it in the background until ctx
// ends; a JWKS host that is down does not fail New: a warning is logged,
// fetching is retried, and JWKS-signed tokens are invalid until keys arrive.
func New(ctx context.Context, o Options) (*Verifier, error) {
	var problems []error
	if o.Leeway < 0 {
		problems = append(problems, fmt.Errorf("leeway %s: must not be negative", o.Leeway))
	}
	if o.RefreshInterval < 0 {
		problems = append(problems, fmt.Errorf("JWKS refresh interval %s: must not be negative", o.RefreshInterval))
	}
	if o.UnknownKIDRefreshMin < 0 {
		problems = append(problems, fmt.Errorf("JWKS unknown-kid refresh interval %s: must not be negative", o.UnknownKIDRefreshMin))
	}
	var jwksURL *url.URL
	if o.JWKSURL != "" {
		u, err := url.Parse(o.JWKSURL)
		switch {
		case err != nil:
			problems = append(problems, fmt.Errorf("JWT_JWKS_URL %q: %w", o.JWKSURL, err))
		case (u.Scheme != "https" && u.Scheme != "http") || u.Host == "":
			problems = append(problems, fmt.Errorf("JWT_JWKS_URL %q: want an absolute http(s) URL", o.JWKSURL))
		default:
			jwksURL = u
		}
	}
	if err := errors.Join(problems...); err != nil {
		return nil, err
	}

	if o.Leeway == 0 {
		o.Leeway = DefaultLeeway
	}
	if o.RefreshInterval == 0 {
		o.RefreshInterval = DefaultRefreshInterval
	}
	if o.UnknownKIDRefreshMin == 0 {
		o.UnknownKIDRefreshMin = DefaultUnknownKIDRefreshMin
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: DefaultHTTPTimeout}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "auth")

	v := &Verifier{secret: append([]byte(nil), o.Secret...), log: log}
	var methods []string
	if len(v.secret) > 0 {
		methods = append(methods, jwt.SigningMethodHS256.Alg())
	}
	if jwksURL != nil {
		methods = append(methods, jwt.SigningMethodRS256.Alg(), jwt.SigningMethodES256.Alg(), jwt.SigningMethodEdDSA.Alg())
	}
	if len(methods) == 0 {
		// Nothing is ever accepted; an empty non-nil list makes the parser
		// refuse every alg should Verify's guard ever be bypassed.
		methods = []string{}
	}
	popts := []jwt.ParserOption{
		jwt.WithValidMethods(methods),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(o.Leeway),
		jwt.WithIssuedAt(),
		jwt.WithTimeFunc(o.Now),
	}
	if o.Issuer != "" {
		popts = append(popts, jwt.WithIssuer(o.Issuer))
	}
	if o.Audience != "" {
		popts = append(popts, jwt.WithAudience(o.Audience))
	}
	v.parser = jwt.NewParser(popts...)
	v.keyfunc = v.key

	if jwksURL != nil {
		v.jwks = newJWKS(ctx, jwksURL.String(), o, log)
		v.jwks.start()
	}
	return v, nil
}

// Enabled reports whether any key source (secret or JWKS) is configured.
// A disabled Verifier refuses every token.
func (v *Verifier) Enabled() bool { return len(v.secret) > 0 || v.jwks != nil }

// Verify checks token (the part after "Bearer "). On failure reason is
// ReasonExpired for a genuinely signed token whose only fault is exp, and
// ReasonInvalid for everything else; err says why, for debug logs only —
// never send it to the client.
func (v *Verifier) Verify(token string) (Claims, string, error) {
	if len(token) > MaxTokenBytes {
		return Claims{}, ReasonInvalid, ErrTokenTooLarge
	}
	if !v.Enabled() {
		return Claims{}, ReasonInvalid, ErrDisabled
	}
	var rc claimSet
	tok, err := v.parser.ParseWithClaims(token, &rc, v.keyfunc)
	if err != nil {
		if onlyExpired(err) {
			return Claims{}, ReasonExpired, err
		}
		return Claims{}, ReasonInvalid, err
	}
	if !validSubject(rc.Subject) {
		return Claims{}, ReasonInvalid, ErrBadSubject
	}
	c := Claims{
		Subject:   rc.Subject,
		Issuer:    rc.Issuer,
		Audience:  rc.Audience,
		ID:        rc.ID,
		Algorithm: tok.Method.Alg(),
	}
	c.KeyID, _ = tok.Header["kid"].(string)
	if rc.ExpiresAt != nil {
		c.Expires = rc.ExpiresAt.Time
	}
	if rc.IssuedAt != nil {
		c.IssuedAt = rc.IssuedAt.Time
	}
	if rc.NotBefore != nil {
		c.NotBefore = rc.NotBefore.Time
	}
	return c, "", nil
}

// VerifySubject is Verify reduced to the subject, for callers that only
// forward the identity (middleware/auth's TokenVerifier).
func (v *Verifier) VerifySubject(token string) (subject, reason string, err error) {
	c, reason, err := v.Verify(token)
	return c.Subject, reason, err
}

// key is the jwt.Keyfunc. The parser has already checked alg against the
// enabled list; here each alg gets only keys of its own type (RFC 8725 §3.1):
// the HMAC secret only for HS256, never a JWKS key, and JWKS keys only for
// the asymmetric algs whose key type (and JWK "alg", when set) match.
func (v *Verifier) key(t *jwt.Token) (any, error) {
	// We implement no JWS extension, so a critical one must be refused
	// (RFC 7515 §4.1.11); this also covers b64=false (RFC 7797).
	if _, ok := t.Header["crit"]; ok {
		return nil, ErrCritHeader
	}
	alg := t.Method.Alg()
	if alg == jwt.SigningMethodHS256.Alg() {
		if len(v.secret) == 0 {
			return nil, ErrNoKey
		}
		return v.secret, nil
	}
	if v.jwks == nil {
		return nil, ErrNoKey
	}
	kid, hasKID := "", false
	if raw, ok := t.Header["kid"]; ok {
		s, ok := raw.(string)
		if !ok || s == "" || len(s) > maxKIDBytes {
			return nil, fmt.Errorf("%w: unusable kid header", ErrNoKey)
		}
		kid, hasKID = s, true
	}
	return v.jwks.lookup(alg, kid, hasKID)
}

// usable reports whether k may verify alg. The parser's own Verify would
// refuse a wrong Go type, but not an ECDSA key on the wrong curve, nor a key
// whose JWK pins another alg.
func (k *jwkKey) usable(alg string) bool {
	if k.alg != "" && k.alg != alg {
		return false
	}
	switch alg {
	case "RS256":
		_, ok := k.key.(*rsa.PublicKey)
		return ok
	case "ES256":
		ec, ok := k.key.(*ecdsa.PublicKey)
		return ok && ec.Curve == elliptic.P256()
	case "EdDSA":
		_, ok := k.key.(ed25519.PublicKey)
		return ok
	}
	return false
}

// onlyExpired reports whether exp is the token's one fault. Claims are
// validated only after the signature, so this is never said of a forgery.
func onlyExpired(err error) bool {
	if !errors.Is(err, jwt.ErrTokenExpired) {
		return false
	}
	for _, other := range []error{
		jwt.ErrTokenNotValidYet, jwt.ErrTokenUsedBeforeIssued, jwt.ErrTokenInvalidIssuer,
		jwt.ErrTokenInvalidAudience, jwt.ErrTokenRequiredClaimMissing, jwt.ErrInvalidType,
	} {
		if errors.Is(err, other) {
			return false
		}
	}
	return true
}

// validSubject: sub becomes the X-User-ID header upstream, so it must be a
// header-safe, unambiguous value: printable ASCII (no CTLs, CR, LF or
// obs-text), no comma (a list separator to upstream parsers) and no leading
// or trailing space (trimmed by parsers, so "alice " would become "alice").
func validSubject(s string) bool {
	if s == "" || len(s) > MaxSubjectBytes || s[0] == ' ' || s[len(s)-1] == ' ' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == ',' {
			return false
		}
	}
	return true
}
