package jwtauth

import (
	"errors"

	"github.com/golang-jwt/jwt/v5"
)

var errNotNumericDate = errors.New("time claim is not a JSON number")

// claimSet is what a token's payload is decoded into: jwt.RegisteredClaims,
// except that exp/nbf/iat must be JSON numbers (RFC 7519 §2 NumericDate);
// jwt.NumericDate also takes "9999999999" as a string.
type claimSet struct {
	Issuer    string           `json:"iss"`
	Subject   string           `json:"sub"`
	Audience  jwt.ClaimStrings `json:"aud"`
	ExpiresAt *numericDate     `json:"exp"`
	NotBefore *numericDate     `json:"nbf"`
	IssuedAt  *numericDate     `json:"iat"`
	ID        string           `json:"jti"`
}

var _ jwt.Claims = (*claimSet)(nil)

type numericDate struct{ jwt.NumericDate }

func (d *numericDate) UnmarshalJSON(b []byte) error {
	if len(b) == 0 || (b[0] != '-' && (b[0] < '0' || b[0] > '9')) {
		return errNotNumericDate
	}
	return d.NumericDate.UnmarshalJSON(b)
}

func (d *numericDate) get() *jwt.NumericDate {
	if d == nil {
		return nil
	}
	return &d.NumericDate
}

func (c *claimSet) GetExpirationTime() (*jwt.NumericDate, error) { return c.ExpiresAt.get(), nil }
func (c *claimSet) GetNotBefore() (*jwt.NumericDate, error)      { return c.NotBefore.get(), nil }
func (c *claimSet) GetIssuedAt() (*jwt.NumericDate, error)       { return c.IssuedAt.get(), nil }
func (c *claimSet) GetIssuer() (string, error)                   { return c.Issuer, nil }
func (c *claimSet) GetSubject() (string, error)                  { return c.Subject, nil }
func (c *claimSet) GetAudience() (jwt.ClaimStrings, error)       { return c.Audience, nil }
