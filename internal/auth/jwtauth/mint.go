package jwtauth

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Mint signs an HS256 development token (`gateway token`) that Verify with
// the same secret, issuer and audience accepts: sub, iat=now, exp=now+ttl,
// a random jti, and iss/aud when non-empty.
func Mint(secret []byte, sub string, ttl time.Duration, iss, aud string, now time.Time) (string, error) {
	var problems []error
	if len(secret) == 0 {
		problems = append(problems, errors.New("minting a token: JWT_SECRET is empty"))
	}
	if !validSubject(sub) {
		problems = append(problems, fmt.Errorf("minting a token: sub %q: %w", sub, ErrBadSubject))
	}
	if ttl <= 0 {
		problems = append(problems, fmt.Errorf("minting a token: ttl %s: must be positive", ttl))
	}
	if err := errors.Join(problems...); err != nil {
		return "", err
	}
	var jti [16]byte
	_, _ = rand.Read(jti[:]) // crypto/rand.Read never fails (Go ≥ 1.24)
	rc := jwt.RegisteredClaims{
		Subject:   sub,
		Issuer:    iss,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		ID:        hex.EncodeToString(jti[:]),
	}
	if aud != "" {
		rc.Audience = jwt.ClaimStrings{aud}
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, rc).SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("minting a token: %w", err)
	}
	return s, nil
}
