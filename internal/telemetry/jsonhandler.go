package telemetry

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// jsonHandler is the gateway's slog handler: the same JSON lines as
// slog.JSONHandler (one object per line: time, level, msg, then the
// attributes; strings escaped as encoding/json does, control characters
// and invalid UTF-8 never written raw), at a fraction of the cost. Every
// request writes one line, and the standard handler's generic paths (a
// float goes through encoding/json's reflection) were the largest cost of
// the gateway's own request path. Differential tests hold it to the
// standard handler's output.
type jsonHandler struct {
	w     io.Writer
	mu    *sync.Mutex // shared by every handler derived from one root
	level slog.Leveler
	// prefix is the pre-encoded attributes (and opened groups) of With
	// and WithGroup; open counts the groups it opened.
	prefix []byte
	open   int
}

func newJSONHandler(w io.Writer, level slog.Leveler) *jsonHandler {
	if level == nil {
		level = slog.LevelInfo
	}
	return &jsonHandler{w: w, mu: &sync.Mutex{}, level: level}
}

func (h *jsonHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }

func (h *jsonHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	h2 := *h
	h2.prefix = append([]byte(nil), h.prefix...)
	for _, a := range attrs {
		h2.prefix = appendAttr(h2.prefix, a)
	}
	return &h2
}

func (h *jsonHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.prefix = append([]byte(nil), h.prefix...)
	h2.prefix = appendSep(h2.prefix)
	h2.prefix = appendString(h2.prefix, name)
	h2.prefix = append(h2.prefix, ':', '{')
	h2.open++
	return &h2
}

var linePool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

func (h *jsonHandler) Handle(_ context.Context, r slog.Record) error {
	bp := linePool.Get().(*[]byte)
	buf := (*bp)[:0]
	buf = append(buf, '{')
	if !r.Time.IsZero() {
		buf = append(buf, `"time":`...)
		buf = appendTime(buf, r.Time)
		buf = append(buf, ',')
	}
	buf = append(buf, `"level":`...)
	buf = appendString(buf, r.Level.String())
	buf = append(buf, `,"msg":`...)
	buf = appendString(buf, r.Message)
	buf = append(buf, h.prefix...)
	r.Attrs(func(a slog.Attr) bool {
		buf = appendAttr(buf, a)
		return true
	})
	for range h.open {
		buf = append(buf, '}')
	}
	buf = append(buf, '}', '\n')
	h.mu.Lock()
	_, err := h.w.Write(buf)
	h.mu.Unlock()
	if cap(buf) <= 64<<10 { // do not keep a rare huge line's buffer
		*bp = buf
		linePool.Put(bp)
	}
	return err
}

// appendSep adds the comma before a member unless an object just opened.
// An empty buffer is a With prefix, which always follows a member.
func appendSep(b []byte) []byte {
	if len(b) == 0 || b[len(b)-1] != '{' {
		b = append(b, ',')
	}
	return b
}

func appendAttr(b []byte, a slog.Attr) []byte {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return b // the empty attribute is ignored, as slog's handlers do
	}
	if a.Value.Kind() == slog.KindGroup {
		attrs := a.Value.Group()
		if len(attrs) == 0 {
			return b
		}
		if a.Key != "" {
			b = appendSep(b)
			b = appendString(b, a.Key)
			b = append(b, ':', '{')
		}
		for _, g := range attrs {
			b = appendAttr(b, g)
		}
		if a.Key != "" {
			b = append(b, '}')
		}
		return b
	}
	b = appendSep(b)
	b = appendString(b, a.Key)
	b = append(b, ':')
	return appendValue(b, a.Value)
}

func appendValue(b []byte, v slog.Value) []byte {
	switch v.Kind() {
	case slog.KindString:
		return appendString(b, v.String())
	case slog.KindInt64:
		return strconv.AppendInt(b, v.Int64(), 10)
	case slog.KindUint64:
		return strconv.AppendUint(b, v.Uint64(), 10)
	case slog.KindFloat64:
		return appendFloat(b, v.Float64())
	case slog.KindBool:
		return strconv.AppendBool(b, v.Bool())
	case slog.KindDuration:
		return strconv.AppendInt(b, int64(v.Duration()), 10) // nanoseconds, as slog.JSONHandler
	case slog.KindTime:
		return appendTime(b, v.Time())
	default:
		return appendAny(b, v.Any())
	}
}

func appendAny(b []byte, x any) []byte {
	if err, ok := x.(error); ok {
		if _, m := x.(json.Marshaler); !m {
			return appendString(b, err.Error())
		}
	}
	j, err := json.Marshal(x)
	if err != nil {
		return appendString(b, fmt.Sprintf("!ERROR:%v", err))
	}
	return append(b, j...)
}

// appendFloat formats as encoding/json does (the shortest representation;
// exponent form only for very large or small magnitudes). NaN and ±Inf,
// which JSON cannot hold, are written as strings.
func appendFloat(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return appendString(b, strconv.FormatFloat(f, 'g', -1, 64))
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	start := len(b)
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9, as encoding/json does
		n := len(b) - start
		if n >= 4 && b[len(b)-4] == 'e' && b[len(b)-3] == '-' && b[len(b)-2] == '0' {
			b[len(b)-2] = b[len(b)-1]
			b = b[:len(b)-1]
		}
	}
	return b
}

func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string, escaping as encoding/json does
// without HTML escaping (as slog.JSONHandler): quotes, backslashes and
// control characters escaped, invalid UTF-8 replaced by U+FFFD, U+2028 and
// U+2029 escaped.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
