//go:build pprof

// Profiling build for developers: `go build -tags pprof ./cmd/gateway` and
// set PPROF_ADDR (e.g. 127.0.0.1:6060) to serve net/http/pprof there. The
// default build has no profiling endpoint.
package main

import (
	"net/http"
	_ "net/http/pprof"
	"os"
)

func init() {
	if addr := os.Getenv("PPROF_ADDR"); addr != "" {
		go http.ListenAndServe(addr, nil)
	}
}
