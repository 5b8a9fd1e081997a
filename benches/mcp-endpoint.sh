#!/usr/bin/env bash
# The MCP endpoint against the OpenAPI route, for the same call through the same proxy: what an
# MCP client pays over `POST /{server}/{tool}`.
#
#   bash benches/mcp-endpoint.sh      # about 2 min; prints a Markdown table
#
# One release `mcpo serve` in front of one fake stdio server (`mcpo fake-server`); the same
# client (examples/limit) calls `echo` {"message": "hello"} either as `POST /f/echo` or as
# `tools/call` on one rmcp session of `/f/mcp` (protocol 2025-11-25, as rmcp's client speaks
# it), closed loop at concurrency 1 and 16, ROUNDS times each, alternating, DURATION seconds a
# run. BUILD=0 measures the binaries already built. Everything runs under `nice` on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${DURATION:-8}
rounds=${ROUNDS:-3}
[ "${BUILD:-1}" = 0 ] || nice -n 5 cargo build --release --quiet --bins --examples
target=${CARGO_TARGET_DIR:-$PWD/target}
bin=${MCPO_BIN:-$target/release/mcpo}
limit=$target/release/examples/limit
work=$(mktemp -d)
proxy=""
cleanup() {
  [ -z "$proxy" ] || kill "$proxy" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

printf '{"mcpServers":{"f":{"command":"%s","args":["fake-server","--transport","stdio","--id","f"]}}}' \
  "$bin" > "$work/config.json"
nice -n 5 "$bin" serve --host 127.0.0.1 --port 0 --config "$work/config.json" \
  > "$work/proxy.out" 2>/dev/null &
proxy=$!
for _ in $(seq 200); do grep -q "serving on" "$work/proxy.out" && break; sleep 0.05; done
base=$(grep -o 'http://[0-9.:]*' "$work/proxy.out" | head -1)
for _ in $(seq 100); do
  curl -sf -XPOST "$base/f/echo" -H 'content-type: application/json' -d '{"message":"w"}' \
    >/dev/null && break
  sleep 0.1
done

# One run: "calls/s p50 p99" from the limit client's JSON.
run() { # $1 route|mcp, $2 concurrency
  local args
  if [ "$1" = route ]; then args=(--target proxy --url "$base/f/echo"); else args=(--target http --url "$base/f/mcp"); fi
  nice -n 5 "$limit" "${args[@]}" --concurrency "$2" --duration "$duration" |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["throughput"], d["p50_ms"], d["p99_ms"], d["errors"])'
}

declare -A calls p50 p99 errors
for c in 1 16; do
  for r in $(seq "$rounds"); do
    for way in route mcp; do
      read -r t a b e < <(run "$way" "$c")
      calls[$way$c]="${calls[$way$c]:-} $t"; p50[$way$c]="${p50[$way$c]:-} $a"
      p99[$way$c]="${p99[$way$c]:-} $b"; errors[$way$c]=$(( ${errors[$way$c]:-0} + e ))
    done
  done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
echo "| c | way | calls/s | p50 ms | p99 ms | errors |"
echo "| --- | --- | --- | --- | --- | --- |"
for c in 1 16; do
  for way in route mcp; do
    name=$([ "$way" = route ] && echo 'OpenAPI route `POST /f/echo`' || echo 'MCP endpoint `/f/mcp`')
    printf '| %s | %s | %.0f | %.3f | %.3f | %s |\n' "$c" "$name" \
      "$(echo "${calls[$way$c]}" | median)" "$(echo "${p50[$way$c]}" | median)" \
      "$(echo "${p99[$way$c]}" | median)" "${errors[$way$c]}"
  done
  added=$(python3 -c "print(round($(echo "${p50[mcp$c]}" | median) - $(echo "${p50[route$c]}" | median), 3))")
  echo "| $c | added p50 of /mcp over the route | | $added | | |"
done
echo
echo "(median of $rounds rounds of ${duration} s each; $(date -u +%F), $("$bin" version))"
