package dashboard

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"charm.land/lipgloss/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/portcullis/portcullis/internal/overview"
	"github.com/portcullis/portcullis/internal/sysmetrics"
)

// The palette is the terminal's own 16 colours, so the dashboard follows
// the user's light or dark theme.
var (
	cMuted  = lipgloss.Color("8")
	cGood   = lipgloss.Color("2")
	cWarn   = lipgloss.Color("3")
	cBad    = lipgloss.Color("1")
	cAccent = lipgloss.Color("4")
	cCyan   = lipgloss.Color("6")

	sBrand = lipgloss.NewStyle().Bold(true).Reverse(true).Foreground(cAccent)
	sBold  = lipgloss.NewStyle().Bold(true)
	sMuted = lipgloss.NewStyle().Foreground(cMuted)
	sTitle = lipgloss.NewStyle().Bold(true).Foreground(cAccent)
	sGood  = lipgloss.NewStyle().Foreground(cGood)
	sWarn  = lipgloss.NewStyle().Foreground(cWarn)
	sBad   = lipgloss.NewStyle().Foreground(cBad).Bold(true)
	sSpark = lipgloss.NewStyle().Foreground(cCyan)
	sCyan  = lipgloss.NewStyle().Foreground(cCyan)
	sBox   = lipgloss.NewStyle().Border(lipgloss.RoundedBorder()).BorderForeground(cMuted).Padding(0, 1)
	sKey   = lipgloss.NewStyle().Bold(true).Foreground(cAccent)
)

// render draws the whole screen for a width × height terminal; every line
// fits the width and there are at most height lines.
func render(ov overview.Overview, o Options, width, height int, stopping bool) string {
	if width <= 0 {
		width = 80
	}
	if height <= 0 {
		height = 24
	}
	t := ov.System.Traffic

	header := headerLine(ov, o, width)

	// The three panels, side by side when they fit, else stacked.
	sparkW := min(max(width/2-34, 8), 60)
	traffic := panel("Traffic", []string{
		kv("Requests", sBold.Render(group(ov.Requests))),
		kv("Rate", sBold.Render(rate(t.RequestsPerSecond))+" "+sSpark.Render(sparkline(ov.History, sparkW))),
		kv("Status", statusSplit(ov.Status)),
		kv("Errors", errorRate(t.ErrorRate)+sMuted.Render(" 5xx, last second")),
	})
	latency := panel("Latency", []string{
		kv("p50", sBold.Render(millis(t.LatencyMS.P50))),
		kv("p90", sBold.Render(millis(t.LatencyMS.P90))),
		kv("p99", latencyStyle(t.LatencyMS.P99).Render(millis(t.LatencyMS.P99))),
		sMuted.Render(fmt.Sprintf("over the last %.0f s", t.LatencyWindowSeconds)),
	})
	edge := panel("Edge", []string{
		kv("Connections", sBold.Render(group(ov.ActiveConnections))),
		kv("In flight", sBold.Render(group(ov.Inflight))),
		kv("Blocked IPs", blocked(ov.BlockedIPs)),
		kv("Cache hits", cacheRatio(t.CacheHitRatio)),
	})
	var panels string
	switch {
	case lipgloss.Width(traffic)+lipgloss.Width(latency)+lipgloss.Width(edge)+2 <= width:
		panels = lipgloss.JoinHorizontal(lipgloss.Top, traffic, " ", latency, " ", edge)
	case lipgloss.Width(latency)+lipgloss.Width(edge)+1 <= width:
		panels = lipgloss.JoinVertical(lipgloss.Left, traffic, lipgloss.JoinHorizontal(lipgloss.Top, latency, " ", edge))
	default:
		panels = lipgloss.JoinVertical(lipgloss.Left, traffic, latency, edge)
	}

	sys := ov.System
	hostLine := sMuted.Render("Host ") + "CPU " + percent(sys.Host.CPUPercent) +
		sMuted.Render(" · ") + "mem " + fmt.Sprintf("%.0f%%", sys.Host.Memory.UsedPercent) +
		sMuted.Render(" · ") + "load " + fmt.Sprintf("%.2f", sys.Host.Load.Load1) +
		sMuted.Render("   Gateway ") + "CPU " + percent(sys.Process.CPUPercent) +
		sMuted.Render(" · ") + "RSS " + bytes(sys.Process.RSSBytes) +
		sMuted.Render(" · ") + strconv.Itoa(sys.Process.Goroutines) + " goroutines"

	footer := footerLine(o, width, stopping)

	top := []string{header, ""}
	top = append(top, strings.Split(panels, "\n")...)
	top = append(top, "", hostLine)
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	if certs := certLine(ov.Certificates, now(), width); certs != "" {
		top = append(top, certs)
	}
	top = append(top, "")
	// Whatever height is left goes to the routes table.
	rows := height - len(top) - 1
	lines := append(top, routesTable(ov.Routes, width, rows)...)
	if len(lines) > height-1 {
		lines = lines[:height-1]
	}
	for len(lines) < height-1 {
		lines = append(lines, "")
	}
	lines = append(lines, footer)
	for i, l := range lines {
		lines[i] = ansi.Truncate(l, width, "…")
	}
	return strings.Join(lines, "\n")
}

func headerLine(ov overview.Overview, o Options, width int) string {
	left := sBrand.Render(" PORTCULLIS ") + " " + sBold.Render("gateway dashboard")
	state := sGood.Render("● serving")
	if ov.Draining {
		state = sWarn.Render("● draining")
	}
	right := state + sMuted.Render(" · ") + ov.Version + sMuted.Render(" · up ") + uptime(ov.Uptime)
	if o.Addr != "" {
		right += sMuted.Render(" · ") + o.Addr
	}
	gap := width - lipgloss.Width(left) - lipgloss.Width(right)
	if gap < 1 {
		return left + " " + right
	}
	return left + strings.Repeat(" ", gap) + right
}

func footerLine(o Options, width int, stopping bool) string {
	if stopping {
		return sWarn.Render("stopping the gateway gracefully…")
	}
	keys := sKey.Render("q") + sMuted.Render(" close dashboard (gateway keeps serving)  ") +
		sKey.Render("ctrl+c") + sMuted.Render(" stop gateway")
	logs := sMuted.Render("logs → ") + o.LogFile
	if lipgloss.Width(logs)+lipgloss.Width(keys)+3 <= width {
		return logs + strings.Repeat(" ", width-lipgloss.Width(logs)-lipgloss.Width(keys)) + keys
	}
	return logs + sMuted.Render(" · ") + sKey.Render("q") + sMuted.Render(" close · ") + sKey.Render("ctrl+c") + sMuted.Render(" stop")
}

func panel(title string, lines []string) string {
	return sBox.Render(sTitle.Render(title) + "\n" + strings.Join(lines, "\n"))
}

func kv(k, v string) string { return sMuted.Render(fmt.Sprintf("%-12s", k)) + v }

// certWarn is how close to expiry a certificate is shown in the warning
// colour: ACME clients (the gateway's own, cert-manager) renew about a month
// ahead, so a certificate this close is one whose renewal needs a look.
const certWarn = 14 * 24 * time.Hour

// certLine lists the served certificates with the time each has left
// (nothing without TLS): those under certWarn in the warning colour, expired
// ones in red. When they do not all fit the width, the soonest to expire
// come first and the rest are counted, never silently cut.
func certLine(certs []overview.Certificate, now time.Time, width int) string {
	if len(certs) == 0 {
		return ""
	}
	label := sMuted.Render("TLS certificates  ")
	if width < 60 {
		label = sMuted.Render("TLS  ")
	}
	sep := sMuted.Render(" · ")
	items := make([]string, len(certs))
	for i, c := range certs {
		items[i] = certItem(c, now)
	}
	if line := label + strings.Join(items, sep); lipgloss.Width(line) <= width {
		return line
	}
	order := make([]int, len(certs))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return certs[a].NotAfter.Compare(certs[b].NotAfter) })
	line := label
	for n, i := range order {
		next := line
		if n > 0 {
			next += sep
		}
		next += items[i]
		more := ""
		if rest := len(order) - n - 1; rest > 0 {
			more = sMuted.Render(fmt.Sprintf(" +%d more", rest))
		}
		if n > 0 && lipgloss.Width(next+more) > width {
			return line + sMuted.Render(fmt.Sprintf(" +%d more", len(order)-n))
		}
		line = next
	}
	return line
}

// certItem is one certificate's name and time left: "api.example.com 82d".
func certItem(c overview.Certificate, now time.Time) string {
	left := c.NotAfter.Sub(now)
	switch {
	case left <= 0:
		return sBad.Render(c.Name + " expired")
	case left < certWarn:
		return sWarn.Render(c.Name + " " + timeLeft(left))
	}
	return c.Name + " " + sBold.Render(timeLeft(left))
}

// timeLeft is whole days, or hours in the last day.
func timeLeft(d time.Duration) string {
	switch {
	case d >= 24*time.Hour:
		return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
	case d >= time.Hour:
		return fmt.Sprintf("%dh", int(d/time.Hour))
	}
	return "<1h"
}

// routesTable lists every backend of every route, within rows lines.
func routesTable(routes []overview.Route, width, rows int) []string {
	if rows < 2 {
		return nil
	}
	type row struct{ prefix, algo, url, health, breaker, inflight string }
	var all []row
	up, total := 0, 0
	for _, r := range routes {
		for i, b := range r.Backends {
			total++
			health := sBad.Render("● down")
			if b.Alive {
				health = sGood.Render("● up")
				up++
			}
			breaker := sGood.Render(b.Breaker)
			switch b.Breaker {
			case "open":
				breaker = sBad.Render("open")
			case "half-open":
				breaker = sWarn.Render("half-open")
			}
			rw := row{url: b.URL, health: health, breaker: breaker, inflight: strconv.FormatInt(b.InFlight, 10)}
			if i == 0 {
				rw.prefix, rw.algo = r.Prefix, r.Algo
			}
			all = append(all, rw)
		}
		if len(r.Backends) == 0 {
			all = append(all, row{prefix: r.Prefix, algo: r.Algo, url: sMuted.Render("(no backends)")})
		}
	}
	title := sTitle.Render("Routes") + sMuted.Render(fmt.Sprintf("  %d routes · %d/%d backends up", len(routes), up, total))
	// Column widths: fixed for the short columns, the rest shared by prefix
	// and URL.
	const healthW, breakerW, inflightW, algoW = 8, 10, 9, 12
	rest := width - healthW - breakerW - inflightW - algoW - 5
	prefixW := min(max(rest/3, 8), 28)
	urlW := max(rest-prefixW, 10)
	cell := func(s string, w int) string {
		s = ansi.Truncate(s, w, "…")
		return s + strings.Repeat(" ", max(w-lipgloss.Width(s), 0))
	}
	line := func(r row) string {
		return strings.Join([]string{cell(r.prefix, prefixW), cell(r.algo, algoW), cell(r.url, urlW),
			cell(r.health, healthW), cell(r.breaker, breakerW), cell(r.inflight, inflightW)}, " ")
	}
	out := []string{title, sMuted.Render(line(row{"PREFIX", "ALGO", "BACKEND", "HEALTH", "BREAKER", "IN FLIGHT"}))}
	room := rows - len(out)
	if len(all) > room {
		// Dead or tripped backends first: they are what an operator looks for.
		var bad, good []row
		for _, r := range all {
			if strings.Contains(r.health, "down") || !strings.Contains(r.breaker, "closed") {
				bad = append(bad, r)
			} else {
				good = append(good, r)
			}
		}
		all = append(bad, good...)
		hidden := len(all) - (room - 1)
		all = all[:max(room-1, 0)]
		for _, r := range all {
			out = append(out, line(r))
		}
		return append(out, sMuted.Render(fmt.Sprintf("… %d more backends (enlarge the terminal)", hidden)))
	}
	for _, r := range all {
		out = append(out, line(r))
	}
	return out
}

var sparks = []rune("▁▂▃▄▅▆▇█")

// sparkline draws the request rate of the last width samples.
func sparkline(points []sysmetrics.Point, width int) string {
	if len(points) > width {
		points = points[len(points)-width:]
	}
	hi := 0.0
	for _, p := range points {
		if p.RPS.Known() {
			hi = math.Max(hi, float64(p.RPS))
		}
	}
	var b strings.Builder
	for _, p := range points {
		switch {
		case !p.RPS.Known():
			b.WriteRune(' ')
		case hi == 0:
			b.WriteRune(sparks[0])
		default:
			b.WriteRune(sparks[int(math.Round(float64(p.RPS)/hi*float64(len(sparks)-1)))])
		}
	}
	return b.String()
}

func statusSplit(st [6]int64) string {
	return sGood.Render("2xx "+group(st[2])) + "  " + sCyan.Render("3xx "+group(st[3])) + "  " +
		sWarnIf(st[4]).Render("4xx "+group(st[4])) + "  " + sBadIf(st[5]).Render("5xx "+group(st[5]))
}

func sWarnIf(n int64) lipgloss.Style {
	if n > 0 {
		return sWarn
	}
	return sMuted
}

func sBadIf(n int64) lipgloss.Style {
	if n > 0 {
		return sBad
	}
	return sMuted
}

func errorRate(v sysmetrics.Num) string {
	if !v.Known() {
		return sMuted.Render("—")
	}
	s := fmt.Sprintf("%.2f%%", float64(v)*100)
	switch {
	case v >= 0.05:
		return sBad.Render(s)
	case v > 0:
		return sWarn.Render(s)
	}
	return sGood.Render(s)
}

func latencyStyle(v sysmetrics.Num) lipgloss.Style {
	switch {
	case v.Known() && v >= 1000:
		return sBad
	case v.Known() && v >= 250:
		return sWarn
	}
	return sBold
}

func blocked(n int) string {
	if n > 0 {
		return sBad.Render(strconv.Itoa(n))
	}
	return sBold.Render("0")
}

func cacheRatio(v sysmetrics.Num) string {
	if !v.Known() {
		return sMuted.Render("—")
	}
	return sBold.Render(fmt.Sprintf("%.1f%%", float64(v)*100))
}

func rate(v sysmetrics.Num) string {
	if !v.Known() {
		return "— req/s"
	}
	return fmt.Sprintf("%.1f req/s", float64(v))
}

func millis(v sysmetrics.Num) string {
	switch {
	case !v.Known():
		return "—"
	case v >= 1000:
		return fmt.Sprintf("%.2f s", float64(v)/1000)
	case v >= 100:
		return fmt.Sprintf("%.0f ms", float64(v))
	case v >= 10:
		return fmt.Sprintf("%.1f ms", float64(v))
	}
	return fmt.Sprintf("%.2f ms", float64(v))
}

func percent(v sysmetrics.Num) string {
	if !v.Known() {
		return "—"
	}
	return fmt.Sprintf("%.0f%%", float64(v))
}

// group writes n with thousands separators: 12,345.
func group(n int64) string {
	s := strconv.FormatInt(n, 10)
	if n < 0 || len(s) <= 3 {
		return s
	}
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func bytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func uptime(d time.Duration) string {
	d = d.Truncate(time.Second)
	switch {
	case d >= 24*time.Hour:
		return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
	case d >= time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return d.String()
}
