package gateway

// rates is the rate part of /stats: the last system sample's request rate,
// error rate and latency percentiles (null until the sampler has two
// samples to compare).
func (g *Gateway) rates() map[string]any {
	tr := g.sys.Latest().Traffic
	return map[string]any{
		"requests_per_second":    tr.RequestsPerSecond,
		"error_rate":             tr.ErrorRate,
		"latency_ms":             tr.LatencyMS,
		"latency_window_seconds": tr.LatencyWindowSeconds,
	}
}
