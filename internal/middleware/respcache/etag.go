package respcache

import "strings"

// etagMatches reports whether any entity tag of If-None-Match lines
// matches etag by weak comparison, or the list is "*".
func etagMatches(lines []string, etag string) bool {
	if etag == "" {
		return false
	}
	want := strings.TrimPrefix(etag, "W/")
	for _, line := range lines {
		for t := range strings.SplitSeq(line, ",") {
			t = strings.TrimSpace(t)
			if t == "*" || strings.TrimPrefix(t, "W/") == want {
				return true
			}
		}
	}
	return false
}
