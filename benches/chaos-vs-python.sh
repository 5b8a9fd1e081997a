#!/usr/bin/env bash
# Every scenario in fault-scenarios/ against this proxy and against the Python mcpo 0.0.20,
# each run through `mcpo chaos --target`, and a Markdown table of both proxies' figures.
#
#   bash benches/chaos-vs-python.sh            # writes chaos-reports/compare/table.md
#
# The Python mcpo is installed from PyPI into a local venv (MCPO_PY_VENV, default
# .deps/mcpo-py) with the pins that make it start: mcpo==0.0.20 "mcp<2" "fastapi<0.129".
# Both proxies get the same scenario file, seed, fake servers and load; the config the harness
# writes for the Python one is a plain mcpServers file (no timeout, pool or retry keys).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${MCPO_PY_VENV:-.deps/mcpo-py}
if [ ! -x "$venv/bin/mcpo" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    'mcpo==0.0.20' 'mcp<2' 'fastapi<0.129'
fi
# MCPO_BIN: a binary already built (then the table says which build it was).
if [ -n "${MCPO_BIN:-}" ]; then
  bin=$MCPO_BIN
  build=${MCPO_BUILD:-"binary $bin"}
else
  cargo build --release --quiet
  bin=${CARGO_TARGET_DIR:-target}/release/mcpo
  build="release build"
fi
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
out=${OUT:-chaos-reports/compare}
mkdir -p "$out"
case $venv in /*) ;; *) venv=$PWD/$venv ;; esac
python_target="$venv/bin/mcpo --host 127.0.0.1 --port {port} --config {config}"
for file in ${SCENARIOS:-fault-scenarios/*.yaml}; do
  name=$(basename "$file" .yaml)
  # ONLY=py keeps this proxy's reports of an earlier run (ONLY=rs the Python ones).
  if [ "${ONLY:-}" != py ]; then
    echo "== $name: mcpo-rs" >&2
    "$bin" chaos "$file" --report "$out/$name.rs.json" --html "$out/$name.rs.html" \
      >"$out/$name.rs.log" 2>&1 || true
  fi
  [ "${ONLY:-}" = rs ] && continue
  echo "== $name: Python mcpo 0.0.20" >&2
  "$bin" chaos "$file" --target "$python_target" --report "$out/$name.py.json" \
    --html "$out/$name.py.html" >"$out/$name.py.log" 2>&1 || true
done
python3 - "$out" "$build" "$commit" <<'PY'
import json, os, platform, sys, time
out, build, commit = sys.argv[1], sys.argv[2], sys.argv[3]
names = sorted({f.split('.')[0] for f in os.listdir(out) if f.endswith('.rs.json')})
def load(name, which):
    try:
        with open(os.path.join(out, f"{name}.{which}.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
def cell(report, slo):
    if report is None:
        return "did not run"
    for s in report["slos"]:
        if s["name"] == slo:
            return f'{s["measured"]} {"✓" if s["passed"] else "✗"}'
    return "n/a"
lines = [
    f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()}, {os.cpu_count()} cores "
    f"({platform.platform()}); {build}, commit {commit}; same scenario, seed, fakes and load "
    "for both. Each verdict is followed by the delivery ledger: how many fault events reached "
    "the proxy's servers (a crash: instances killed; a window: upstream requests it changed), "
    "so a row shows whether the fault was delivered at all.",
    "",
    "| scenario | SLO | target | mcpo-rs | Python mcpo 0.0.20 |",
    "| --- | --- | --- | --- | --- |",
]
def delivery(report):
    if report is None:
        return "did not run"
    events = report.get("events") or []
    reached = 0
    for e in events:
        d = e.get("delivery") or {}
        if d.get("instances_reached", 0) > 0 and (e["window_ms"] == 0 or d.get("requests_changed", 0) > 0):
            reached += 1
    calls = sum(s.get("calls_received") or 0 for s in report.get("servers") or [])
    text = f"{reached} of {len(events)} faults delivered; {calls} calls reached the fakes"
    if not report.get("valid", True):
        text += "; INVALID: " + "; ".join(report.get("invalid") or [])[:300]
    return text
for name in names:
    rs, py = load(name, "rs"), load(name, "py")
    ref = rs or py
    if ref is None:
        continue
    def verdict(r):
        if r is None:
            return "did not run"
        if not r.get("valid", True):
            return "INVALID"
        return "PASS" if r["passed"] else "FAIL"
    verdicts = f'{verdict(rs)} / {verdict(py)}'
    for s in ref["slos"]:
        lines.append(f'| {name} | {s["name"]} | {s["target"]} | {cell(rs, s["name"])} | {cell(py, s["name"])} |')
    lines.append(f"| {name} | **verdict** | | {verdicts.split(' / ')[0]} | {verdicts.split(' / ')[1]} |")
    lines.append(f"| {name} | delivery | | {delivery(rs)} | {delivery(py)} |")
table = "\n".join(lines)
with open(os.path.join(out, "table.md"), "w") as f:
    f.write(table + "\n")
print(table)
PY
