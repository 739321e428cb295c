// Command gateway runs Portcullis, a public-facing API gateway.
//
//	gateway             serve with the configuration from the environment (and .env)
//	gateway validate    check the configuration and exit (0 valid, 2 invalid)
//	gateway healthcheck GET /health of a running gateway, exit 0 or 1
//	gateway version     print the version
//	gateway help        this text
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"

	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/gateway"
	"github.com/portcullis/portcullis/internal/telemetry"
)

const usage = `Portcullis API gateway

Usage:
  gateway [serve]     run the gateway (configuration from the environment; a .env
                      file in the working directory is loaded first, the real
                      environment wins)
  gateway validate    check the configuration, print every problem, and exit
                      (0 = valid, 2 = invalid)
  gateway hash-key KEY
                      print the SHA-256 digest of an API key, for API_KEY_HASHES,
                      API_KEYS_FILE or the key stores (the key itself is never stored)
  gateway token --sub NAME [--ttl 1h]
                      mint a development HS256 token signed with JWT_SECRET
  gateway healthcheck [--addr HOST:PORT] [--path /health] [--timeout 3s]
                      GET /health of a running gateway (on OPS_ADDR; on
                      GATEWAY_PORT with OPS_ADDR=public); exit 0 when it
                      answers 200, else 1 (for container HEALTHCHECKs: the
                      image has no curl)
  gateway version     print the version
  gateway help        print this help (also -h, --help)

Configuration variables are listed in docs/configuration.md.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 {
		cmd = args[0]
	}
	switch cmd {
	case "serve":
	case "validate":
	case "hash-key":
		return hashKey(args[1:], stdout, stderr)
	case "token":
		return mintToken(args[1:], stdout, stderr)
	case "healthcheck":
		return healthcheck(args[1:], stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintf(stdout, "gateway %s (%s)\n", gateway.Version, runtime.Version())
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "gateway: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	if len(args) > 1 {
		fmt.Fprintf(stderr, "gateway %s: unexpected arguments %q\n", cmd, strings.Join(args[1:], " "))
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
	if cmd == "validate" {
		for _, w := range cfg.Warnings {
			fmt.Fprintf(stderr, "warning: %s\n", w)
		}
		fmt.Fprintf(stdout, "configuration valid: %d routes (%s), listening on %s\n", len(cfg.Routes), cfg.RoutesSource, cfg.ListenAddr)
		return 0
	}

	// SIGHUP reloads CONFIG_FILE. It is caught from here on, before the
	// slow part of the boot: its default action would kill the gateway,
	// and a config reloader may send one at any time. One that arrives
	// during the boot is handled once the gateway is up.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	logs := &logSwitch{w: stdout} // LOG_FILE while the dashboard is up
	out := telemetry.NewBufferedWriter(logs)
	defer out.Close()
	log := telemetry.NewLogger(out, cfg.LogLevel)
	cfgLog := telemetry.Component(log, "config")
	for _, w := range cfg.Warnings {
		cfgLog.Warn(w)
	}
	if percent, limit := tuneGC(); percent > 0 || limit > 0 {
		cfgLog.Info("runtime GC tuned (set GOGC or GOMEMLIMIT to override)", "gc_percent", percent, "memory_limit_bytes", limit)
	}
	gateway.RouteRedisLogs(log)
	g, err := gateway.New(cfg, log)
	if err != nil {
		out.Flush()
		fmt.Fprintf(stderr, "gateway: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go g.ReloadOnSignal(ctx, hup)
	var ready func(public, ops net.Addr)
	if wantDashboard(cfg.Dashboard, stdout) {
		dash := &dashboardRun{ctx: ctx, g: g, logFile: cfg.LogFile, stdout: stdout, logs: logs, buf: out,
			log: telemetry.Component(log, "gateway"), stop: stop}
		ready = dash.ready
		defer func() { stop(); dash.wait() }() // the terminal is restored before the process exits
	}
	if err := g.Run(ctx, ready); err != nil {
		telemetry.Component(log, "gateway").Error("gateway failed", "error", err.Error())
		return 1
	}
	return 0
}

// printProblems writes one line per configuration problem.
func printProblems(w io.Writer, err error) {
	var joined interface{ Unwrap() []error }
	if errors.As(err, &joined) {
		for _, e := range joined.Unwrap() {
			printProblems(w, e)
		}
		return
	}
	fmt.Fprintf(w, "config: %s\n", err)
}
