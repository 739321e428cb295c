package methods

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestMethods(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	tests := []struct {
		name      string
		allowed   []string
		method    string
		want      int
		wantAllow string
	}{
		{name: "any method when none are listed", method: "PROPFIND", want: http.StatusTeapot},
		{name: "a listed method", allowed: []string{"GET", "HEAD", "POST"}, method: "POST", want: http.StatusTeapot},
		{name: "another method", allowed: []string{"GET", "HEAD", "POST"}, method: "DELETE", want: http.StatusMethodNotAllowed, wantAllow: "GET, HEAD, POST"},
		{name: "methods are case-sensitive", allowed: []string{"GET", "HEAD"}, method: "get", want: http.StatusMethodNotAllowed, wantAllow: "GET, HEAD"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			New(tc.allowed)(ok).ServeHTTP(w, httptest.NewRequest(tc.method, "/x", nil))
			if w.Code != tc.want || w.Header().Get("Allow") != tc.wantAllow {
				t.Errorf("%d Allow %q, want %d %q", w.Code, w.Header().Get("Allow"), tc.want, tc.wantAllow)
			}
		})
	}
}
