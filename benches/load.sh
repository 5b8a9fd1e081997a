#!/usr/bin/env bash
# The proxy against its limit and against the Python mcpo, side by side, in one run on 127.0.0.1.
#
#   bash benches/load.sh      # ~10 min; writes bench-results/load.md and bench-results/load.json
#
# It builds the release binary and the limit client (examples/limit.rs), installs wrk (Debian's
# package) if missing and the Python mcpo 0.0.20 into a local venv (MCPO_PY_VENV, default
# .deps/mcpo-py) with the pins that make it start ("mcp<2", "fastapi<0.129"), then measures:
#
# - the limit: examples/limit driving the fake MCP server (`mcpo fake-server`) directly, over
#   stdio and over streamable HTTP, one session multiplexed by every caller, as the proxy does;
# - `mcpo serve` in front of the same fake over stdio, streamable HTTP and SSE, and the Python
#   mcpo in front of the same fake over stdio, all with the same client (examples/limit,
#   `--target proxy`), the same call (`echo` {"message": "hello"}) and the same clock, at
#   concurrency 1, 16 and 64 (closed loop) and at a fixed rate of half the proxy's best
#   closed-loop throughput (open loop, latency from the intended send time); wrk's figure for
#   the same closed-loop runs is shown next to it;
# - each proxy's RSS at idle and its peak under the c=64 run, its CPU time per 1,000 calls
#   (c=16), and the time from its start to the first answered call with 1, 10 and 50 servers.
#
# DURATION (seconds per run, default 8), OUT (default bench-results), BUILD=0 (measure the
# binaries already built). Every process runs under
# `nice`; the proxies and fakes it starts are stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
duration=${DURATION:-8}
out=${OUT:-bench-results}
mkdir -p "$out"
out=$(cd "$out" && pwd)
nice=(nice -n 5)

command -v wrk >/dev/null || { apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }; }
command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)" >&2; exit 2; }
venv=${MCPO_PY_VENV:-.deps/mcpo-py}
if [ ! -x "$venv/bin/mcpo" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'mcpo==0.0.20' 'mcp<2' 'fastapi<0.129'
fi
py=$(cd "$venv/bin" && pwd)/mcpo
# BUILD=0 measures the binaries already in the target directory.
[ "${BUILD:-1}" = 0 ] || "${nice[@]}" cargo build --release --quiet --bins --examples
target=${CARGO_TARGET_DIR:-$root/target}
bin=$target/release/mcpo
limit=$target/release/examples/limit

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
results=$out/load.jsonl
: > "$results"

log() { echo "$*" >&2; }
# `record LABEL JSON`: one result line, labelled.
record() { printf '{"label": "%s", "result": %s}\n' "$1" "$2" >> "$results"; }

wait_answer() { # url; until one POST answers 200 (30 s at most)
  for _ in $(seq 1 300); do
    curl -sf -XPOST "$1" -H 'content-type: application/json' -d '{"message":"x"}' >/dev/null && return 0
    sleep 0.1
  done
  echo "nothing answers at $1" >&2; return 1
}
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# `measure LABEL PID ARGS...`: one run of the limit client; with PID (a proxy), also its CPU
# time, and its peak RSS sampled every 0.2 s.
measure() {
  local label=$1 pid=$2; shift 2
  local before peak=0 sampler result after
  if [ "$pid" != - ]; then
    before=$(cpu_ticks "$pid")
    ( while kill -0 "$pid" 2>/dev/null; do rss_kb "$pid"; sleep 0.2; done ) > "$work/rss" 2>/dev/null &
    sampler=$!
  fi
  result=$("${nice[@]}" "$limit" --duration "$duration" "$@")
  if [ "$pid" != - ]; then
    after=$(cpu_ticks "$pid")
    kill "$sampler" 2>/dev/null || true; wait "$sampler" 2>/dev/null || true
    peak=$(sort -n "$work/rss" | tail -1)
    result=${result%\}}", \"cpu_ticks\": $((after - before)), \"clk_tck\": $(getconf CLK_TCK), \"peak_rss_kb\": ${peak:-0}}"
  fi
  record "$label" "$result"
  log "  $label: $(sed 's/.*"throughput":\([0-9.]*\).*"p50_ms":\([0-9.]*\).*"p99_ms":\([0-9.]*\).*/\1 calls\/s, p50 \2 ms, p99 \3 ms/' <<< "$result")"
}

# `wrk_run LABEL URL C`: wrk's closed-loop throughput for the same call.
wrk_run() {
  printf 'wrk.method = "POST"\nwrk.body = %s\nwrk.headers["Content-Type"] = "application/json"\n' \
    "'{\"message\": \"hello\"}'" > "$work/post.lua"
  local threads=$(( $3 < 2 ? 1 : 2 ))
  "${nice[@]}" wrk -t"$threads" -c"$3" -d"${duration}s" --latency -s "$work/post.lua" "$2" > "$work/wrk.out"
  local rps
  rps=$(awk '/Requests\/sec/ {print $2}' "$work/wrk.out")
  record "$1" "{\"throughput\": $rps}"
  log "  $1: $rps req/s (wrk)"
}

# `proxy_suite NAME PID URL`: closed loop at 1/16/64 (ours and wrk's), idle and peak RSS, CPU.
proxy_suite() {
  local name=$1 pid=$2 url=$3
  wait_answer "$url"
  sleep 1
  record "$name idle" "{\"rss_kb\": $(rss_kb "$pid")}"
  for c in 1 16 64; do
    measure "$name closed c=$c" "$pid" --target proxy --url "$url" --concurrency "$c"
    wrk_run "$name wrk c=$c" "$url" "$c"
  done
}

start() { # command...; its pid in $pid
  "${nice[@]}" "$@" > "$work/proxy-$RANDOM.log" 2>&1 &
  pid=$!
  pids+=("$pid")
}

stop() { kill -TERM "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

fake_http() { # transport port; starts a fake listening there
  "${nice[@]}" "$bin" fake-server --transport "$1" --port "$2" > "$work/fake-$2.log" 2>&1 &
  pids+=("$!")
  for _ in $(seq 1 100); do grep -q listening "$work/fake-$2.log" && return 0; sleep 0.05; done
  echo "fake $1 on $2 did not start" >&2; exit 1
}

log "== the limit: rmcp client straight on the fake"
for c in 1 16 64; do measure "limit stdio closed c=$c" - --target stdio --server "$bin" --concurrency "$c"; done
fake_http streamable-http 18301
for c in 1 16 64; do measure "limit http closed c=$c" - --target http --url http://127.0.0.1:18301/mcp --concurrency "$c"; done

log "== mcpo-rs, stdio"
start "$bin" --host 127.0.0.1 --port 18311 -- "$bin" fake-server
proxy_suite "rs stdio" "$pid" http://127.0.0.1:18311/echo
rs_stdio=$pid
log "== mcpo-rs, streamable HTTP"
start "$bin" --host 127.0.0.1 --port 18312 --type streamable-http -- http://127.0.0.1:18301/mcp
proxy_suite "rs http" "$pid" http://127.0.0.1:18312/echo
rs_http=$pid
log "== mcpo-rs, SSE"
fake_http sse 18302
start "$bin" --host 127.0.0.1 --port 18313 --type sse -- http://127.0.0.1:18302/sse
proxy_suite "rs sse" "$pid" http://127.0.0.1:18313/echo
stop "$pid"
log "== Python mcpo 0.0.20, stdio"
start "$py" --host 127.0.0.1 --port 18314 -- "$bin" fake-server
proxy_suite "py stdio" "$pid" http://127.0.0.1:18314/echo
py_stdio=$pid

# Open loop at half of each proxy's best closed-loop throughput (ours), the limit at the same
# rate as the proxy in front of it.
best() { # label prefix; the best closed-loop throughput
  python3 - "$results" "$1" <<'PY'
import json, sys
best = 0
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["label"].startswith(sys.argv[2] + " closed"):
        best = max(best, r["result"]["throughput"])
print(int(best))
PY
}
log "== open loop at half the proxy's maximum"
rate=$(( $(best "rs stdio") / 2 ))
measure "rs stdio open" "$rs_stdio" --target proxy --url http://127.0.0.1:18311/echo --rate "$rate"
measure "limit stdio open" - --target stdio --server "$bin" --rate "$rate"
rate=$(( $(best "rs http") / 2 ))
measure "rs http open" "$rs_http" --target proxy --url http://127.0.0.1:18312/echo --rate "$rate"
measure "limit http open" - --target http --url http://127.0.0.1:18301/mcp --rate "$rate"
rate=$(( $(best "py stdio") / 2 ))
measure "py stdio open" "$py_stdio" --target proxy --url http://127.0.0.1:18314/echo --rate "$rate"
stop "$rs_stdio"; stop "$rs_http"; stop "$py_stdio"

log "== time to the first answered call"
for n in 1 10 50; do
  python3 - "$bin" "$n" > "$work/servers-$n.json" <<'PY'
import json, sys
print(json.dumps({"mcpServers": {f"s{i}": {"command": sys.argv[1], "args": ["fake-server", "--id", f"s{i}"]} for i in range(int(sys.argv[2]))}}))
PY
  last=s$((n - 1))
  for run in 1 2 3; do
    record "rs startup n=$n" "$("$limit" --target startup --url "http://127.0.0.1:18321/$last/echo" \
      --command "$bin --host 127.0.0.1 --port 18321 --config $work/servers-$n.json")"
    record "py startup n=$n" "$("$limit" --target startup --url "http://127.0.0.1:18322/$last/echo" \
      --command "$py --host 127.0.0.1 --port 18322 --config $work/servers-$n.json")"
  done
  log "  $n servers: done"
done

python3 benches/load-report.py "$results" "$out"
