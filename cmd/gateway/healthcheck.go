package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/portcullis/portcullis/internal/config"
)

// healthcheck asks a running gateway for its /health and exits 0 when it
// answers 200, 1 otherwise. It exists for container HEALTHCHECKs: the
// distroless runtime image has no curl or wget.
//
// /health rather than /livez: it is answered by the same dispatch as the
// routes (so a gateway whose route table or handler is wedged fails it), it
// turns 503 the moment a shutdown starts (so Compose and Swarm stop sending
// traffic to a draining container), and a dead *backend* only makes it
// "degraded" with a 200 — an upstream outage is not the gateway's fault and
// must not get healthy gateways restarted. Kubernetes uses /livez and /readyz
// directly and does not need this.
//
// The address is the one the gateway itself binds, read from the same
// environment and .env: OPS_ADDR (that listener has no connection caps, so
// a saturated public side still answers), or GATEWAY_PORT with
// OPS_ADDR=public; a wildcard host is probed on loopback. --addr overrides
// it.
//
// Exit status is 0 or 1 only: Docker reserves 2 for HEALTHCHECK commands.
func healthcheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "", "host:port to probe (default: OPS_ADDR; GATEWAY_PORT with OPS_ADDR=public)")
	path := fs.String("path", "/health", "path to GET")
	timeout := fs.Duration("timeout", 3*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return 1
	}
	if fs.NArg() != 0 || *timeout <= 0 || len(*path) == 0 || (*path)[0] != '/' {
		fmt.Fprintln(stderr, "usage: gateway healthcheck [--addr HOST:PORT] [--path /health] [--timeout 3s]")
		return 1
	}
	target := *addr
	if target == "" {
		if err := config.LoadDotEnv(".env"); err != nil {
			fmt.Fprintf(stderr, "gateway healthcheck: .env: %v\n", err)
			return 1
		}
		cfg, err := config.Load(os.LookupEnv, os.Environ())
		if err != nil {
			printProblems(stderr, err)
			return 1
		}
		target = cfg.ListenAddr
		if cfg.OpsAddr != "" {
			target = cfg.OpsAddr
		}
	}
	target, err := probeAddr(target)
	if err != nil {
		fmt.Fprintf(stderr, "gateway healthcheck: %v\n", err)
		return 1
	}

	url := "http://" + target + *path
	client := &http.Client{
		Timeout:   *timeout,
		Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
		// A redirect is not health.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Get(url)
	if err != nil {
		fmt.Fprintf(stderr, "gateway healthcheck: %s: %v\n", url, err)
		return 1
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
	}
	_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body)
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "gateway healthcheck: %s: %d %s\n", url, resp.StatusCode, body.Status)
		return 1
	}
	fmt.Fprintf(stdout, "%s: %d %s\n", url, resp.StatusCode, body.Status)
	return 0
}

// probeAddr turns a listen address into one to dial: a wildcard or empty
// host becomes loopback, and port 0 (any free port) cannot be probed.
func probeAddr(listen string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("address %q: %v", listen, err)
	}
	if port == "0" {
		return "", fmt.Errorf("address %q has port 0 (any free port): pass --addr with the bound address", listen)
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return net.JoinHostPort(host, port), nil
}
