// Package e2e holds end-to-end tests whose heavy dependencies (a browser
// driver, the Kubernetes API types) stay out of the gateway's own go.mod.
// They drive the built binary named by GATEWAY_BIN and the repository's
// deployment files; `make test` runs them after the main module's tests.
package e2e
