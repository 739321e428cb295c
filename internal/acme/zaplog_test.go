package acme

import (
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/portcullis/portcullis/internal/telemetry"
	"github.com/portcullis/portcullis/internal/testutil"
)

func TestZapLinesComeOutAsSlogJSON(t *testing.T) {
	t.Parallel()
	out := &testutil.SyncBuffer{}
	log := telemetry.Component(telemetry.NewLogger(out, slog.LevelInfo), "acme")
	zl := zap.New(newSlogCore(log.Handler())).Named("obtain").With(zap.String("cache", "0x1"))

	zl.Debug("filtered out by the handler's level")
	zl.Info("lock acquired", zap.String("identifier", "gw.portcullis.test"), zap.Strings("sans", []string{"a", "b"}))
	zl.Error("could not get certificate", zap.Error(errors.New("boom")), zap.Duration("retrying_in", time.Minute))

	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2 (debug filtered):\n%s", len(lines), out.String())
	}
	var info, failed map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &info); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(lines[1]), &failed); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{
		"msg": "lock acquired", "level": "INFO", "component": "acme", "logger": "obtain",
		"cache": "0x1", "identifier": "gw.portcullis.test",
	} {
		if info[k] != want {
			t.Errorf("info line %s = %v, want %v (line %s)", k, info[k], want, lines[0])
		}
	}
	if sans, _ := info["sans"].([]any); len(sans) != 2 {
		t.Errorf("sans = %v, want the two names", info["sans"])
	}
	if failed["level"] != "ERROR" || failed["error"] != "boom" || failed["retrying_in"] == nil {
		t.Errorf("error line = %s", lines[1])
	}
}
