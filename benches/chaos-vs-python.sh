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
cargo build --release --quiet
bin=${CARGO_TARGET_DIR:-target}/release/mcpo
out=${OUT:-chaos-reports/compare}
mkdir -p "$out"
python_target="$PWD/$venv/bin/mcpo --host 127.0.0.1 --port {port} --config {config}"
for file in ${SCENARIOS:-fault-scenarios/*.yaml}; do
  name=$(basename "$file" .yaml)
  echo "== $name: mcpo-rs" >&2
  "$bin" chaos "$file" --report "$out/$name.rs.json" --html "$out/$name.rs.html" >"$out/$name.rs.log" 2>&1 || true
  echo "== $name: Python mcpo 0.0.20" >&2
  "$bin" chaos "$file" --target "$python_target" --report "$out/$name.py.json" \
    --html "$out/$name.py.html" >"$out/$name.py.log" 2>&1 || true
done
python3 - "$out" <<'PY'
import json, os, platform, sys, time
out = sys.argv[1]
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
    f"({platform.platform()}); release build; same scenario, seed, fakes and load for both.",
    "",
    "| scenario | SLO | target | mcpo-rs | Python mcpo 0.0.20 |",
    "| --- | --- | --- | --- | --- |",
]
for name in names:
    rs, py = load(name, "rs"), load(name, "py")
    ref = rs or py
    if ref is None:
        continue
    verdicts = f'{"PASS" if rs and rs["passed"] else "FAIL"} / {"PASS" if py and py["passed"] else "FAIL"}'
    for s in ref["slos"]:
        lines.append(f'| {name} | {s["name"]} | {s["target"]} | {cell(rs, s["name"])} | {cell(py, s["name"])} |')
    lines.append(f"| {name} | **verdict** | | {verdicts.split(' / ')[0]} | {verdicts.split(' / ')[1]} |")
table = "\n".join(lines)
with open(os.path.join(out, "table.md"), "w") as f:
    f.write(table + "\n")
print(table)
PY
