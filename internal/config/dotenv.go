package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/joho/godotenv"
)

// LoadDotEnv loads path (usually ".env") into the process environment. A
// variable already present in the environment, even set to "", is left alone:
// the real environment wins. A missing file is not an error; a malformed one is.
// It runs before Load and is the only function here that changes process state.
func LoadDotEnv(path string) error {
	vars, err := godotenv.Read(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("loading %s: %s", path, dotenvProblem(err))
	}
	for k, v := range vars {
		if _, set := os.LookupEnv(k); set {
			continue
		}
		if err := os.Setenv(k, v); err != nil {
			return fmt.Errorf("loading %s: setting %s: %w", path, k, err)
		}
	}
	return nil
}

// dotenvProblem shortens godotenv's parse errors, which quote the rest of the
// file (secrets included), to their first clause.
func dotenvProblem(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, " near "); i >= 0 {
		msg = msg[:i]
	}
	if strings.HasPrefix(msg, "unterminated quoted value") {
		msg = "unterminated quoted value"
	}
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i]
	}
	return "malformed file: " + msg
}
