package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"

	"github.com/charmbracelet/x/term"

	"github.com/portcullis/portcullis/internal/dashboard"
	"github.com/portcullis/portcullis/internal/gateway"
	"github.com/portcullis/portcullis/internal/telemetry"
)

// logSwitch is the destination under the log buffer: stdout, or LOG_FILE
// while the dashboard owns the terminal. Only the buffer's flusher writes
// to it, so its lock is uncontended.
type logSwitch struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *logSwitch) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (s *logSwitch) set(w io.Writer) {
	s.mu.Lock()
	s.w = w
	s.mu.Unlock()
}

// wantDashboard: DASHBOARD=on, or auto when stdout is a terminal.
func wantDashboard(mode string, stdout io.Writer) bool {
	switch mode {
	case "on":
		return true
	case "off":
		return false
	}
	f, ok := stdout.(*os.File)
	return ok && term.IsTerminal(f.Fd())
}

// dashboardRun shows the TTY dashboard once the gateway listens. While it
// is up, logs go to LOG_FILE; q closes it and puts them back on stdout;
// Ctrl-C closes it and stops the gateway gracefully.
type dashboardRun struct {
	ctx     context.Context
	g       *gateway.Gateway
	logFile string
	stdout  io.Writer
	logs    *logSwitch
	buf     *telemetry.BufferedWriter
	log     *slog.Logger
	stop    context.CancelFunc // stops the gateway as SIGINT would
	wg      sync.WaitGroup
}

// ready is Run's callback: the dashboard starts when the gateway listens.
func (d *dashboardRun) ready(public, _ net.Addr) {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		d.show(public.String())
	}()
}

// wait returns once the dashboard is gone and the terminal restored.
func (d *dashboardRun) wait() { d.wg.Wait() }

func (d *dashboardRun) show(addr string) {
	path := d.logFile
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		d.log.Warn("dashboard not shown: LOG_FILE cannot be opened, logs stay on stdout", "log_file", path, "error", err.Error())
		return
	}
	d.log.Info("dashboard shown; logs go to LOG_FILE until it closes", "log_file", path)
	d.buf.Flush()
	d.logs.set(f)
	outcome, err := dashboard.Run(d.ctx, dashboard.Options{Source: d.g.Endpoints().Overview, Addr: addr, LogFile: path})
	d.buf.Flush()
	d.logs.set(d.stdout)
	f.Close()
	if err != nil { // no usable terminal, say, with DASHBOARD=on
		d.log.Warn("dashboard failed; logs are back on stdout, the gateway keeps serving", "error", err.Error())
		return
	}
	switch outcome {
	case dashboard.StopGateway:
		d.log.Info("dashboard: Ctrl-C, stopping the gateway")
		d.stop()
	case dashboard.Closed:
		d.log.Info("dashboard closed; logs are back on stdout, the gateway keeps serving", "log_file", path)
	}
}
