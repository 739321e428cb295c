package jwtauth

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestVerifyAttacks(t *testing.T) {
	k := testKeys()
	clk := newClock()
	now := clk.Now()
	srv := newJWKSServer(t,
		testKey{kid: "rsa-a", pub: &k.rsaA.PublicKey},
		testKey{kid: "ec-a", pub: &k.ecA.PublicKey},
		testKey{kid: "ec-384", pub: &k.ec384.PublicKey},
		testKey{kid: "ed-a", pub: k.edA.Public()},
	)
	base := Options{Issuer: testIss, Audience: testAud, Now: clk.Now}
	withBoth := base
	withBoth.Secret, withBoth.JWKSURL = testSecret, srv.url()
	jwksOnly := base
	jwksOnly.JWKSURL = srv.url()
	secretOnly := base
	secretOnly.Secret = testSecret
	verifiers := map[string]*Verifier{
		"both":       newVerifier(t, withBoth),
		"jwksOnly":   newVerifier(t, jwksOnly),
		"secretOnly": newVerifier(t, secretOnly),
	}

	pkix, err := x509.MarshalPKIXPublicKey(&k.rsaA.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pkixPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pkix})
	pkcs1PEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&k.rsaA.PublicKey)})
	validPayload := mustJSON(t, claims(now))
	hs := func(c jwt.MapClaims) string { return sign(t, jwt.SigningMethodHS256, testSecret, "", c, nil) }
	rs := func(c jwt.MapClaims) string { return sign(t, jwt.SigningMethodRS256, k.rsaA, "rsa-a", c, nil) }
	none := func(alg string) string {
		return b64(`{"alg":"`+alg+`","typ":"JWT"}`) + "." + b64(validPayload) + "."
	}
	validHS := hs(claims(now))

	tests := []struct {
		name       string
		verifier   string // key of verifiers
		token      string
		wantReason string // "" = accepted
		wantErr    error  // when set, errors.Is must hold
		wantSub    string
	}{
		// Accepted.
		{name: "valid HS256", verifier: "both", token: validHS, wantSub: "u1"},
		{name: "valid HS256 secret only", verifier: "secretOnly", token: validHS, wantSub: "u1"},
		{name: "valid RS256 via JWKS", verifier: "both", token: rs(claims(now)), wantSub: "u1"},
		{name: "valid RS256 via JWKS, no secret", verifier: "jwksOnly", token: rs(claims(now)), wantSub: "u1"},
		{name: "valid RS256 without kid (single RSA key)", verifier: "jwksOnly",
			token: sign(t, jwt.SigningMethodRS256, k.rsaA, "", claims(now), nil), wantSub: "u1"},
		{name: "valid ES256 via JWKS", verifier: "both",
			token: sign(t, jwt.SigningMethodES256, k.ecA, "ec-a", claims(now), nil), wantSub: "u1"},
		{name: "valid EdDSA via JWKS", verifier: "both",
			token: sign(t, jwt.SigningMethodEdDSA, k.edA, "ed-a", claims(now), nil), wantSub: "u1"},
		{name: "aud as array containing ours", verifier: "both",
			token: hs(claims(now, set("aud", []string{"other", testAud}))), wantSub: "u1"},
		{name: "exp passed but within leeway", verifier: "both",
			token: hs(claims(now, set("exp", now.Add(-10*time.Second).Unix()))), wantSub: "u1"},
		{name: "iat slightly in future within leeway", verifier: "both",
			token: hs(claims(now, set("iat", now.Add(10*time.Second).Unix()))), wantSub: "u1"},
		{name: "sub with inner space and punctuation", verifier: "both",
			token: hs(claims(now, set("sub", "auth0|user name@x.example"))), wantSub: "auth0|user name@x.example"},
		{name: "jku header is ignored, key still from JWKS", verifier: "both",
			token: sign(t, jwt.SigningMethodRS256, k.rsaA, "rsa-a", claims(now), map[string]any{"jku": "https://evil.example/jwks"}), wantSub: "u1"},

		// alg none, any spelling.
		{name: "alg none", verifier: "both", token: none("none"), wantReason: ReasonInvalid},
		{name: "alg None", verifier: "both", token: none("None"), wantReason: ReasonInvalid},
		{name: "alg NONE", verifier: "both", token: none("NONE"), wantReason: ReasonInvalid},
		{name: "alg nOnE", verifier: "both", token: none("nOnE"), wantReason: ReasonInvalid},
		{name: "alg none with a signature", verifier: "both", token: none("none") + "c2ln", wantReason: ReasonInvalid},
		{name: "alg missing", verifier: "both", token: hmacOver(t, `{"typ":"JWT"}`, validPayload, testSecret), wantReason: ReasonInvalid},
		{name: "alg not a string", verifier: "both", token: hmacOver(t, `{"alg":["HS256"]}`, validPayload, testSecret), wantReason: ReasonInvalid},

		// Algorithm confusion: HS256 with the RSA public key as HMAC secret.
		{name: "HS256 keyed with RSA public PEM (PKIX), secret set", verifier: "both",
			token: sign(t, jwt.SigningMethodHS256, pkixPEM, "rsa-a", claims(now), nil), wantReason: ReasonInvalid},
		{name: "HS256 keyed with RSA public PEM (PKIX), no secret", verifier: "jwksOnly",
			token: sign(t, jwt.SigningMethodHS256, pkixPEM, "rsa-a", claims(now), nil), wantReason: ReasonInvalid},
		{name: "HS256 keyed with RSA public PEM (PKCS1), no secret", verifier: "jwksOnly",
			token: sign(t, jwt.SigningMethodHS256, pkcs1PEM, "rsa-a", claims(now), nil), wantReason: ReasonInvalid},
		{name: "HS256 keyed with RSA public DER, no secret", verifier: "jwksOnly",
			token: sign(t, jwt.SigningMethodHS256, pkix, "rsa-a", claims(now), nil), wantReason: ReasonInvalid},
		{name: "HS256 keyed with RSA public DER, no kid, secret set", verifier: "both",
			token: sign(t, jwt.SigningMethodHS256, pkix, "", claims(now), nil), wantReason: ReasonInvalid},
		{name: "valid HS256 when Secret is empty", verifier: "jwksOnly", token: validHS, wantReason: ReasonInvalid},
		{name: "HS384 with the secret", verifier: "both",
			token: sign(t, jwt.SigningMethodHS384, testSecret, "", claims(now), nil), wantReason: ReasonInvalid},
		{name: "HS512 with the secret", verifier: "both",
			token: sign(t, jwt.SigningMethodHS512, testSecret, "", claims(now), nil), wantReason: ReasonInvalid},
		{name: "RS512 with the JWKS key", verifier: "both",
			token: sign(t, jwt.SigningMethodRS512, k.rsaA, "rsa-a", claims(now), nil), wantReason: ReasonInvalid},
		{name: "PS256 with the JWKS RSA key", verifier: "both",
			token: sign(t, jwt.SigningMethodPS256, k.rsaA, "rsa-a", claims(now), nil), wantReason: ReasonInvalid},
		{name: "RS256 on a secret-only verifier", verifier: "secretOnly", token: rs(claims(now)), wantReason: ReasonInvalid},

		// Key type pinning.
		{name: "kid of an EC key with alg RS256", verifier: "both",
			token: sign(t, jwt.SigningMethodRS256, k.rsaA, "ec-a", claims(now), nil), wantReason: ReasonInvalid, wantErr: ErrNoKey},
		{name: "kid of an RSA key with alg ES256", verifier: "both",
			token: sign(t, jwt.SigningMethodES256, k.ecA, "rsa-a", claims(now), nil), wantReason: ReasonInvalid, wantErr: ErrNoKey},
		{name: "kid of a P-384 key with alg ES256", verifier: "both",
			token: sign(t, jwt.SigningMethodES256, k.ecA, "ec-384", claims(now), nil), wantReason: ReasonInvalid, wantErr: ErrNoKey},
		{name: "kid of an Ed25519 key with alg RS256", verifier: "both",
			token: sign(t, jwt.SigningMethodRS256, k.rsaA, "ed-a", claims(now), nil), wantReason: ReasonInvalid, wantErr: ErrNoKey},
		{name: "attacker key with jku to attacker JWKS", verifier: "both",
			token: sign(t, jwt.SigningMethodRS256, k.rsaEvil, "evil", claims(now), map[string]any{"jku": "https://evil.example/jwks"}), wantReason: ReasonInvalid},
		{name: "kid is a number", verifier: "both",
			token: sign(t, jwt.SigningMethodRS256, k.rsaA, "", claims(now), map[string]any{"kid": 7}), wantReason: ReasonInvalid, wantErr: ErrNoKey},
		{name: "kid of 10000 bytes", verifier: "both",
			token: sign(t, jwt.SigningMethodRS256, k.rsaA, strings.Repeat("x", 5000), claims(now), nil), wantReason: ReasonInvalid},
		{name: "crit header", verifier: "both",
			token: sign(t, jwt.SigningMethodHS256, testSecret, "", claims(now), map[string]any{"crit": []string{"exp"}}), wantReason: ReasonInvalid, wantErr: ErrCritHeader},
		{name: "unencoded payload b64=false", verifier: "both",
			token: sign(t, jwt.SigningMethodHS256, testSecret, "", claims(now), map[string]any{"b64": false, "crit": []string{"b64"}}), wantReason: ReasonInvalid},

		// Signatures.
		{name: "HS256 with another secret", verifier: "both",
			token: sign(t, jwt.SigningMethodHS256, []byte("another-secret-another-secret-xx"), "", claims(now), nil), wantReason: ReasonInvalid},
		{name: "RS256 by another key under our kid", verifier: "both",
			token: sign(t, jwt.SigningMethodRS256, k.rsaEvil, "rsa-a", claims(now), nil), wantReason: ReasonInvalid},
		{name: "signature byte flipped", verifier: "both", token: flipLastSigByte(validHS), wantReason: ReasonInvalid},
		{name: "signature removed", verifier: "both", token: validHS[:strings.LastIndex(validHS, ".")+1], wantReason: ReasonInvalid},
		{name: "payload swapped, signature kept", verifier: "both",
			token: swapPayload(validHS, mustJSON(t, claims(now, set("sub", "admin")))), wantReason: ReasonInvalid},
		{name: "expired but forged", verifier: "both",
			token: flipLastSigByte(hs(claims(now, set("exp", now.Add(-time.Hour).Unix())))), wantReason: ReasonInvalid},

		// Time claims.
		{name: "expired beyond leeway", verifier: "both",
			token: hs(claims(now, set("exp", now.Add(-31*time.Second).Unix()))), wantReason: ReasonExpired, wantErr: jwt.ErrTokenExpired},
		{name: "expired RS256", verifier: "both",
			token: rs(claims(now, set("exp", now.Add(-time.Hour).Unix()))), wantReason: ReasonExpired},
		{name: "expired and wrong iss", verifier: "both",
			token: hs(claims(now, set("exp", now.Add(-time.Hour).Unix()), set("iss", "https://evil.example"))), wantReason: ReasonInvalid},
		{name: "nbf in future", verifier: "both",
			token: hs(claims(now, set("nbf", now.Add(time.Hour).Unix()))), wantReason: ReasonInvalid, wantErr: jwt.ErrTokenNotValidYet},
		{name: "iat in future beyond leeway", verifier: "both",
			token: hs(claims(now, set("iat", now.Add(time.Minute).Unix()))), wantReason: ReasonInvalid, wantErr: jwt.ErrTokenUsedBeforeIssued},
		{name: "missing exp", verifier: "both", token: hs(claims(now, del("exp"))), wantReason: ReasonInvalid, wantErr: jwt.ErrTokenRequiredClaimMissing},
		{name: "exp null", verifier: "both", token: hs(claims(now, set("exp", nil))), wantReason: ReasonInvalid},
		{name: "exp as string", verifier: "both", token: hs(claims(now, set("exp", "9999999999"))), wantReason: ReasonInvalid},
		{name: "exp as bool", verifier: "both", token: hs(claims(now, set("exp", true))), wantReason: ReasonInvalid},

		// iss / aud.
		{name: "wrong iss", verifier: "both", token: hs(claims(now, set("iss", "https://evil.example"))), wantReason: ReasonInvalid, wantErr: jwt.ErrTokenInvalidIssuer},
		{name: "missing iss", verifier: "both", token: hs(claims(now, del("iss"))), wantReason: ReasonInvalid},
		{name: "wrong aud", verifier: "both", token: hs(claims(now, set("aud", "other"))), wantReason: ReasonInvalid, wantErr: jwt.ErrTokenInvalidAudience},
		{name: "missing aud", verifier: "both", token: hs(claims(now, del("aud"))), wantReason: ReasonInvalid},
		{name: "aud array without ours", verifier: "both", token: hs(claims(now, set("aud", []string{"a", "b"}))), wantReason: ReasonInvalid},

		// Malformed.
		{name: "empty token", verifier: "both", token: "", wantReason: ReasonInvalid},
		{name: "1 segment", verifier: "both", token: "abc", wantReason: ReasonInvalid},
		{name: "2 segments", verifier: "both", token: validHS[:strings.LastIndex(validHS, ".")], wantReason: ReasonInvalid},
		{name: "4 segments", verifier: "both", token: validHS + ".x", wantReason: ReasonInvalid},
		{name: "only dots", verifier: "both", token: "...", wantReason: ReasonInvalid},
		{name: "bad base64 header", verifier: "both", token: "!!!." + strings.SplitN(validHS, ".", 2)[1], wantReason: ReasonInvalid},
		{name: "padded base64 segment", verifier: "both", token: b64(`{"alg":"HS256"}`) + "=." + strings.SplitN(validHS, ".", 2)[1], wantReason: ReasonInvalid},
		{name: "bad JSON header", verifier: "both", token: hmacOver(t, `{"alg":"HS256"`, validPayload, testSecret), wantReason: ReasonInvalid},
		{name: "bad JSON claims", verifier: "both", token: hmacOver(t, `{"alg":"HS256","typ":"JWT"}`, `{"sub":"u1",`, testSecret), wantReason: ReasonInvalid},
		{name: "claims not an object", verifier: "both", token: hmacOver(t, `{"alg":"HS256","typ":"JWT"}`, `["u1"]`, testSecret), wantReason: ReasonInvalid},
		{name: "64 KB token", verifier: "both", token: hs(claims(now, set("pad", strings.Repeat("A", 64<<10)))), wantReason: ReasonInvalid, wantErr: ErrTokenTooLarge},
		{name: "900 KB of dots", verifier: "both", token: strings.Repeat(".", 900<<10), wantReason: ReasonInvalid, wantErr: ErrTokenTooLarge},

		// sub, forwarded upstream as X-User-ID.
		{name: "empty sub", verifier: "both", token: hs(claims(now, set("sub", ""))), wantReason: ReasonInvalid, wantErr: ErrBadSubject},
		{name: "missing sub", verifier: "both", token: hs(claims(now, del("sub"))), wantReason: ReasonInvalid, wantErr: ErrBadSubject},
		{name: "sub with CR/LF", verifier: "both", token: hs(claims(now, set("sub", "u1\r\nX-Admin: 1"))), wantReason: ReasonInvalid, wantErr: ErrBadSubject},
		{name: "sub with LF", verifier: "both", token: hs(claims(now, set("sub", "u1\nx"))), wantReason: ReasonInvalid, wantErr: ErrBadSubject},
		{name: "sub with NUL", verifier: "both", token: hs(claims(now, set("sub", "u1\x00"))), wantReason: ReasonInvalid, wantErr: ErrBadSubject},
		{name: "sub with tab", verifier: "both", token: hs(claims(now, set("sub", "u1\tx"))), wantReason: ReasonInvalid, wantErr: ErrBadSubject},
		{name: "sub with DEL", verifier: "both", token: hs(claims(now, set("sub", "u1\x7f"))), wantReason: ReasonInvalid, wantErr: ErrBadSubject},
		{name: "sub with comma", verifier: "both", token: hs(claims(now, set("sub", "alice,admin"))), wantReason: ReasonInvalid, wantErr: ErrBadSubject},
		{name: "sub with trailing space", verifier: "both", token: hs(claims(now, set("sub", "alice "))), wantReason: ReasonInvalid, wantErr: ErrBadSubject},
		{name: "sub non-ASCII", verifier: "both", token: hs(claims(now, set("sub", "ålice"))), wantReason: ReasonInvalid, wantErr: ErrBadSubject},
		{name: "sub of 257 bytes", verifier: "both", token: hs(claims(now, set("sub", strings.Repeat("a", 257)))), wantReason: ReasonInvalid, wantErr: ErrBadSubject},
		{name: "sub of 256 bytes", verifier: "both", token: hs(claims(now, set("sub", strings.Repeat("a", 256)))), wantSub: strings.Repeat("a", 256)},
		{name: "sub a number", verifier: "both", token: hs(claims(now, set("sub", 42))), wantReason: ReasonInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := verifiers[tc.verifier]
			c, reason, err := v.Verify(tc.token)
			if tc.wantReason == "" {
				if err != nil || reason != "" {
					t.Fatalf("Verify = reason %q, err %v; want accepted", reason, err)
				}
				if c.Subject != tc.wantSub {
					t.Errorf("Subject = %q, want %q", c.Subject, tc.wantSub)
				}
				return
			}
			if err == nil {
				t.Fatalf("Verify accepted the token (claims %+v); want reason %q", c, tc.wantReason)
			}
			if reason != tc.wantReason {
				t.Errorf("reason = %q, want %q (err %v)", reason, tc.wantReason, err)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("err = %v, want errors.Is %v", err, tc.wantErr)
			}
			if c.Subject != "" {
				t.Errorf("claims returned on failure: %+v", c)
			}
		})
	}

	// Known kids with the wrong alg, numbers and huge kids never cause a
	// fetch; the unknown ones ("evil") cause at most one per interval.
	if hits := srv.hits.Load(); hits > 2+1 { // 2 boot fetches + 1 unknown-kid fetch
		t.Errorf("JWKS fetched %d times during the attack table, want ≤ 3", hits)
	}
}

func flipLastSigByte(tok string) string {
	b := []byte(tok)
	i := len(b) - 2 // the last char may carry only padding bits
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

func swapPayload(tok, payload string) string {
	p := strings.Split(tok, ".")
	return p[0] + "." + b64(payload) + "." + p[2]
}

func TestVerifyClaims(t *testing.T) {
	k := testKeys()
	clk := newClock()
	now := clk.Now()
	srv := newJWKSServer(t, testKey{kid: "rsa-a", alg: "RS256", pub: &k.rsaA.PublicKey})
	v := newVerifier(t, Options{JWKSURL: srv.url(), Now: clk.Now})
	tok := sign(t, jwt.SigningMethodRS256, k.rsaA, "rsa-a",
		claims(now, set("jti", "id-1"), set("nbf", now.Add(-time.Minute).Unix())), nil)
	c, reason, err := v.Verify(tok)
	if err != nil {
		t.Fatalf("Verify: %s %v", reason, err)
	}
	want := Claims{
		Subject: "u1", Issuer: testIss, Audience: []string{testAud},
		Expires: now.Add(5 * time.Minute), IssuedAt: now, NotBefore: now.Add(-time.Minute),
		ID: "id-1", Algorithm: "RS256", KeyID: "rsa-a",
	}
	if c.Subject != want.Subject || c.Issuer != want.Issuer || len(c.Audience) != 1 || c.Audience[0] != testAud ||
		!c.Expires.Equal(want.Expires) || !c.IssuedAt.Equal(want.IssuedAt) || !c.NotBefore.Equal(want.NotBefore) ||
		c.ID != want.ID || c.Algorithm != want.Algorithm || c.KeyID != want.KeyID {
		t.Errorf("claims = %+v\nwant     %+v", c, want)
	}
	// Issuer/Audience unset: not checked.
	tok = sign(t, jwt.SigningMethodRS256, k.rsaA, "rsa-a", claims(now, del("iss"), del("aud")), nil)
	if _, reason, err := v.Verify(tok); err != nil {
		t.Errorf("no iss/aud configured: %s %v", reason, err)
	}
	// A JWK that pins RS256 does not verify PS256 even if PS256 were enabled.
	if (&jwkKey{alg: "RS256", key: &k.rsaA.PublicKey}).usable("PS256") {
		t.Error("RS256-pinned key usable for PS256")
	}
	if (&jwkKey{alg: "RS256", key: &k.ecA.PublicKey}).usable("ES256") {
		t.Error("key whose JWK pins RS256 usable for ES256")
	}
}

func TestVerifyExpiryOverTime(t *testing.T) {
	clk := newClock()
	v := newVerifier(t, Options{Secret: testSecret, Now: clk.Now, Leeway: 10 * time.Second})
	tok := sign(t, jwt.SigningMethodHS256, testSecret, "", claims(clk.Now(), del("iss"), del("aud"), set("exp", clk.Now().Add(time.Minute).Unix())), nil)
	steps := []struct {
		name       string
		advance    time.Duration
		wantReason string
	}{
		{name: "fresh", advance: 0},
		{name: "at exp, inside leeway", advance: time.Minute + 5*time.Second},
		{name: "past leeway", advance: 6 * time.Second, wantReason: ReasonExpired},
	}
	for _, s := range steps {
		clk.Advance(s.advance)
		if _, reason, _ := v.Verify(tok); reason != s.wantReason {
			t.Errorf("%s: reason %q, want %q", s.name, reason, s.wantReason)
		}
	}
}

func TestDisabled(t *testing.T) {
	v := newVerifier(t, Options{})
	if v.Enabled() {
		t.Fatal("Enabled with no key source")
	}
	tok := sign(t, jwt.SigningMethodHS256, testSecret, "", claims(time.Now()), nil)
	if _, reason, err := v.Verify(tok); !errors.Is(err, ErrDisabled) || reason != ReasonInvalid {
		t.Errorf("Verify = %q, %v; want invalid, ErrDisabled", reason, err)
	}
	if !newVerifier(t, Options{Secret: testSecret}).Enabled() {
		t.Error("secret: not Enabled")
	}
	srv := newJWKSServer(t)
	if !newVerifier(t, Options{JWKSURL: srv.url()}).Enabled() {
		t.Error("JWKS: not Enabled")
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		want string
	}{
		{name: "relative JWKS URL", o: Options{JWKSURL: "/jwks.json"}, want: "JWT_JWKS_URL"},
		{name: "ftp JWKS URL", o: Options{JWKSURL: "ftp://idp.example/jwks"}, want: "JWT_JWKS_URL"},
		{name: "unparsable JWKS URL", o: Options{JWKSURL: "http://[::1"}, want: "JWT_JWKS_URL"},
		{name: "negative leeway", o: Options{Secret: testSecret, Leeway: -time.Second}, want: "leeway"},
		{name: "negative refresh", o: Options{Secret: testSecret, RefreshInterval: -time.Second}, want: "refresh interval"},
		{name: "negative unknown-kid interval", o: Options{Secret: testSecret, UnknownKIDRefreshMin: -time.Second}, want: "unknown-kid"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := New(context.Background(), tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New = %v, %v; want an error naming %q", v, err, tc.want)
			}
		})
	}
}

func TestMintRoundTrip(t *testing.T) {
	clk := newClock()
	v := newVerifier(t, Options{Secret: testSecret, Issuer: testIss, Audience: testAud, Now: clk.Now})
	tok, err := Mint(testSecret, "alice", time.Hour, testIss, testAud, clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	c, reason, err := v.Verify(tok)
	if err != nil {
		t.Fatalf("Verify(minted) = %s %v", reason, err)
	}
	if c.Subject != "alice" || c.Algorithm != "HS256" || !c.Expires.Equal(clk.Now().Add(time.Hour)) || c.ID == "" {
		t.Errorf("claims = %+v", c)
	}
	if sub, reason, err := v.VerifySubject(tok); sub != "alice" || reason != "" || err != nil {
		t.Errorf("VerifySubject = %q %q %v", sub, reason, err)
	}
	other, err := Mint(testSecret, "alice", time.Hour, testIss, testAud, clk.Now())
	if err != nil || other == tok {
		t.Errorf("two mints are identical (jti not random): %v", err)
	}
	clk.Advance(time.Hour + DefaultLeeway)
	if _, reason, _ := v.Verify(tok); reason != ReasonExpired {
		t.Errorf("after ttl+leeway: reason %q, want expired", reason)
	}

	bad := []struct {
		name   string
		secret []byte
		sub    string
		ttl    time.Duration
	}{
		{name: "empty secret", sub: "alice", ttl: time.Hour},
		{name: "empty sub", secret: testSecret, ttl: time.Hour},
		{name: "sub with LF", secret: testSecret, sub: "a\nb", ttl: time.Hour},
		{name: "zero ttl", secret: testSecret, sub: "alice"},
	}
	for _, b := range bad {
		if _, err := Mint(b.secret, b.sub, b.ttl, "", "", clk.Now()); err == nil {
			t.Errorf("%s: Mint succeeded", b.name)
		}
	}
}
