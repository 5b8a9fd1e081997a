#!/usr/bin/env bash
# The MCP endpoint side by side with the MCP gateways a user would pick instead, each in front
# of the same fake MCP server, in one run on 127.0.0.1.
#
#   bash benches/gateways.sh      # about 10 min, 45 more with the chaos part; writes
#                                 # bench-results/gateways/{perf,chaos}.md
#
# It builds the release binary and the limit client (examples/limit.rs), installs the gateways
# from their registries into GATEWAYS_DIR (default .deps/gateways), pinned: supergateway 4.0.0
# (npm), mcp-proxy 0.13.0 and mcp-contextforge-gateway 1.0.7.post20260921 (PyPI), and runs each
# through benches/gateway-target.py, which says how each is set up and why. Then:
#
# - performance: the fake (`mcpo fake-server`, stdio) called straight by rmcp (the limit), and
#   through each gateway's MCP endpoint by the same rmcp client (examples/limit, one session,
#   `tools/call` of echo {"message": "hello"}), closed loop at c=1 and c=16: calls/s, p50, p99
#   and the added p50 over the limit; and the time from a client's `initialize` to its first
#   tool result, cold (the first session once the gateway listens) and warm (the median of the
#   next 9 sessions);
# - chaos (CHAOS=0 skips it): every scenario of fault-scenarios/ through each gateway's MCP
#   endpoint (`mcpo chaos --via mcp --target`), the verdict and its figures per scenario.
#
# DURATION (seconds per run, default 8), OUT (default bench-results/gateways), BUILD=0 (measure
# the binaries already built), GATEWAYS (which to run, default "mcpo-rs mcp-proxy supergateway
# contextforge"), SCENARIOS (default fault-scenarios/*.yaml). Every process runs under `nice`.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
duration=${DURATION:-8}
out=${OUT:-bench-results/gateways}
mkdir -p "$out"
out=$(cd "$out" && pwd)
gw=${GATEWAYS_DIR:-$root/.deps/gateways}
export GATEWAYS_DIR=$gw
gateways=${GATEWAYS:-mcpo-rs mcp-proxy supergateway contextforge}
nice=(nice -n 5)
# The interpreter itself, not a pyenv shim: a shim is a shell script that runs Python as its
# child, so the SIGTERM that stops a target would reach the shim and orphan the gateway.
py=$(python3 -c 'import sys; print(sys.executable)')

mkdir -p "$gw"
if [ ! -x "$gw/node_modules/.bin/supergateway" ]; then
  npm install --prefix "$gw" --no-audit --no-fund --silent supergateway@4.0.0
fi
if [ ! -x "$gw/mcp-proxy/bin/mcp-proxy" ]; then
  python3 -m venv "$gw/mcp-proxy"
  "$gw/mcp-proxy/bin/pip" install --quiet --disable-pip-version-check mcp-proxy==0.13.0
fi
if [ ! -x "$gw/contextforge/bin/mcpgateway" ]; then
  python3 -m venv "$gw/contextforge"
  "$gw/contextforge/bin/pip" install --quiet --disable-pip-version-check \
    mcp-contextforge-gateway==1.0.7.post20260921
fi
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { apt-get update >/dev/null && apt-get install -y nginx-light >/dev/null; }
[ "${BUILD:-1}" = 0 ] || "${nice[@]}" cargo build --release --quiet --bins --examples
target=${CARGO_TARGET_DIR:-$root/target}
bin=$target/release/mcpo
limit=$target/release/examples/limit

work=$(mktemp -d)
gpid=""
cleanup() {
  [ -z "$gpid" ] || kill "$gpid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
log() { echo "$*" >&2; }

# How each gateway is started (`{config}`, `{port}` as `mcpo chaos --target` replaces them),
# and where its MCP endpoint is and what it calls a server's tool.
command_of() {
  case $1 in
    mcpo-rs) echo "$bin serve --host 127.0.0.1 --port {port} --config {config}" ;;
    *) echo "$py $root/benches/gateway-target.py $1 --config {config} --port {port}" ;;
  esac
}
path_of() {
  case $1 in
    mcpo-rs | contextforge) echo /mcp ;;
    *) echo '/servers/{server}/mcp' ;;
  esac
}
tool_of() {
  case $1 in
    mcpo-rs) echo '{server}__{tool}' ;;
    contextforge) echo '{server}-{tool}' ;;
    *) echo '{tool}' ;;
  esac
}
fill() { # template server tool
  local s=${1//\{server\}/$2}
  echo "${s//\{tool\}/$3}"
}
version_of() {
  case $1 in
    mcpo-rs) "$bin" version ;;
    mcp-proxy) echo "mcp-proxy $("$gw/mcp-proxy/bin/pip" show mcp-proxy 2>/dev/null | awk '/^Version/ {print $2}')" ;;
    supergateway) echo "supergateway $(node -p "require('$gw/node_modules/supergateway/package.json').version")" ;;
    contextforge) echo "mcp-contextforge-gateway $("$gw/contextforge/bin/pip" show mcp-contextforge-gateway 2>/dev/null | awk '/^Version/ {print $2}')" ;;
  esac
}

printf '{"mcpServers":{"f":{"command":"%s","args":["fake-server","--transport","stdio","--id","f"]}}}' \
  "$bin" > "$work/config.json"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# `start_gateway NAME`: starts it in front of the fake, waits until it listens; sets gpid, url.
start_gateway() {
  local port cmd
  port=$(free_port)
  cmd=$(command_of "$1")
  cmd=${cmd//\{port\}/$port}
  cmd=${cmd//\{config\}/$work/config.json}
  : > "$work/gw.out"
  "${nice[@]}" sh -c "exec $cmd" > "$work/gw.out" 2> "$work/gw.err" &
  gpid=$!
  for _ in $(seq 1200); do
    grep -qE "serving on|listening on" "$work/gw.out" 2>/dev/null && break
    kill -0 "$gpid" 2>/dev/null || { log "$1 exited while starting:"; tail -5 "$work/gw.err" >&2; return 1; }
    sleep 0.1
  done
  url="http://127.0.0.1:$port$(fill "$(path_of "$1")" f echo)"
}
# `as_error TEXT`: a failed run's output as a JSON result line.
as_error() { "$py" -c 'import json,sys; print(json.dumps({"error": sys.argv[1][-300:]}))' "$1"; }
stop_gateway() {
  kill "$gpid" 2>/dev/null || true
  wait "$gpid" 2>/dev/null || true
  gpid=""
}
results=$out/perf.jsonl
record() { printf '{"label": "%s", "result": %s}\n' "$1" "$2" >> "$results"; }

versions=$work/versions
for g in $gateways; do echo "$g=$(version_of "$g")"; done > "$versions"
# CHAOS=table renders the chaos table from an earlier run's reports, and measures nothing.
if [ "${CHAOS:-1}" != table ]; then
: > "$results"
log "== limit: rmcp straight on the fake (stdio)"
for c in 1 16; do
  record "limit c=$c" "$("${nice[@]}" "$limit" --target stdio --server "$bin" --concurrency "$c" --duration "$duration")"
done
for g in $gateways; do
  log "== $g ($(version_of "$g"))"
  start_gateway "$g" || { record "$g error" '{"error": "did not start"}'; continue; }
  tool=$(fill "$(tool_of "$g")" f echo)
  first=$("${nice[@]}" "$limit" --target first-result --url "$url" --tool "$tool" --sessions 10 2>&1) ||
    first=$(as_error "$first")
  record "$g first" "$first"
  for c in 1 16; do
    r=$("${nice[@]}" "$limit" --target http --url "$url" --tool "$tool" --concurrency "$c" --duration "$duration" 2>&1) ||
      r=$(as_error "$r")
    record "$g c=$c" "$r"
    log "  c=$c: $r"
  done
  stop_gateway
done

python3 - "$results" "$versions" "$duration" "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" > "$out/perf.md" <<'PY'
import json, os, platform, sys, time
rows = {}
for line in open(sys.argv[1]):
    d = json.loads(line)
    rows[d["label"]] = d["result"]
versions = dict(l.strip().split("=", 1) for l in open(sys.argv[2]) if "=" in l)
duration, commit = sys.argv[3], sys.argv[4]
print(f"Measured {time.strftime('%Y-%m-%d')} by `bash benches/gateways.sh` (commit {commit}, "
      f"{duration} s per run after 1 s of warm-up) on {os.cpu_count()} cores, "
      f"{platform.machine()}, {platform.platform()}. Every gateway in front of the same fake "
      "(`mcpo fake-server`, stdio), called through its MCP endpoint by the same rmcp client "
      "(one session, `tools/call` of `echo`); the limit is that client straight on the fake. "
      "Latency in ms.")
print()
print("| gateway | c=1 calls/s | c=1 p50 | added p50 | c=16 calls/s | c=16 p50 | c=16 p99 | vs limit (c=16) | errors | initialize → first result: cold / warm |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
lim1, lim16 = rows.get("limit c=1", {}), rows.get("limit c=16", {})
def f(v, n=3):
    return "–" if v is None else (f"{v:,.0f}" if n == 0 else f"{v:.{n}f}")
print(f"| limit (rmcp straight on the fake) | {f(lim1.get('throughput'), 0)} | {f(lim1.get('p50_ms'))} | | "
      f"{f(lim16.get('throughput'), 0)} | {f(lim16.get('p50_ms'))} | {f(lim16.get('p99_ms'))} | 1 | "
      f"{lim1.get('errors', 0) + lim16.get('errors', 0)} | |")
for label in ["mcpo-rs", "mcp-proxy", "supergateway", "contextforge"]:
    if label not in versions:
        continue
    one, six, first = rows.get(f"{label} c=1", {}), rows.get(f"{label} c=16", {}), rows.get(f"{label} first", {})
    name = versions[label]
    if "error" in one and "error" in six:
        print(f"| {name} | failed: {str(one['error'])[:120]} | | | | | | | | |")
        continue
    added = None
    if one.get("p50_ms") is not None and lim1.get("p50_ms") is not None:
        added = one["p50_ms"] - lim1["p50_ms"]
    ratio = None
    if six.get("throughput") and lim16.get("throughput"):
        ratio = six["throughput"] / lim16["throughput"]
    errors = (one.get("errors") or 0) + (six.get("errors") or 0)
    cold = "failed" if "error" in first else f"{f(first.get('cold_ms'), 1)} / {f(first.get('warm_p50_ms'), 1)}"
    print(f"| {name} | {f(one.get('throughput'), 0)} | {f(one.get('p50_ms'))} | {f(added)} | "
          f"{f(six.get('throughput'), 0)} | {f(six.get('p50_ms'))} | {f(six.get('p99_ms'))} | "
          f"{f(ratio, 2)} | {errors} | {cold} |")
PY
cat "$out/perf.md"
fi

[ "${CHAOS:-1}" != 0 ] || exit 0
mkdir -p "$out/chaos"
# CHAOS=table: only the table, from the reports of an earlier run.
[ "${CHAOS:-1}" = table ] || for file in ${SCENARIOS:-fault-scenarios/*.yaml}; do
  name=$(basename "$file" .yaml)
  for g in $gateways; do
    log "== chaos $name through $g"
    args=(--via mcp --mcp-path "$(path_of "$g")" --mcp-tool-name "$(tool_of "$g")")
    [ "$g" = mcpo-rs ] || args+=(--target "$(command_of "$g")")
    "${nice[@]}" "$bin" chaos "$file" "${args[@]}" --report "$out/chaos/$name.$g.json" \
      > "$out/chaos/$name.$g.log" 2>&1 || true
  done
done
python3 - "$out/chaos" "$versions" "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" "$gateways" > "$out/chaos.md" <<'PY'
import json, os, sys, time
folder, commit, gateways = sys.argv[1], sys.argv[3], sys.argv[4].split()
versions = dict(l.strip().split("=", 1) for l in open(sys.argv[2]) if "=" in l)
names = sorted({f.split(".")[0] for f in os.listdir(folder) if f.endswith(".log")})
def cell(name, g):
    try:
        r = json.load(open(os.path.join(folder, f"{name}.{g}.json")))
    except (OSError, ValueError):
        try:
            log = open(os.path.join(folder, f"{name}.{g}.log")).read()
        except OSError:
            return "did not run"
        if "exited while starting" in log:
            return "**INVALID**: the gateway exited while starting"
        lines = log.strip().splitlines()
        return "no report: " + (lines[-1][:80] if lines else "")
    s = r.get("summary") or {}
    if not r.get("valid", True):
        why = "; ".join(r.get("invalid") or [])
        return f"**INVALID** ({why[:90]})"
    word = "PASS" if r["passed"] else "**FAIL**"
    missed = [x["name"] for x in r.get("slos", []) if not x["passed"]]
    text = f"{word}: {100 * (s.get('success_rate') or 0):.1f}% ok, {s.get('hung', 0)} hung"
    if r.get("mcp_sessions_opened") is not None:
        n = r["mcp_sessions_opened"]
        text += f", {n} session{'s' if n != 1 else ''}"
    if missed:
        text += "; missed " + ", ".join(missed)
    return text
print(f"Measured {time.strftime('%Y-%m-%d')} by `bash benches/gateways.sh` (commit {commit}): every "
      "scenario of `fault-scenarios/` through each gateway's MCP endpoint (`mcpo chaos --via mcp`, "
      "with `--target` for the others), same seed, fakes and load. Per cell: the verdict, the "
      "share of requests answered right, hung requests, MCP sessions the client had to open "
      "(one per endpoint means it never saw one end), and the SLOs missed.")
print()
label = lambda g: "mcpo-rs `/mcp` (" + versions[g] + ")" if g == "mcpo-rs" else versions.get(g, g)
print("| scenario | " + " | ".join(label(g) for g in gateways) + " |")
print("| --- |" + " --- |" * len(gateways))
for name in names:
    print(f"| {name} | " + " | ".join(cell(name, g) for g in gateways) + " |")
PY
cat "$out/chaos.md"
