"use strict";
(function () {
  const WINDOW_MS = 5 * 60 * 1000; // the most the charts show
  const MIN_SPAN_MS = 30 * 1000;     // the least, so a fresh gateway's first points spread out
  const API = "api/system-metrics";
  const $ = (id) => document.getElementById(id);
  let points = [];      // history, oldest first
  let lastT = 0;        // newest point's time (Unix ms)
  let every = 1000;     // polling period, from the server's interval
  let failures = 0;
  let lastOK = 0;

  // ---- formatting -------------------------------------------------------
  const known = (v) => typeof v === "number" && isFinite(v);
  function num(v, digits) {
    if (!known(v)) return "—";
    const a = Math.abs(v);
    if (a >= 1e9) return (v / 1e9).toFixed(1) + "G";
    if (a >= 1e6) return (v / 1e6).toFixed(1) + "M";
    if (a >= 1e4) return (v / 1e3).toFixed(1) + "k";
    if (digits === undefined) digits = a >= 100 ? 0 : a >= 10 ? 1 : 2;
    return v.toFixed(digits);
  }
  function bytes(v) {
    if (!known(v)) return "—";
    const u = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let i = 0;
    while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
    return (v >= 100 || i === 0 ? v.toFixed(0) : v.toFixed(1)) + " " + u[i];
  }
  const pct = (v, d) => (known(v) ? num(v, d === undefined ? (v >= 10 ? 0 : 1) : d) + "%" : "—");
  function ms(v, digits) {
    if (!known(v)) return "—";
    if (v >= 1000) return (v / 1000).toFixed(v >= 10000 ? 0 : 2) + " s";
    if (digits !== undefined) return v.toFixed(digits) + " ms";
    return (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)) + " ms";
  }
  function duration(s) {
    s = Math.floor(s);
    const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
    if (d) return d + "d " + h + "h";
    if (h) return h + "h " + m + "m";
    if (m) return m + "m " + (s % 60) + "s";
    return s + "s";
  }
  const clock = (t) => new Date(t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

  // ---- charts -----------------------------------------------------------
  // A line chart on a canvas: time on x (the last five minutes), nice ticks
  // on y, gaps where a figure is unknown, a crosshair and tooltip on hover.
  class Chart {
    constructor(id, series, opts) {
      this.canvas = $(id);
      this.ctx = this.canvas.getContext("2d");
      this.series = series;       // [{key, label, color, fmt, fill}]
      this.opts = opts || {};     // {min, max, fmt}
      this.legend = this.canvas.parentElement.querySelector(".legend");
      this.hover = null;
      this.legend.replaceChildren(...series.map((s) => {
        const el = document.createElement("span");
        const sw = document.createElement("i");
        const b = document.createElement("b");
        el.append(sw, s.label + " ", b);
        s.swatch = sw; s.value = b;
        return el;
      }));
      this.canvas.addEventListener("pointermove", (e) => { this.hover = e; this.draw(); });
      this.canvas.addEventListener("pointerleave", () => { this.hover = null; this.draw(); hideTip(); });
      new ResizeObserver(() => this.draw()).observe(this.canvas);
    }
    draw() {
      const c = this.canvas, ctx = this.ctx, dpr = window.devicePixelRatio || 1;
      const w = c.clientWidth, h = c.clientHeight;
      if (!w || !h) return;
      if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) {
        c.width = Math.round(w * dpr); c.height = Math.round(h * dpr);
      }
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      ctx.clearRect(0, 0, w, h);
      const now = points.length ? points[points.length - 1].t : Date.now();
      const span = Math.min(WINDOW_MS, Math.max(MIN_SPAN_MS, points.length ? now - points[0].t : 0));
      const t0 = now - span;
      const vis = points.filter((p) => p.t >= t0);
      let lo = this.opts.min !== undefined ? this.opts.min : Infinity, hi = this.opts.max !== undefined ? this.opts.max : -Infinity;
      let drawn = 0;
      for (const s of this.series) {
        for (const p of vis) {
          const v = s.get(p);
          if (!known(v)) continue;
          drawn += s === this.series[0] ? 1 : 0;
          if (this.opts.min === undefined) lo = Math.min(lo, v);
          if (this.opts.max === undefined || v > hi) hi = Math.max(hi, v);
        }
      }
      if (!isFinite(lo)) lo = 0;
      if (!isFinite(hi) || hi <= lo) hi = lo + (this.opts.floor || 1);
      lo = Math.min(lo, 0);
      const ticks = niceTicks(lo, hi, h < 170 ? 3 : 4);
      lo = ticks[0]; hi = ticks[ticks.length - 1];
      const fmt = this.opts.fmt || ((v, d) => num(v, d));
      const step = ticks.length > 1 ? ticks[1] - ticks[0] : 1;
      const tickDigits = Math.max(0, -Math.floor(Math.log10(step) + 1e-9)) + (step / Math.pow(10, Math.floor(Math.log10(step) + 1e-9)) === 2.5 ? 1 : 0);
      const tickFmt = (v) => fmt(v, tickDigits);
      ctx.font = "11px system-ui, sans-serif";
      const padL = Math.max(...ticks.map((t) => ctx.measureText(tickFmt(t)).width)) + 10, padR = 8, padT = 8, padB = 20;
      const pw = w - padL - padR, ph = h - padT - padB;
      const X = (t) => padL + ((t - t0) / span) * pw;
      const Y = (v) => padT + ph - ((v - lo) / (hi - lo)) * ph;
      // grid and axes
      ctx.strokeStyle = css("--grid"); ctx.fillStyle = css("--muted"); ctx.lineWidth = 1;
      ctx.textAlign = "right"; ctx.textBaseline = "middle";
      for (const t of ticks) {
        const y = Math.round(Y(t)) + 0.5;
        ctx.beginPath(); ctx.moveTo(padL, y); ctx.lineTo(w - padR, y); ctx.stroke();
        ctx.fillText(tickFmt(t), padL - 6, y);
      }
      ctx.textAlign = "center"; ctx.textBaseline = "top";
      const every = [10e3, 15e3, 30e3, 60e3, 120e3].find((e) => span / e <= Math.max(2, Math.floor(pw / 70))) || 120e3;
      for (let back = 0; back <= span + 1; back += every) {
        const x = X(now - back);
        const label = back === 0 ? "now" : back < 60e3 ? "−" + back / 1e3 + " s" : "−" + back / 60e3 + " min";
        ctx.fillText(label, Math.min(Math.max(x, padL + 18), w - padR - 14), h - padB + 5);
      }
      // series
      for (const s of this.series) {
        const color = css(s.color);
        s.swatch.style.background = color;
        ctx.strokeStyle = color; ctx.lineWidth = 2; ctx.lineJoin = "round";
        let run = [];
        const flush = () => {
          if (!run.length) return;
          ctx.beginPath();
          run.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
          if (run.length === 1) ctx.arc(run[0][0], run[0][1], 1.5, 0, 2 * Math.PI);
          ctx.stroke();
          if (s.fill) {
            ctx.lineTo(run[run.length - 1][0], Y(lo)); ctx.lineTo(run[0][0], Y(lo)); ctx.closePath();
            const g = ctx.createLinearGradient(0, padT, 0, padT + ph);
            g.addColorStop(0, color + "55"); g.addColorStop(1, color + "05");
            ctx.fillStyle = g; ctx.fill();
          }
          run = [];
        };
        for (const p of vis) {
          const v = s.get(p);
          if (known(v)) run.push([X(p.t), Y(Math.min(Math.max(v, lo), hi))]); else flush();
        }
        flush();
        const last = [...vis].reverse().find((p) => known(s.get(p)));
        s.value.textContent = last ? (s.fmt || fmt)(s.get(last)) : "—";
      }
      c.dataset.points = String(drawn);
      const lastP = vis[vis.length - 1];
      c.setAttribute("aria-label", c.getAttribute("aria-label").split(":")[0] + ": " +
        this.series.map((s) => s.label + " " + (lastP ? (s.fmt || fmt)(s.get(lastP)) : "no data")).join(", "));
      // hover
      if (this.hover && vis.length) {
        const r = c.getBoundingClientRect(), mx = this.hover.clientX - r.left;
        const t = t0 + ((mx - padL) / pw) * span;
        let best = vis[0];
        for (const p of vis) if (Math.abs(p.t - t) < Math.abs(best.t - t)) best = p;
        const x = Math.round(X(best.t)) + 0.5;
        ctx.strokeStyle = css("--muted"); ctx.setLineDash([3, 3]);
        ctx.beginPath(); ctx.moveTo(x, padT); ctx.lineTo(x, padT + ph); ctx.stroke(); ctx.setLineDash([]);
        for (const s of this.series) {
          const v = s.get(best);
          if (!known(v)) continue;
          ctx.fillStyle = css(s.color); ctx.beginPath(); ctx.arc(x, Y(Math.min(Math.max(v, lo), hi)), 3.5, 0, 2 * Math.PI); ctx.fill();
        }
        showTip(this.hover.clientX, this.hover.clientY, clock(best.t),
          this.series.map((s) => [css(s.color), s.label, (s.fmt || fmt)(s.get(best))]));
      }
    }
  }

  function niceTicks(lo, hi, n) {
    const span = hi - lo, raw = span / n, mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => span / s <= n) || 10 * mag;
    const out = [];
    for (let v = Math.floor(lo / step) * step; v <= hi + step * 0.999; v += step) {
      out.push(Math.round(v / step) * step);
      if (v >= hi) break;
    }
    return out.length > 1 ? out : [lo, hi];
  }

  const tip = $("tip");
  function showTip(x, y, title, rows) {
    const head = document.createElement("div");
    head.className = "t"; head.textContent = title;
    tip.replaceChildren(head, ...rows.map(([color, label, value]) => {
      const d = document.createElement("div"), dot = document.createElement("i");
      dot.style.background = color;
      d.append(dot, label + "  " + value);
      return d;
    }));
    tip.hidden = false;
    const r = tip.getBoundingClientRect();
    tip.style.left = Math.min(x + 14, window.innerWidth - r.width - 8) + "px";
    tip.style.top = Math.max(y - r.height - 10, 8) + "px";
  }
  function hideTip() { tip.hidden = true; }

  const charts = [
    new Chart("c-rps", [{ key: "rps", label: "requests/s", color: "--c-rps", fill: true, get: (p) => p.requests_per_second }], { floor: 1 }),
    new Chart("c-lat", [
      { label: "p50", color: "--c-p50", get: (p) => p.p50_ms },
      { label: "p90", color: "--c-p90", get: (p) => p.p90_ms },
      { label: "p99", color: "--c-p99", get: (p) => p.p99_ms },
    ], { fmt: (v, d) => ms(v, d), floor: 1 }),
    new Chart("c-err", [{ label: "5xx", color: "--c-err", fill: true, get: (p) => (known(p.error_rate) ? p.error_rate * 100 : null) }], { fmt: (v, d) => pct(v, d), floor: 1, min: 0 }),
    new Chart("c-cpu", [
      { label: "host", color: "--c-cpu", fill: true, get: (p) => p.host_cpu_percent },
      { label: "gateway", color: "--c-proc", get: (p) => p.process_cpu_percent },
    ], { fmt: (v, d) => pct(v, d), min: 0, floor: 10 }),
    new Chart("c-mem", [{ label: "host used", color: "--c-mem", fill: true, get: (p) => p.memory_used_percent }], { fmt: (v, d) => pct(v, d), min: 0, max: 100 }),
    new Chart("c-disk", [{ label: "used", color: "--c-disk", fill: true, get: (p) => p.disk_used_percent }], { fmt: (v, d) => pct(v, d), min: 0, max: 100 }),
    new Chart("c-gor", [{ label: "goroutines", color: "--c-gor", fill: true, get: (p) => p.goroutines, fmt: (v) => num(v, 0) }], { floor: 10 }),
  ];
  const drawAll = () => charts.forEach((c) => c.draw());
  window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", drawAll);

  // ---- figures ------------------------------------------------------------
  function set(id, text, cls) {
    const el = $(id);
    el.textContent = text;
    if (cls !== undefined) el.className = "v " + cls;
  }
  function fact(dl, k, v) {
    const dt = document.createElement("dt"), dd = document.createElement("dd");
    dt.textContent = k; dd.textContent = v;
    dl.append(dt, dd);
  }
  function render(m) {
    const tr = m.traffic, host = m.host, pr = m.process;
    $("version").textContent = m.version || "—";
    $("uptime").textContent = duration(m.uptime_seconds || 0);
    set("k-rps", num(tr.requests_per_second));
    $("k-rps-s").textContent = num(tr.requests_total, 0) + " total";
    const p99 = tr.latency_ms.p99;
    set("k-p99", ms(p99), known(p99) && p99 >= 1000 ? "bad" : known(p99) && p99 >= 250 ? "warn" : "");
    $("k-p99-s").textContent = "p50 " + ms(tr.latency_ms.p50) + " · p90 " + ms(tr.latency_ms.p90);
    $("k-p99-s").title = "over the last " + tr.latency_window_seconds + " s";
    const er = known(tr.error_rate) ? tr.error_rate * 100 : null;
    set("k-err", pct(er, er !== null && er < 10 ? 2 : 1), er >= 5 ? "bad" : er >= 1 ? "warn" : "");
    $("k-err-s").textContent = num(tr.responses["5xx"], 0) + " 5xx · " + num(tr.responses["4xx"], 0) + " 4xx";
    set("k-conn", num(tr.active_connections, 0));
    $("k-conn-s").textContent = num(tr.inflight_requests, 0) + " in flight";
    set("k-cpu", pct(host.cpu_percent), host.cpu_percent >= 90 ? "bad" : host.cpu_percent >= 70 ? "warn" : "");
    $("k-cpu-s").textContent = "gateway " + pct(pr.cpu_percent) + " · " + host.cpu_cores + " cores";
    set("k-mem", pct(host.memory.used_percent), host.memory.used_percent >= 90 ? "bad" : "");
    $("k-mem-s").textContent = bytes(host.memory.used_bytes) + " of " + bytes(host.memory.total_bytes);
    set("k-disk", pct(host.disk.used_percent), host.disk.used_percent >= 90 ? "bad" : host.disk.used_percent >= 80 ? "warn" : "");
    $("k-disk-s").textContent = bytes(host.disk.free_bytes) + " free";
    $("k-disk-bar").style.width = Math.min(100, host.disk.used_percent || 0) + "%";
    $("disk-path").textContent = "% used · " + (host.disk.path || "—");
    $("disk-path").title = host.disk.path || "";
    set("k-gor", num(pr.goroutines, 0));
    $("k-gor-s").textContent = "heap " + bytes(pr.heap_bytes) + " · " + pr.threads + " threads";
    const dl = $("facts");
    dl.replaceChildren();
    fact(dl, "Load average", [host.load_average.load1, host.load_average.load5, host.load_average.load15].map((v) => v.toFixed(2)).join("  "));
    fact(dl, "Gateway memory (RSS)", bytes(pr.rss_bytes));
    fact(dl, "Open file descriptors", num(pr.open_fds, 0));
    fact(dl, "Cache hit ratio", known(tr.cache_hit_ratio) ? pct(tr.cache_hit_ratio * 100, 1) : "—");
    fact(dl, "Responses 2xx / 3xx", num(tr.responses["2xx"], 0) + " / " + num(tr.responses["3xx"], 0));
    fact(dl, "Process", "pid " + pr.pid + " · " + num(pr.gc_cycles, 0) + " GC cycles");
  }

  // The served certificates, by name as the server lists them; the card
  // stays hidden without TLS. Days left come from the server's
  // expires_in_seconds, so a skewed browser clock does not change them.
  const CERT_WARN_DAYS = 14;
  function certificates(list) {
    list = list || [];
    $("certs").hidden = list.length === 0;
    $("certs-body").replaceChildren(...list.map((c) => {
      const left = c.expires_in_seconds, days = Math.floor(left / 86400);
      const tr = document.createElement("tr");
      tr.className = left <= 0 ? "bad" : left < CERT_WARN_DAYS * 86400 ? "warn" : "";
      const text = [
        c.name,
        c.not_after.slice(0, 10),
        left <= 0 ? "expired" : days >= 1 ? days + (days === 1 ? " day" : " days") : Math.ceil(left / 3600) + " h",
      ];
      tr.append(...text.map((v) => {
        const td = document.createElement("td");
        td.textContent = v;
        return td;
      }));
      tr.cells[1].title = c.not_after;
      return tr;
    }));
  }

  function status(kind, text) {
    const el = $("status");
    el.className = "chip status " + kind;
    $("status-text").textContent = text;
  }

  async function poll() {
    try {
      const res = await fetch(API + "?since=" + lastT, { cache: "no-store", headers: { Accept: "application/json" } });
      if (!res.ok) throw new Error("HTTP " + res.status);
      const m = await res.json();
      if (m.history && m.history.length) {
        points = points.concat(m.history);
        lastT = points[points.length - 1].t;
        const cut = lastT - WINDOW_MS - 60000;
        if (points[0].t < cut) points = points.filter((p) => p.t >= cut);
      }
      if (m.interval_seconds > 0) every = Math.max(500, Math.round(m.interval_seconds * 10) * 100);
      $("every").textContent = String(every / 1000);
      render(m);
      certificates(m.certificates);
      drawAll();
      failures = 0; lastOK = Date.now();
      status("live", "live");
    } catch (e) {
      failures++;
      status("stale", lastOK ? "disconnected · last update " + clock(lastOK) : "cannot reach the gateway");
    }
    setTimeout(poll, failures ? Math.min(every * 2 ** failures, 15000) : every);
  }
  poll();
})();
