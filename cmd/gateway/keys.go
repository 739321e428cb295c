package main

import (
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/portcullis/portcullis/internal/auth/jwtauth"
	"github.com/portcullis/portcullis/internal/config"
)

// hashKey prints the digest the gateway stores for an API key. The key comes
// from the argument, or from standard input with "-" (so it stays out of the
// shell history and the process list).
func hashKey(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: gateway hash-key KEY   (or - to read the key from standard input)")
		return 2
	}
	key := args[0]
	if key == "-" {
		b, err := io.ReadAll(io.LimitReader(os.Stdin, 64<<10))
		if err != nil {
			fmt.Fprintf(stderr, "gateway hash-key: reading standard input: %v\n", err)
			return 1
		}
		key = strings.TrimRight(string(b), "\r\n")
	}
	if key == "" {
		fmt.Fprintln(stderr, "gateway hash-key: the key is empty")
		return 2
	}
	sum := sha256.Sum256([]byte(key))
	fmt.Fprintln(stdout, hex.EncodeToString(sum[:]))
	return 0
}

// mintToken signs a development HS256 token with the configured JWT_SECRET
// (and JWT_ISSUER / JWT_AUDIENCE when set), so a route with require_auth can
// be tried without an identity provider.
func mintToken(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sub := fs.String("sub", "", "subject (the X-User-ID the upstream sees); required")
	ttl := fs.Duration("ttl", time.Hour, "lifetime of the token")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *sub == "" || fs.NArg() != 0 || *ttl <= 0 {
		fmt.Fprintln(stderr, "usage: gateway token --sub NAME [--ttl 1h]")
		return 2
	}
	if err := config.LoadDotEnv(".env"); err != nil {
		fmt.Fprintf(stderr, ".env: %v\n", err)
		return 2
	}
	cfg, err := config.Load(os.LookupEnv, os.Environ())
	if err != nil {
		printProblems(stderr, err)
		return 2
	}
	if cfg.JWTSecret == "" {
		fmt.Fprintln(stderr, "gateway token: JWT_SECRET is not set, so the gateway accepts no HS256 token")
		return 2
	}
	tok, err := jwtauth.Mint([]byte(cfg.JWTSecret), *sub, *ttl, cfg.JWTIssuer, cfg.JWTAudience, time.Now())
	if err != nil {
		fmt.Fprintf(stderr, "gateway token: %v\n", err)
		return 2
	}
	fmt.Fprintln(stdout, tok)
	return 0
}
