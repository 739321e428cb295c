package jwtauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

func TestJWKSKeyRotation(t *testing.T) {
	k := testKeys()
	clk := newClock()
	srv := newJWKSServer(t, testKey{kid: "a", pub: &k.rsaA.PublicKey})
	v := newVerifier(t, Options{JWKSURL: srv.url(), Now: clk.Now, RefreshInterval: time.Hour})
	tokA := sign(t, jwt.SigningMethodRS256, k.rsaA, "a", claims(clk.Now()), nil)
	tokB := sign(t, jwt.SigningMethodRS256, k.rsaB, "b", claims(clk.Now()), nil)

	steps := []struct {
		name       string
		serve      []testKey // nil: unchanged
		advance    time.Duration
		token      string
		wantOK     bool
		wantHitsLE int64
	}{
		{name: "A accepted from the boot fetch", token: tokA, wantOK: true, wantHitsLE: 1},
		{name: "B unknown before rotation", token: tokB, wantHitsLE: 2},
		{name: "issuer rotates to B; refresh is rate-limited", serve: []testKey{{kid: "b", pub: &k.rsaB.PublicKey}}, token: tokB, wantHitsLE: 2},
		{name: "after the interval B's kid triggers a refresh", advance: DefaultUnknownKIDRefreshMin, token: tokB, wantOK: true, wantHitsLE: 3},
		{name: "A is gone from the set", token: tokA, wantHitsLE: 3},
	}
	for _, s := range steps {
		if s.serve != nil {
			srv.set(t, s.serve...)
		}
		clk.Advance(s.advance)
		_, reason, err := v.Verify(s.token)
		if (err == nil) != s.wantOK {
			t.Errorf("%s: reason %q err %v, want ok=%v", s.name, reason, err, s.wantOK)
		}
		if h := srv.hits.Load(); h > s.wantHitsLE {
			t.Errorf("%s: %d JWKS fetches, want ≤ %d", s.name, h, s.wantHitsLE)
		}
	}
}

// A fresh rotation is picked up by the first token that carries the new kid.
func TestJWKSNewKIDAcceptedOnFirstUse(t *testing.T) {
	k := testKeys()
	clk := newClock()
	srv := newJWKSServer(t, testKey{kid: "a", pub: &k.rsaA.PublicKey})
	v := newVerifier(t, Options{JWKSURL: srv.url(), Now: clk.Now, RefreshInterval: time.Hour})
	srv.set(t, testKey{kid: "a", pub: &k.rsaA.PublicKey}, testKey{kid: "b", pub: &k.rsaB.PublicKey})
	tokB := sign(t, jwt.SigningMethodRS256, k.rsaB, "b", claims(clk.Now()), nil)
	if _, reason, err := v.Verify(tokB); err != nil {
		t.Fatalf("token with the new kid: %s %v", reason, err)
	}
	if h := srv.hits.Load(); h != 2 {
		t.Errorf("JWKS fetches = %d, want 2 (boot + unknown kid)", h)
	}
}

func TestJWKSRandomKIDFlood(t *testing.T) {
	k := testKeys()
	clk := newClock()
	srv := newJWKSServer(t, testKey{kid: "a", pub: &k.rsaA.PublicKey})
	v := newVerifier(t, Options{JWKSURL: srv.url(), Now: clk.Now, RefreshInterval: time.Hour})
	valid := sign(t, jwt.SigningMethodRS256, k.rsaA, "a", claims(clk.Now()), nil)
	payload := strings.Split(valid, ".")[1]

	flood := func(n int) time.Duration {
		start := time.Now()
		var wg sync.WaitGroup
		sem := make(chan struct{}, 64)
		for range n {
			var kid [8]byte
			_, _ = rand.Read(kid[:])
			tok := b64(`{"alg":"RS256","typ":"JWT","kid":"`+hex.EncodeToString(kid[:])+`"}`) + "." + payload + ".c2ln"
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				if _, reason, err := v.Verify(tok); err == nil || reason != ReasonInvalid {
					t.Errorf("random kid: reason %q err %v", reason, err)
				}
			})
		}
		wg.Wait()
		return time.Since(start)
	}

	if d := flood(1000); d > 5*time.Second {
		t.Errorf("1000 random-kid tokens took %s: requests are waiting on the JWKS limiter", d)
	}
	if h := srv.hits.Load(); h > 2 {
		t.Errorf("after 1000 random kids: %d JWKS fetches, want ≤ 2 (boot + one)", h)
	}
	clk.Advance(DefaultUnknownKIDRefreshMin)
	flood(1000)
	if h := srv.hits.Load(); h > 3 {
		t.Errorf("after a second flood one interval later: %d JWKS fetches, want ≤ 3", h)
	}
	if _, reason, err := v.Verify(valid); err != nil {
		t.Errorf("valid token after the flood: %s %v", reason, err)
	}
}

// JWKS host down at boot (connection refused): New succeeds with one
// warning, tokens are invalid, and the background retry picks the keys up
// once the host answers.
func TestJWKSDownAtBootBackgroundRetry(t *testing.T) {
	k := testKeys()
	clk := newClock()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	var logs logBuf
	v := newVerifier(t, Options{
		JWKSURL: "http://" + addr + "/jwks.json", Now: clk.Now, Log: logs.logger(),
		RefreshInterval: 200 * time.Millisecond,
	})
	tok := sign(t, jwt.SigningMethodRS256, k.rsaA, "a", claims(clk.Now()), nil)
	if _, reason, err := v.Verify(tok); !errors.Is(err, ErrNoKey) || reason != ReasonInvalid {
		t.Fatalf("host down: reason %q err %v, want invalid/ErrNoKey", reason, err)
	}

	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", addr, err)
	}
	srv := &jwksServer{}
	srv.set(t, testKey{kid: "a", pub: &k.rsaA.PublicKey})
	hs := httptest.NewUnstartedServer(srv)
	hs.Listener.Close()
	hs.Listener = ln
	hs.Start()
	t.Cleanup(hs.Close)

	// The clock stands still, so the unknown-kid path stays rate-limited:
	// only the background retry can deliver the keys.
	if !eventually(t, 5*time.Second, func() bool { _, _, err := v.Verify(tok); return err == nil }) {
		t.Fatal("token never verified after the JWKS host came up")
	}
	if n := logs.count("WARN", "JWKS fetch failed; tokens signed with its keys are refused until it succeeds"); n != 1 {
		t.Errorf("%d outage warnings, want exactly 1", n)
	}
	// The keys are stored just before the recovery line is written.
	if !eventually(t, time.Second, func() bool { return logs.count("INFO", "JWKS fetched after failures") == 1 }) {
		t.Errorf("%d recovery lines, want 1", logs.count("INFO", "JWKS fetched after failures"))
	}
}

// JWKS answering 503 at boot: the unknown-kid path fetches again once the
// rate-limit interval has passed.
func TestJWKSDownAtBootUnknownKIDRefresh(t *testing.T) {
	k := testKeys()
	clk := newClock()
	srv := newJWKSServer(t, testKey{kid: "a", pub: &k.rsaA.PublicKey})
	srv.status.Store(http.StatusServiceUnavailable)
	v := newVerifier(t, Options{JWKSURL: srv.url(), Now: clk.Now, RefreshInterval: time.Hour})
	tok := sign(t, jwt.SigningMethodRS256, k.rsaA, "a", claims(clk.Now()), nil)

	steps := []struct {
		name    string
		up      bool
		advance time.Duration
		wantOK  bool
	}{
		{name: "down: invalid (and the unknown-kid fetch fails)"},
		{name: "up, but within the interval", up: true},
		{name: "up, interval passed", up: true, advance: DefaultUnknownKIDRefreshMin, wantOK: true},
	}
	for _, s := range steps {
		if s.up {
			srv.status.Store(0)
		}
		clk.Advance(s.advance)
		if _, reason, err := v.Verify(tok); (err == nil) != s.wantOK {
			t.Errorf("%s: reason %q err %v", s.name, reason, err)
		}
	}
	if h := srv.hits.Load(); h != 3 {
		t.Errorf("JWKS fetches = %d, want 3 (boot, first unknown kid, after the interval)", h)
	}
}

// A failed refresh keeps the last good keys; a good one replaces them whole.
func TestJWKSFailedRefreshKeepsKeys(t *testing.T) {
	k := testKeys()
	clk := newClock()
	srv := newJWKSServer(t, testKey{kid: "a", pub: &k.rsaA.PublicKey})
	v := newVerifier(t, Options{JWKSURL: srv.url(), Now: clk.Now, RefreshInterval: time.Hour})
	tokA := sign(t, jwt.SigningMethodRS256, k.rsaA, "a", claims(clk.Now()), nil)
	unknown := sign(t, jwt.SigningMethodRS256, k.rsaA, "zzz", claims(clk.Now()), nil)

	bodies := []struct {
		name   string
		status int32
		body   string
	}{
		{name: "500", status: http.StatusInternalServerError},
		{name: "not JSON", body: "<html>"},
		{name: "no keys member", body: `{"foo":[]}`},
		{name: "larger than 1 MiB", body: `{"keys":[],"pad":"` + strings.Repeat("x", maxJWKSBytes) + `"}`},
	}
	for _, b := range bodies {
		srv.status.Store(b.status)
		body := []byte(b.body)
		srv.body.Store(&body)
		clk.Advance(DefaultUnknownKIDRefreshMin)
		before := srv.hits.Load()
		if _, _, err := v.Verify(unknown); err == nil {
			t.Fatalf("%s: unknown kid accepted", b.name)
		}
		if srv.hits.Load() != before+1 {
			t.Errorf("%s: unknown kid did not trigger a fetch", b.name)
		}
		if _, reason, err := v.Verify(tokA); err != nil {
			t.Errorf("%s: known key lost after a failed refresh: %s %v", b.name, reason, err)
		}
	}
	// An empty but valid set is a revocation and is honoured.
	srv.status.Store(0)
	srv.set(t)
	clk.Advance(DefaultUnknownKIDRefreshMin)
	_, _, _ = v.Verify(unknown)
	if _, _, err := v.Verify(tokA); err == nil {
		t.Error("key still accepted after the JWKS dropped it")
	}
}

func TestJWKSBackgroundStopsWithContext(t *testing.T) {
	srv := newJWKSServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	if _, err := New(ctx, Options{JWKSURL: srv.url(), RefreshInterval: 20 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if !eventually(t, 5*time.Second, func() bool { return srv.hits.Load() >= 3 }) {
		t.Fatal("no background refreshes")
	}
	cancel()
	time.Sleep(100 * time.Millisecond) // let a fetch in flight finish
	h := srv.hits.Load()
	time.Sleep(200 * time.Millisecond)
	if got := srv.hits.Load(); got != h {
		t.Errorf("refreshes continued after ctx ended: %d → %d", h, got)
	}
}

func TestParseKeys(t *testing.T) {
	k := testKeys()
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	marshal := func(key testKey) jwkset.JWKMarshal {
		j, err := jwkset.NewJWKFromKey(key.pub, jwkset.JWKOptions{
			Metadata: jwkset.JWKMetadataOptions{KID: key.kid, ALG: jwkset.ALG(key.alg), USE: jwkset.USE(key.use)},
		})
		if err != nil {
			t.Fatal(err)
		}
		return j.Marshal()
	}
	good := marshal(testKey{kid: "good", pub: &k.rsaA.PublicKey})
	tests := []struct {
		name     string
		in       jwkset.JWKMarshal
		wantKeep bool
	}{
		{name: "RSA 2048", in: good, wantKeep: true},
		{name: "P-256 with alg ES256", in: marshal(testKey{kid: "ec", alg: "ES256", pub: &k.ecA.PublicKey}), wantKeep: true},
		{name: "Ed25519", in: marshal(testKey{kid: "ed", pub: k.edA.Public()}), wantKeep: true},
		{name: "RSA 1024", in: marshal(testKey{kid: "small", pub: &small.PublicKey})},
		{name: "use enc", in: marshal(testKey{kid: "enc", use: "enc", pub: &k.rsaB.PublicKey})},
		{name: "alg PS256", in: marshal(testKey{kid: "ps", alg: "PS256", pub: &k.rsaB.PublicKey})},
		{name: "alg HS256 on RSA", in: marshal(testKey{kid: "hs", alg: "HS256", pub: &k.rsaB.PublicKey})},
		{name: "symmetric oct", in: jwkset.JWKMarshal{KTY: jwkset.KtyOct, KID: "oct", K: b64("0123456789abcdef0123456789abcdef")}},
		{name: "duplicate kid", in: func() jwkset.JWKMarshal { m := marshal(testKey{pub: &k.rsaB.PublicKey}); m.KID = "good"; return m }()},
		{name: "kid over 256 bytes", in: func() jwkset.JWKMarshal {
			m := marshal(testKey{pub: &k.rsaB.PublicKey})
			m.KID = strings.Repeat("k", 257)
			return m
		}()},
		{name: "garbage modulus", in: jwkset.JWKMarshal{KTY: jwkset.KtyRSA, KID: "bad", N: "!!", E: "AQAB"}},
		{name: "unknown kty", in: jwkset.JWKMarshal{KTY: "XYZ", KID: "xyz"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := []jwkset.JWKMarshal{tc.in}
			if tc.name == "duplicate kid" {
				in = []jwkset.JWKMarshal{good, tc.in}
			}
			keys, skipped := parseKeys(in)
			kept := len(keys) == len(in)
			if kept != tc.wantKeep {
				t.Errorf("kept %d of %d (skipped: %v), want keep=%v", len(keys), len(in), skipped, tc.wantKeep)
			}
		})
	}
	many := make([]jwkset.JWKMarshal, maxJWKSKeys+5)
	for i := range many {
		many[i] = marshal(testKey{pub: &k.rsaA.PublicKey})
	}
	if keys, _ := parseKeys(many); len(keys) != maxJWKSKeys {
		t.Errorf("kept %d keys, want the cap %d", len(keys), maxJWKSKeys)
	}
}

// A token without kid is tried against every key of its algorithm only
// while the JWKS holds at most MaxKeysWithoutKID of them: with more, each
// such token would cost the gateway that many signature checks.
func TestTokenWithoutKIDAgainstALargeJWKS(t *testing.T) {
	clk := newClock()
	keys := make([]*ecdsa.PrivateKey, MaxKeysWithoutKID+1)
	served := make([]testKey, len(keys))
	for i := range keys {
		var err error
		if keys[i], err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			t.Fatal(err)
		}
		served[i] = testKey{kid: fmt.Sprint("k", i), pub: &keys[i].PublicKey}
	}
	last := MaxKeysWithoutKID - 1
	noKID := sign(t, jwt.SigningMethodES256, keys[last], "", claims(clk.Now()), nil)

	small := newJWKSServer(t, served[:MaxKeysWithoutKID]...)
	v := newVerifier(t, Options{JWKSURL: small.url(), Now: clk.Now, RefreshInterval: time.Hour})
	if _, reason, err := v.Verify(noKID); err != nil {
		t.Fatalf("%d keys: a token without kid was refused: %s %v", MaxKeysWithoutKID, reason, err)
	}

	large := newJWKSServer(t, served...)
	v = newVerifier(t, Options{JWKSURL: large.url(), Now: clk.Now, RefreshInterval: time.Hour})
	if _, _, err := v.Verify(noKID); err == nil {
		t.Fatalf("%d keys: a token without kid was tried against all of them", len(keys))
	}
	withKID := sign(t, jwt.SigningMethodES256, keys[last], served[last].kid, claims(clk.Now()), nil)
	if _, reason, err := v.Verify(withKID); err != nil {
		t.Fatalf("the same key by kid: %s %v", reason, err)
	}
}
