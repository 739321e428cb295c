package jwtauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// We use jwkset to parse and validate JWKs but run the fetching ourselves:
// keyfunc/jwkset's unknown-kid limiter makes each such request *wait* (up to
// a minute) for its turn, a boot failure is retried only after a full
// refresh interval, and the response body is read without a size limit.
const (
	maxKIDBytes     = 256
	maxJWKSBytes    = 1 << 20
	maxJWKSKeys     = 100
	minRSABits      = 2048
	fetchTimeout    = 10 * time.Second // on top of the HTTP client's own timeout
	firstRetry      = time.Second      // backoff start while the JWKS is unreachable
	causeUnknownKey = "unknown_key"    // log value of a fetch caused by an unknown kid
)

var errRefreshLimited = errors.New("JWKS refresh for an unknown key skipped: one already ran within the unknown-kid interval")

// MaxKeysWithoutKID is how many keys of one algorithm a token without a kid
// header is tried against; a JWKS with more such keys requires a kid.
const MaxKeysWithoutKID = 3

// jwkKey is one usable verification key from the JWKS.
type jwkKey struct {
	kid string
	alg string // the JWK's "alg", empty when it pins none
	key any    // *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey
}

// keySet is an immutable snapshot of the JWKS, swapped whole on refresh.
type keySet struct {
	byKID map[string]*jwkKey
	// noKID holds, per alg, what a token without kid is checked against: a
	// single key or a jwt.VerificationKeySet (built once, not per request).
	noKID map[string]any
	size  int
}

func newKeySet(keys []*jwkKey) *keySet {
	ks := &keySet{byKID: make(map[string]*jwkKey, len(keys)), noKID: map[string]any{}, size: len(keys)}
	for _, k := range keys {
		if k.kid != "" {
			ks.byKID[k.kid] = k
		}
	}
	for _, alg := range []string{"RS256", "ES256", "EdDSA"} {
		var set jwt.VerificationKeySet
		for _, k := range keys {
			if k.usable(alg) {
				set.Keys = append(set.Keys, k.key)
			}
		}
		switch n := len(set.Keys); {
		case n == 0:
		case n == 1:
			ks.noKID[alg] = set.Keys[0]
		case n <= MaxKeysWithoutKID:
			ks.noKID[alg] = set
		default:
			// Each key tried is a signature check (~40 µs for RSA): with a
			// large set, tokens without kid would let any client make the
			// gateway do dozens per request. Such a set requires a kid.
		}
	}
	return ks
}

// flight is one JWKS fetch in progress; concurrent callers wait for it.
type flight struct {
	done chan struct{}
	err  error // written before done is closed
}

// jwks holds the keys fetched from JWT_JWKS_URL and keeps them fresh.
type jwks struct {
	ctx        context.Context
	url        string
	logURL     string // url without credentials
	client     *http.Client
	log        *slog.Logger
	now        func() time.Time
	interval   time.Duration
	unknownMin time.Duration

	keys atomic.Pointer[keySet] // read on every request, lock-free

	// mu guards the fields below. It is taken only by fetches and by
	// requests whose key is unknown, never on the verified-key path.
	mu          sync.Mutex
	flight      *flight
	lastUnknown time.Time
	failing     bool
}

func newJWKS(ctx context.Context, rawURL string, o Options, log *slog.Logger) *jwks {
	logURL := rawURL
	if u, err := url.Parse(rawURL); err == nil {
		logURL = u.Redacted()
	}
	j := &jwks{
		ctx: ctx, url: rawURL, logURL: logURL, client: o.HTTPClient, log: log, now: o.Now,
		interval: o.RefreshInterval, unknownMin: o.UnknownKIDRefreshMin,
	}
	j.keys.Store(newKeySet(nil))
	return j
}

// start fetches the set once, then refreshes it in the background until ctx ends.
func (j *jwks) start() {
	err := j.refresh("boot", false)
	go j.loop(err != nil)
}

func (j *jwks) loop(failing bool) {
	retry := min(firstRetry, j.interval)
	next := j.interval
	if failing {
		next, retry = retry, min(2*retry, j.interval)
	}
	t := time.NewTimer(jitter(next))
	defer t.Stop()
	for {
		select {
		case <-j.ctx.Done():
			return
		case <-t.C:
		}
		if err := j.refresh("interval", false); err != nil {
			if !failing {
				failing, retry = true, min(firstRetry, j.interval)
			}
			next, retry = retry, min(2*retry, j.interval)
		} else {
			failing, next = false, j.interval
		}
		t.Reset(jitter(next))
	}
}

// jitter spreads d by ±10% so replicas do not fetch in lockstep.
func jitter(d time.Duration) time.Duration {
	if d < 10 {
		return d
	}
	return d - d/10 + rand.N(d/5)
}

// lookup returns the key(s) a token with this alg and kid may be verified
// with. An unknown kid (or no keys at all) may mean the issuer rotated keys:
// the set is fetched again, at most once per unknownMin.
func (j *jwks) lookup(alg, kid string, hasKID bool) (any, error) {
	ks := j.keys.Load()
	key, known := ks.find(alg, kid, hasKID)
	if key != nil {
		return key, nil
	}
	if known {
		return nil, fmt.Errorf("%w: key %q does not verify %s", ErrNoKey, kid, alg)
	}
	if err := j.refresh(causeUnknownKey, true); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoKey, err)
	}
	if key, _ := j.keys.Load().find(alg, kid, hasKID); key != nil {
		return key, nil
	}
	return nil, fmt.Errorf("%w: kid %q not in the JWKS", ErrNoKey, kid)
}

// find returns the key for alg, or nil; known is false when the set cannot
// have been asked correctly (kid absent from it, or no keys at all), i.e.
// when a fresh copy might help.
func (ks *keySet) find(alg, kid string, hasKID bool) (key any, known bool) {
	if !hasKID {
		return ks.noKID[alg], ks.size > 0
	}
	k, ok := ks.byKID[kid]
	if !ok {
		return nil, false
	}
	if !k.usable(alg) {
		return nil, true
	}
	return k.key, true
}

// refresh fetches the set, or waits for the fetch already running.
// rateLimited fetches (caused by unknown keys, i.e. by clients) start at
// most once per unknownMin.
func (j *jwks) refresh(cause string, rateLimited bool) error {
	j.mu.Lock()
	f := j.flight
	if f == nil {
		if rateLimited {
			now := j.now()
			if !j.lastUnknown.IsZero() && now.Sub(j.lastUnknown) < j.unknownMin {
				j.mu.Unlock()
				return errRefreshLimited
			}
			j.lastUnknown = now
		}
		f = &flight{done: make(chan struct{})}
		j.flight = f
		j.mu.Unlock()

		f.err = j.fetch()
		j.mu.Lock()
		j.flight = nil
		wasFailing := j.failing
		j.failing = f.err != nil
		j.mu.Unlock()
		close(f.done)
		j.report(cause, f.err, wasFailing)
		return f.err
	}
	j.mu.Unlock()
	select {
	case <-f.done:
		return f.err
	case <-j.ctx.Done():
		return j.ctx.Err()
	}
}

// report logs a fetch: a warning once per outage, not once per retry.
func (j *jwks) report(cause string, err error, wasFailing bool) {
	switch {
	case err != nil && !wasFailing:
		j.log.Warn("JWKS fetch failed; tokens signed with its keys are refused until it succeeds",
			"url", j.logURL, "cause", cause, "error", err)
	case err != nil:
		j.log.Debug("JWKS fetch failed again", "url", j.logURL, "cause", cause, "error", err)
	case wasFailing:
		j.log.Info("JWKS fetched after failures", "url", j.logURL, "cause", cause, "keys", j.keys.Load().size)
	default:
		j.log.Debug("JWKS fetched", "url", j.logURL, "cause", cause, "keys", j.keys.Load().size)
	}
}

// fetch downloads and parses the JWKS and swaps it in. On any failure the
// previous set stays: public keys do not go bad because their host is down.
func (j *jwks) fetch() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("fetching JWKS: panic: %v", r)
		}
	}()
	ctx, cancel := context.WithTimeout(j.ctx, fetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.url, nil)
	if err != nil {
		return fmt.Errorf("fetching JWKS: %w", err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := j.client.Do(req)
	if err != nil {
		return fmt.Errorf("fetching JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return fmt.Errorf("fetching JWKS: status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return fmt.Errorf("reading JWKS: %w", err)
	}
	if len(body) > maxJWKSBytes {
		return fmt.Errorf("reading JWKS: larger than %d bytes", maxJWKSBytes)
	}
	var doc jwkset.JWKSMarshal
	if err := json.Unmarshal(body, &doc); err != nil {
		return fmt.Errorf("decoding JWKS: %w", err)
	}
	if doc.Keys == nil {
		return errors.New(`decoding JWKS: no "keys" member`)
	}
	keys, skipped := parseKeys(doc.Keys)
	if len(skipped) > 0 {
		j.log.Warn("JWKS keys ignored", "url", j.logURL, "ignored", len(skipped), "kept", len(keys), "reasons", errors.Join(skipped...).Error())
	}
	j.keys.Store(newKeySet(keys))
	return nil
}

// parseKeys keeps the signature keys this package can use and says why it
// dropped the others.
func parseKeys(in []jwkset.JWKMarshal) (keys []*jwkKey, skipped []error) {
	seen := map[string]bool{}
	for i, m := range in {
		if i >= maxJWKSKeys {
			skipped = append(skipped, fmt.Errorf("keys beyond the first %d", maxJWKSKeys))
			break
		}
		why := func(format string, a ...any) {
			skipped = append(skipped, fmt.Errorf("key %d (kid %q): %s", i, m.KID, fmt.Sprintf(format, a...)))
		}
		switch {
		case m.USE != "" && m.USE != jwkset.UseSig:
			why("use %q is not sig", m.USE)
			continue
		case len(m.KID) > maxKIDBytes:
			why("kid longer than %d bytes", maxKIDBytes)
			continue
		case m.KID != "" && seen[m.KID]:
			why("duplicate kid")
			continue
		}
		switch m.ALG {
		case "", "RS256", "ES256", "EdDSA":
		default:
			why("alg %q not accepted", m.ALG)
			continue
		}
		// Private: false: private or symmetric ("oct") material is never loaded.
		jwk, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
		if err != nil {
			why("%v", err)
			continue
		}
		switch k := jwk.Key().(type) {
		case *rsa.PublicKey:
			if k.N.BitLen() < minRSABits {
				why("RSA key of %d bits, want at least %d", k.N.BitLen(), minRSABits)
				continue
			}
		case *ecdsa.PublicKey, ed25519.PublicKey:
		default:
			why("key type %T not used for signatures", k)
			continue
		}
		if m.KID != "" {
			seen[m.KID] = true
		}
		keys = append(keys, &jwkKey{kid: m.KID, alg: string(m.ALG), key: jwk.Key()})
	}
	return keys, skipped
}
