package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"testing"
	"time"
)

// same logs one record through slog.JSONHandler and through ours, both
// derived by with, and requires the same bytes.
func same(t *testing.T, with func(*slog.Logger) *slog.Logger, level slog.Level, msg string, attrs ...slog.Attr) {
	t.Helper()
	var want, got bytes.Buffer
	std := with(slog.New(slog.NewJSONHandler(&want, &slog.HandlerOptions{Level: slog.LevelDebug})))
	ours := with(slog.New(newJSONHandler(&got, slog.LevelDebug)))
	std.LogAttrs(context.Background(), level, msg, attrs...)
	ours.LogAttrs(context.Background(), level, msg, attrs...)
	// The records' times differ by the nanoseconds between the calls:
	// compare everything else byte for byte.
	strip := func(b []byte) []byte {
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("not one JSON object: %q (%v)", b, err)
		}
		if _, ok := m["time"]; !ok {
			t.Fatalf("no time: %q", b)
		}
		i := bytes.Index(b, []byte(`,"level"`))
		return b[i:]
	}
	if w, g := strip(want.Bytes()), strip(got.Bytes()); !bytes.Equal(w, g) {
		t.Errorf("lines differ\nslog: %s\nours: %s", w, g)
	}
}

type marshals struct{ A int }

func (m marshals) MarshalJSON() ([]byte, error) { return []byte(`{"custom":1}`), nil }

type valuer struct{}

func (valuer) LogValue() slog.Value { return slog.StringValue("resolved") }

func TestJSONHandlerMatchesTheStandardOne(t *testing.T) {
	plain := func(l *slog.Logger) *slog.Logger { return l }
	component := func(l *slog.Logger) *slog.Logger { return Component(l, "gateway") }
	grouped := func(l *slog.Logger) *slog.Logger { return l.With("a", 1).WithGroup("g").With("b", 2) }
	hostile := "ctl\x00\x01\x1f\x7f \"q\" \\ \n\r\t <&> é 日本 \u2028\u2029 bad\xff\xfe end"
	cases := []struct {
		name  string
		with  func(*slog.Logger) *slog.Logger
		msg   string
		attrs []slog.Attr
	}{
		{"request line", component, "request", []slog.Attr{
			slog.String("request_id", "18dfc98db7eef8f4-r0"), slog.String("client_ip", "203.0.113.9"),
			slog.String("method", "GET"), slog.String("path", "/api/x"), slog.String("route", "/api"),
			slog.Int("status", 200), slog.Float64("duration_ms", 1.663), slog.Int64("bytes", 344),
			slog.String("backend", "http://127.0.0.1:41405"), slog.String("cache", "HIT"),
		}},
		{"hostile strings", plain, hostile, []slog.Attr{slog.String(hostile, hostile)}},
		{"floats", plain, "f", []slog.Attr{
			slog.Float64("zero", 0), slog.Float64("small", 0.000001), slog.Float64("tiny", 1.5e-7),
			slog.Float64("neg", -2.5), slog.Float64("big", 1e21), slog.Float64("bigger", 1.234e25),
			slog.Float64("int", 42), slog.Float64("frac", 0.1+0.2), slog.Float64("max", math.MaxFloat64),
		}},
		{"numbers and bools", plain, "n", []slog.Attr{
			slog.Int64("min", math.MinInt64), slog.Uint64("max", math.MaxUint64), slog.Bool("t", true), slog.Bool("f", false),
		}},
		{"durations and times", plain, "d", []slog.Attr{
			slog.Duration("d", 1500*time.Millisecond), slog.Time("at", time.Date(2026, 11, 26, 4, 5, 6, 7, time.UTC)),
			slog.Time("zone", time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600))),
		}},
		{"any values", plain, "a", []slog.Attr{
			slog.Any("err", errors.New("boom \"x\"")), slog.Any("slice", []int{1, 2}), slog.Any("map", map[string]int{"k": 1}),
			slog.Any("marshaler", marshals{}), slog.Any("nil", nil), slog.Any("valuer", valuer{}),
		}},
		{"groups", grouped, "g", []slog.Attr{
			slog.Group("inner", slog.Int("x", 1), slog.Group("deeper", slog.String("y", "z"))),
			slog.Group("empty"), slog.Group("", slog.Int("inlined", 3)), slog.Int("c", 3),
		}},
		{"empty attr ignored", plain, "e", []slog.Attr{{}, slog.Int("after", 1)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, lvl := range []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError, slog.LevelInfo + 2} {
				same(t, tc.with, lvl, tc.msg, tc.attrs...)
			}
		})
	}
}

func TestJSONHandlerLevels(t *testing.T) {
	var buf bytes.Buffer
	var lv slog.LevelVar
	lv.Set(slog.LevelWarn)
	l := slog.New(newJSONHandler(&buf, &lv))
	l.Info("dropped")
	l.Warn("kept")
	if bytes.Contains(buf.Bytes(), []byte("dropped")) || !bytes.Contains(buf.Bytes(), []byte("kept")) {
		t.Fatalf("level not honoured: %s", buf.Bytes())
	}
}

func FuzzJSONHandlerStrings(f *testing.F) {
	f.Add("plain", "value")
	f.Add("ctl\x00\x1b[31m", "bad\xff utf8 \u2028")
	f.Fuzz(func(t *testing.T, key, value string) {
		var want, got bytes.Buffer
		std := slog.New(slog.NewJSONHandler(&want, nil))
		ours := slog.New(newJSONHandler(&got, nil))
		std.Info(value, key, value)
		ours.Info(value, key, value)
		var w, g map[string]any
		if err := json.Unmarshal(got.Bytes(), &g); err != nil {
			t.Fatalf("our line is not JSON: %q", got.Bytes())
		}
		_ = json.Unmarshal(want.Bytes(), &w)
		delete(w, "time")
		delete(g, "time")
		wb, _ := json.Marshal(w)
		gb, _ := json.Marshal(g)
		if !bytes.Equal(wb, gb) {
			t.Fatalf("decoded lines differ:\nslog %s\nours %s", wb, gb)
		}
		if bytes.ContainsAny(got.Bytes()[:got.Len()-1], "\n\r\x00") {
			t.Fatalf("raw control character in %q", got.Bytes())
		}
	})
}

func BenchmarkRequestLine(b *testing.B) {
	attrs := []slog.Attr{
		slog.String("request_id", "18dfc98db7eef8f4-r0"), slog.String("client_ip", "203.0.113.9"),
		slog.String("method", "GET"), slog.String("path", "/api/x"), slog.String("route", "/api"),
		slog.Int("status", 200), slog.Float64("duration_ms", 1.663), slog.Int64("bytes", 344),
		slog.String("backend", "http://127.0.0.1:41405"),
	}
	for _, h := range []struct {
		name string
		h    slog.Handler
	}{
		{"slog.JSONHandler", slog.NewJSONHandler(io.Discard, nil)},
		{"ours", newJSONHandler(io.Discard, nil)},
	} {
		b.Run(h.name, func(b *testing.B) {
			l := Component(slog.New(h.h), "gateway")
			b.ReportAllocs()
			for b.Loop() {
				l.LogAttrs(context.Background(), slog.LevelInfo, "request", attrs...)
			}
		})
		// As the access log writes: straight to the handler, no caller lookup.
		b.Run(h.name+"/direct", func(b *testing.B) {
			hh := Component(slog.New(h.h), "gateway").Handler()
			b.ReportAllocs()
			for b.Loop() {
				r := slog.NewRecord(time.Now(), slog.LevelInfo, "request", 0)
				r.AddAttrs(attrs...)
				_ = hh.Handle(context.Background(), r)
			}
		})
	}
}
