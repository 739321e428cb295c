package main

import (
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// defaultGCPercent trades memory for CPU: a proxy's heap is mostly
// short-lived per-request garbage, and collecting it four times less often
// cuts the gateway's CPU per request noticeably (docs/bench/ has the figures).
const defaultGCPercent = 400

// tuneGC applies the gateway's GC defaults unless the operator set GOGC or
// GOMEMLIMIT. When the process runs under a cgroup memory limit, a soft limit
// of 80% of it makes the collector work harder before the kernel's OOM killer
// would, so the higher GC target never costs an OOM.
func tuneGC() (percent int, limit int64) {
	percent, limit = -2, -1 // untouched
	if _, ok := os.LookupEnv("GOGC"); !ok {
		debug.SetGCPercent(defaultGCPercent)
		percent = defaultGCPercent
	}
	if _, ok := os.LookupEnv("GOMEMLIMIT"); !ok {
		if max := cgroupMemoryMax(); max > 0 {
			limit = max / 10 * 8
			debug.SetMemoryLimit(limit)
		}
	}
	return percent, limit
}

// cgroupMemoryMax reads the cgroup v2 (or v1) memory limit; 0 = none found.
func cgroupMemoryMax() int64 {
	for _, p := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil || v <= 0 || v > 1<<50 { // "max" or the v1 "unlimited" sentinel
			continue
		}
		return v
	}
	return 0
}
