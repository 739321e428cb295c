package gwerror

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/portcullis/portcullis/internal/request"
)

func TestWrite(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		msg     string
		id      string // "" → no request.Info in the context
		wantMsg string // the message after decoding; msg if empty
	}{
		{name: "plain", status: 404, msg: "no route", id: "abc-1"},
		{name: "no request info", status: 400, msg: "bad request"},
		{name: "quotes and backslash", status: 400, msg: `say "hi" \ bye`, id: "r1"},
		{name: "control characters", status: 400, msg: "a\x00b\nc\rd\te\x1bf\x7fg", id: "r2"},
		{name: "forged JSON field", status: 400, msg: `x","request_id":"forged`, id: "real"},
		{name: "valid unicode kept", status: 400, msg: "héllo ✓ \u2028", id: "r3"},
		{name: "invalid UTF-8 replaced", status: 400, msg: "a\xffb\xc3", id: "r4", wantMsg: "a\ufffdb\ufffd"},
		{name: "empty message", status: 500, msg: "", id: "r5"},
		{name: "long message", status: 413, msg: strings.Repeat("x", 10000), id: "r6"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			rec := httptest.NewRecorder()
			var w http.ResponseWriter = rec
			if tc.id != "" {
				var in *request.Info
				in, r = request.New(rec, r, time.Now(), 0)
				in.ID = tc.id
				w = in.Writer()
			}
			// Stale headers from an upstream answer must not survive.
			w.Header().Set("Content-Length", "99999")
			w.Header().Set("Content-Encoding", "gzip")
			Write(w, r, tc.status, tc.msg)

			res := rec.Result()
			body, _ := io.ReadAll(res.Body)
			if res.StatusCode != tc.status {
				t.Errorf("status %d, want %d", res.StatusCode, tc.status)
			}
			if ct := res.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q, want application/json", ct)
			}
			if cl := res.Header.Values("Content-Length"); len(cl) != 1 || cl[0] != strconv.Itoa(len(body)) {
				t.Errorf("Content-Length %q, body is %d bytes", cl, len(body))
			}
			if ce := res.Header.Get("Content-Encoding"); ce != "" {
				t.Errorf("Content-Encoding %q survived", ce)
			}
			if !utf8.Valid(body) || !json.Valid(body) {
				t.Fatalf("body is not valid UTF-8 JSON: %q", body)
			}
			if strings.Count(string(body), "\n") != 1 || !strings.HasSuffix(string(body), "}\n") {
				t.Errorf("body %q: want one line ending in a newline", body)
			}
			var got map[string]any
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatal(err)
			}
			want := tc.wantMsg
			if want == "" {
				want = tc.msg
			}
			if len(got) != 2 || got["error"] != want || got["request_id"] != tc.id {
				t.Errorf("body %q decodes to %v, want error=%q request_id=%q", body, got, want, tc.id)
			}
		})
	}
}

// Every byte value round-trips through the escaper as valid JSON.
func TestAppendJSONStringAllBytes(t *testing.T) {
	for c := range 256 {
		s := "a" + string([]byte{byte(c)}) + "b"
		out := appendJSONString(nil, s)
		var got string
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("byte %#x: %q is not a JSON string: %v", c, out, err)
		}
		want := s
		if !utf8.ValidString(s) {
			want = "a\ufffdb"
		}
		if got != want {
			t.Errorf("byte %#x: decoded %q, want %q", c, got, want)
		}
	}
}
