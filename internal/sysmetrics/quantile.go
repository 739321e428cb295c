package sysmetrics

// delta is cur − old bucket by bucket: the requests that finished between
// the two snapshots. A histogram whose shape changed (or that went
// backwards) yields cur alone, so a glitch never produces negative counts.
func delta(cur, old Histogram) Histogram {
	if len(old.Counts) != len(cur.Counts) || len(old.Bounds) != len(cur.Bounds) {
		return cur
	}
	d := Histogram{Bounds: cur.Bounds, Counts: make([]uint64, len(cur.Counts))}
	for i := range cur.Counts {
		if cur.Counts[i] < old.Counts[i] {
			return cur
		}
		d.Counts[i] = cur.Counts[i] - old.Counts[i]
	}
	return d
}

// quantileMS estimates the q-quantile of h in milliseconds the way
// Prometheus's histogram_quantile does: find the bucket holding the rank and
// interpolate linearly inside it. A rank in the +Inf bucket reads as the
// highest finite bound. No observations → unknown.
func quantileMS(q float64, h Histogram) Num {
	if len(h.Counts) == 0 || len(h.Counts) != len(h.Bounds)+1 {
		return unknown
	}
	total := h.Counts[len(h.Counts)-1]
	if total == 0 {
		return unknown
	}
	rank := q * float64(total)
	lower, below := 0.0, uint64(0)
	for i, upper := range h.Bounds {
		c := h.Counts[i]
		if float64(c) >= rank {
			in := c - below
			if in == 0 {
				return Num(upper * 1000)
			}
			return Num((lower + (upper-lower)*(rank-float64(below))/float64(in)) * 1000)
		}
		lower, below = upper, c
	}
	if len(h.Bounds) == 0 {
		return unknown
	}
	return Num(h.Bounds[len(h.Bounds)-1] * 1000)
}
