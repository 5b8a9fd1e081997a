#!/usr/bin/env bash
# Recovery under concurrency, measured from outside: closed-loop load with wrk on the fake's
# `echo` (idempotent) while the stdio child is killed 3 times (or, over streamable HTTP, the
# server forgets its sessions 3 times) in 18 s, at 2, 4, 8 and 16 calls in flight.
#
#   bash benches/recovery-under-load.sh [BASELINE_BINARY]     # MCPO_NEW=path skips the build
#
# With a baseline binary (for example an older build of this proxy, or a wrapper that runs this
# one with MCPO_ERROR_RECOVERY_ENABLED=false), every run is repeated through it in the same
# session, and both are printed side by side. Errors are non-2xx answers plus calls that got no
# answer at all (wrk's socket errors: refused, reset, or past its 2 s timeout).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 2; }
if [ -z "${MCPO_NEW:-}" ]; then
  cargo build --release --quiet
fi
target=${CARGO_TARGET_DIR:-target}
new=${MCPO_NEW:-$PWD/$target/release/mcpo}
baseline=${1:-}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
printf 'wrk.method = "POST"\nwrk.body = %s\nwrk.headers["Content-Type"] = "application/json"\n' \
  "'{\"message\":\"x\"}'" > "$work/post.lua"

run() { # $1 binary, $2 transport, $3 connections -> "ok non2xx"
  local bin=$1 transport=$2 c=$3 id="rul$RANDOM" fake_pid="" url
  if [ "$transport" = http ]; then
    "$bin" fake-server --transport streamable-http --port 0 --id "$id" > "$work/fake.out" &
    fake_pid=$!
    for _ in $(seq 100); do grep -q listening "$work/fake.out" && break; sleep 0.05; done
    url=$(grep -o 'http://[^ ]*' "$work/fake.out")
    printf '{"mcpServers":{"f":{"type":"streamable-http","url":"%s"}}}' "$url" > "$work/c.json"
  else
    printf '{"mcpServers":{"f":{"command":"%s","args":["fake-server","--transport","stdio","--id","%s"]}}}' "$bin" "$id" > "$work/c.json"
  fi
  "$bin" --host 127.0.0.1 --port 0 --config "$work/c.json" > "$work/proxy.out" 2>/dev/null &
  local proxy=$!
  for _ in $(seq 200); do grep -q "serving on" "$work/proxy.out" && break; sleep 0.05; done
  local base; base=$(grep -o 'http://[0-9.:]*' "$work/proxy.out" | head -1)
  for _ in $(seq 100); do curl -sf -XPOST "$base/f/echo" -H 'content-type: application/json' -d '{"message":"w"}' >/dev/null && break; sleep 0.1; done
  (
    for _ in 1 2 3; do
      sleep 4.5
      if [ "$transport" = http ]; then
        curl -s -XPOST "${url%/mcp}/control/fault" -H 'content-type: application/json' -d '{"kind":"session-loss"}' >/dev/null
      else
        pkill -KILL -f -- "--id $id" || true
      fi
    done
  ) &
  local injector=$!
  wrk -t2 -c"$c" -d18s -s "$work/post.lua" "$base/f/echo" > "$work/wrk.out" 2>&1 || true
  wait "$injector" 2>/dev/null || true
  kill "$proxy" 2>/dev/null || true; wait "$proxy" 2>/dev/null || true
  [ -n "$fake_pid" ] && { kill "$fake_pid" 2>/dev/null || true; wait "$fake_pid" 2>/dev/null || true; }
  local total non2xx socket
  total=$(awk '/requests in/ {print $1}' "$work/wrk.out")
  non2xx=$(awk '/Non-2xx/ {print $NF}' "$work/wrk.out"); non2xx=${non2xx:-0}
  # Calls without any answer: connections refused or reset, and calls past wrk's 2 s timeout.
  socket=$(awk '/Socket errors/ {gsub(",", ""); print $4 + $6 + $8 + $10}' "$work/wrk.out")
  socket=${socket:-0}
  echo "$((total - non2xx)) $((non2xx + socket))"
}

printf '| transport | calls in flight | this build: 200 | this build: errors |%s\n' \
  "${baseline:+ baseline: 200 | baseline: errors |}"
printf '| --- | --- | --- | --- |%s\n' "${baseline:+ --- | --- |}"
for spec in "stdio 2" "stdio 4" "stdio 8" "stdio 16" "http 16"; do
  set -- $spec
  read -r ok bad < <(run "$new" "$1" "$2")
  line="| $1 | $2 | $ok | $bad |"
  if [ -n "$baseline" ]; then
    read -r bok bbad < <(run "$baseline" "$1" "$2")
    line="$line $bok | $bbad |"
  fi
  echo "$line"
done
