//! `GET /status`: one self-contained page (no external assets, works offline) that shows each
//! server's state, request and error rates, latency, pool, breaker, restarts and recent
//! recovery episodes, with charts of the last 15 minutes. It reads `metrics?history=1` every
//! five seconds: the same numbers as `/metrics`, drawn.

use axum::response::Html;

pub async fn page() -> Html<&'static str> {
    Html(PAGE)
}

const PAGE: &str = r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>mcpo status</title>
<style>
  :root { --ok: #1a7f37; --warn: #9a6700; --bad: #cf222e; --muted: #57606a; --line: #d0d7de; }
  * { box-sizing: border-box; }
  body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1f2328; background: #f6f8fa; }
  header { padding: 16px 24px; background: #fff; border-bottom: 1px solid var(--line); display: flex; gap: 24px; align-items: baseline; flex-wrap: wrap; }
  h1 { font-size: 18px; margin: 0; }
  .pill { display: inline-block; padding: 2px 10px; border-radius: 999px; color: #fff; font-weight: 600; font-size: 12px; text-transform: uppercase; }
  .healthy, .ready, .closed { background: var(--ok); } .degraded, .reconnecting, .starting, .half_open { background: var(--warn); } .unhealthy, .down, .stopped, .open { background: var(--bad); }
  .stat { color: var(--muted); } .stat b { color: #1f2328; font-size: 15px; }
  main { padding: 16px 24px; display: grid; grid-template-columns: repeat(auto-fill, minmax(420px, 1fr)); gap: 16px; }
  .card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 14px 16px; }
  .card h2 { font-size: 16px; margin: 0 0 8px; display: flex; gap: 8px; align-items: center; }
  .grid { display: grid; grid-template-columns: repeat(4, 1fr); gap: 6px 12px; margin-bottom: 10px; }
  .grid div { font-size: 12px; color: var(--muted); } .grid b { display: block; font-size: 15px; color: #1f2328; }
  svg { width: 100%; height: 70px; display: block; margin-top: 4px; }
  .legend { font-size: 11px; color: var(--muted); }
  .episodes { margin: 8px 0 0; padding-left: 18px; font-size: 12px; color: var(--muted); max-height: 90px; overflow: auto; }
  #alerts { margin: 0 24px; } .alert { margin-top: 12px; padding: 8px 12px; border-radius: 6px; background: #fff1e5; border: 1px solid #f5c08c; }
  #error { color: var(--bad); }
</style>
</head>
<body>
<header>
  <h1>mcpo status</h1>
  <span id="overall" class="pill">loading</span>
  <span class="stat">requests <b id="total">-</b></span>
  <span class="stat">errors last hour <b id="errors">-</b></span>
  <span class="stat">error rate <b id="rate">-</b></span>
  <span class="stat">recovery success <b id="recovery">-</b></span>
  <span class="stat">cache hit rate <b id="cache">-</b></span>
  <span class="stat">p99 <b id="p99">-</b></span>
  <span class="stat" id="updated"></span>
  <span id="error"></span>
</header>
<div id="alerts"></div>
<main id="servers"></main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;", "'": "&#39;"}[c]));
const pct = (x) => x == null ? "-" : (x * 100).toFixed(x < 0.01 && x > 0 ? 2 : 1) + "%";
const secs = (x) => x == null ? "-" : x < 1 ? (x * 1000).toFixed(x < 0.01 ? 2 : 0) + " ms" : x.toFixed(2) + " s";
function chart(points, series, height) {
  const w = 400, h = height, n = points.length;
  if (!n) return "";
  let max = 0;
  for (const s of series) for (const p of points) max = Math.max(max, p[s.key] || 0);
  if (max === 0) max = 1;
  const x = (i) => (n === 1 ? w : (i * w) / (n - 1));
  const y = (v) => h - 2 - ((v || 0) / max) * (h - 6);
  let out = `<svg viewBox="0 0 ${w} ${h}" preserveAspectRatio="none" role="img">`;
  out += `<line x1="0" y1="${h - 1}" x2="${w}" y2="${h - 1}" stroke="#d0d7de"/>`;
  for (const s of series) {
    const d = points.map((p, i) => `${i ? "L" : "M"}${x(i).toFixed(1)},${y(p[s.key]).toFixed(1)}`).join(" ");
    out += `<path d="${d}" fill="none" stroke="${s.color}" stroke-width="1.6"/>`;
  }
  return out + "</svg>";
}
function render(m) {
  const overall = m.system_health.overall_status;
  $("overall").textContent = overall; $("overall").className = "pill " + overall;
  $("total").textContent = m.performance.total_requests;
  $("errors").textContent = m.error_recovery.total_errors_last_hour;
  $("rate").textContent = pct(m.system_health.error_rate);
  $("recovery").textContent = pct(m.error_recovery.recovery_success_rate);
  $("cache").textContent = pct(m.performance.cache_hit_rate);
  $("p99").textContent = secs(m.performance.p99);
  $("updated").textContent = "updated " + new Date().toLocaleTimeString();
  $("alerts").innerHTML = m.system_health.active_errors.map((a) => `<div class="alert"><b>${esc(a.kind)}</b>: ${esc(a.message)}</div>`).join("");
  const cards = [];
  for (const [name, s] of Object.entries(m.servers)) {
    const pts = (s.history && s.history.points) || [];
    const step = (s.history && s.history.step_seconds) || 15;
    const last = pts.slice(-4);
    const reqs = last.reduce((a, p) => a + p.requests, 0), errs = last.reduce((a, p) => a + p.errors, 0);
    const rps = last.length ? reqs / (last.length * step) : 0;
    const eps = (s.episodes.recent || []).slice(0, 8).map((e) => `<li>${new Date(e.started_unix_ms).toLocaleTimeString()}: ${esc(e.reason)} &mdash; ${e.ended ? "recovered in " + secs(e.duration_seconds) : "<b>not recovered yet</b>"}</li>`).join("");
    cards.push(`<section class="card">
      <h2>${esc(name)} <span class="pill ${esc(s.status)}">${esc(s.status)}</span> <span class="pill ${esc(s.breaker)}">breaker ${esc(s.breaker)}</span></h2>
      <div class="grid">
        <div>requests/s<b>${rps.toFixed(1)}</b></div>
        <div>error rate<b>${pct(reqs ? errs / reqs : 0)}</b></div>
        <div>p50 (1 h)<b>${secs(s.latency_last_hour.p50)}</b></div>
        <div>p99 (1 h)<b>${secs(s.latency_last_hour.p99)}</b></div>
        <div>pool<b>${s.pool.size} (${s.pool.in_flight} busy)</b></div>
        <div>restarts<b>${s.restarts}</b></div>
        <div>breaker opened<b>${s.breaker_opened}</b></div>
        <div>retries<b>${s.retries}</b></div>
      </div>
      <div class="legend">last 15 minutes: <span style="color:#0969da">requests</span>, <span style="color:#cf222e">errors</span> per ${step} s</div>
      ${chart(pts, [{key: "requests", color: "#0969da"}, {key: "errors", color: "#cf222e"}], 70)}
      <div class="legend">latency: <span style="color:#8250df">p99</span>, <span style="color:#1a7f37">p50</span></div>
      ${chart(pts, [{key: "p99", color: "#8250df"}, {key: "p50", color: "#1a7f37"}], 60)}
      <div class="legend">recovery episodes (${s.episodes.total} in all)</div>
      <ul class="episodes">${eps || "<li>none</li>"}</ul>
    </section>`);
  }
  $("servers").innerHTML = cards.join("");
}
async function refresh() {
  try {
    const r = await fetch("metrics?history=1", {headers: {"Accept": "application/json"}, credentials: "same-origin"});
    if (!r.ok) throw new Error("metrics answered " + r.status);
    render(await r.json());
    $("error").textContent = "";
  } catch (e) {
    $("error").textContent = String(e);
  }
}
refresh();
setInterval(refresh, 5000);
</script>
</body>
</html>
"##;
