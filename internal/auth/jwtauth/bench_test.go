package jwtauth

import (
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func BenchmarkVerifyHS256(b *testing.B) {
	v := newVerifier(b, Options{Secret: testSecret, Issuer: testIss, Audience: testAud})
	tok := sign(b, jwt.SigningMethodHS256, testSecret, "", claims(time.Now(), set("exp", time.Now().Add(time.Hour).Unix())), nil)
	benchVerify(b, v, tok)
}

func BenchmarkVerifyRS256(b *testing.B) {
	k := testKeys()
	srv := newJWKSServer(b, testKey{kid: "a", pub: &k.rsaA.PublicKey})
	v := newVerifier(b, Options{JWKSURL: srv.url(), Issuer: testIss, Audience: testAud})
	tok := sign(b, jwt.SigningMethodRS256, k.rsaA, "a", claims(time.Now(), set("exp", time.Now().Add(time.Hour).Unix())), nil)
	benchVerify(b, v, tok)
}

func BenchmarkVerifyES256(b *testing.B) {
	k := testKeys()
	srv := newJWKSServer(b, testKey{kid: "e", pub: &k.ecA.PublicKey})
	v := newVerifier(b, Options{JWKSURL: srv.url(), Issuer: testIss, Audience: testAud})
	tok := sign(b, jwt.SigningMethodES256, k.ecA, "e", claims(time.Now(), set("exp", time.Now().Add(time.Hour).Unix())), nil)
	benchVerify(b, v, tok)
}

func benchVerify(b *testing.B, v *Verifier, tok string) {
	b.Helper()
	if _, reason, err := v.Verify(tok); err != nil {
		b.Fatalf("Verify: %s %v", reason, err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := v.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}
