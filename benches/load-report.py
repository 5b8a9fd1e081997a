"""The tables of benches/load.sh: reads its results (one JSON line per run) and writes
load.md (Markdown, with the date and the machine) and load.json (every figure, plus the
targets of issue 16 each marked met or missed).

    python3 benches/load-report.py bench-results/load.jsonl bench-results
"""
import json
import os
import platform
import statistics
import sys
import time

results_path, out = sys.argv[1], sys.argv[2]
runs = {}
for line in open(results_path):
    r = json.loads(line)
    runs.setdefault(r["label"], []).append(r["result"])


def one(label):
    got = runs.get(label)
    return got[0] if got else None


def num(x, digits=2):
    if x is None:
        return "n/a"
    if isinstance(x, float) and x >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}" if isinstance(x, float) else f"{x:,}"


def ratio(a, b):
    return a / b if a and b else None


def cpu_ms_per_1000(r):
    if not r or not r.get("calls"):
        return None
    return r["cpu_ticks"] / r["clk_tck"] * 1000 / r["calls"] * 1000


def machine():
    model = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.machine()}, {os.cpu_count()} cores ({model}), {platform.platform()}"


rows = []
closed = []
for transport in ["stdio", "http", "sse"]:
    limit_transport = "http" if transport == "sse" else transport
    for c in [1, 16, 64]:
        lim = one(f"limit {limit_transport} closed c={c}")
        rs = one(f"rs {transport} closed c={c}")
        py = one(f"py {transport} closed c={c}")
        entry = {"transport": transport, "concurrency": c, "limit": lim, "mcpo_rs": rs,
                 "python": py,
                 "mcpo_rs_wrk": (one(f"rs {transport} wrk c={c}") or {}).get("throughput"),
                 "python_wrk": (one(f"py {transport} wrk c={c}") or {}).get("throughput")}
        if rs and lim:
            entry["ratio_to_limit"] = ratio(rs["throughput"], lim["throughput"])
            entry["added_p50_ms"] = rs["p50_ms"] - lim["p50_ms"]
        if rs and py:
            entry["ratio_to_python"] = ratio(rs["throughput"], py["throughput"])
        closed.append(entry)

lines = [
    f"Measured {time.strftime('%Y-%m-%d')} on {machine()}; release build; `bash benches/load.sh`,"
    f" {json.dumps(os.environ.get('DURATION', '8'))} s per run after 1 s of warm-up; client:"
    " `examples/limit` (rmcp straight on the fake for the limit, `POST /echo` for the proxies),"
    " wrk's figure for the same closed-loop run in its own column. Latency in ms.",
    "",
    "| transport | c | run | calls/s | wrk req/s | p50 | p99 | p99.9 | vs limit | vs Python | added p50 |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
]
for e in closed:
    t, c = e["transport"], e["concurrency"]
    if e["limit"] and t != "sse":
        r = e["limit"]
        lines.append(f"| {t} | {c} | limit (rmcp, direct) | {num(r['throughput'])} | | {num(r['p50_ms'], 3)} | "
                     f"{num(r['p99_ms'], 3)} | {num(r['p999_ms'], 3)} | 1 | | |")
    if e["mcpo_rs"]:
        r = e["mcpo_rs"]
        vs_limit = num(e.get("ratio_to_limit"), 2) if t != "sse" else f"{num(e.get('ratio_to_limit'), 2)} (of the HTTP limit)"
        added = num(e.get("added_p50_ms"), 3) if t != "sse" else ""
        lines.append(f"| {t} | {c} | mcpo-rs | {num(r['throughput'])} | {num(e['mcpo_rs_wrk'])} | {num(r['p50_ms'], 3)} | "
                     f"{num(r['p99_ms'], 3)} | {num(r['p999_ms'], 3)} | {vs_limit} | "
                     f"{num(e.get('ratio_to_python'), 1) + 'x' if e.get('ratio_to_python') else ''} | {added} |")
    if e["python"]:
        r = e["python"]
        lines.append(f"| {t} | {c} | Python mcpo 0.0.20 | {num(r['throughput'])} | {num(e['python_wrk'])} | {num(r['p50_ms'], 3)} | "
                     f"{num(r['p99_ms'], 3)} | {num(r['p999_ms'], 3)} | "
                     f"{num(ratio(r['throughput'], e['limit']['throughput']) if e['limit'] else None, 2)} | 1 | "
                     f"{num(r['p50_ms'] - e['limit']['p50_ms'], 3) if e['limit'] else ''} |")

lines += ["", "Open loop (fixed rate, latency from the intended send time):", "",
          "| run | rate/s | answered/s | errors | p50 | p99 | p99.9 | max |",
          "| --- | --- | --- | --- | --- | --- | --- | --- |"]
open_loop = {}
for label in ["limit stdio open", "rs stdio open", "py stdio open", "limit http open", "rs http open"]:
    r = one(label)
    if not r:
        continue
    open_loop[label] = r
    lines.append(f"| {label.replace(' open', '').replace('rs ', 'mcpo-rs ').replace('py ', 'Python mcpo ')} | "
                 f"{num(r['rate'], 0)} | {num(r['throughput'])} | {r['errors'] + r['dropped']} | {num(r['p50_ms'], 3)} | "
                 f"{num(r['p99_ms'], 3)} | {num(r['p999_ms'], 3)} | {num(r['max_ms'], 1)} |")


def startup(prefix, n):
    got = runs.get(f"{prefix} startup n={n}") or []
    values = [r["first_call_ms"] for r in got if "first_call_ms" in r]
    return statistics.median(values) if values else None


resources = {}
lines += ["", "| proxy | idle RSS | peak RSS (c=64) | CPU per 1,000 calls (c=16) | first answered call: 1 / 10 / 50 servers |",
          "| --- | --- | --- | --- | --- |"]
for prefix, name in [("rs stdio", "mcpo-rs (stdio)"), ("rs http", "mcpo-rs (streamable HTTP)"),
                     ("rs sse", "mcpo-rs (SSE)"), ("py stdio", "Python mcpo 0.0.20 (stdio)")]:
    idle = (one(f"{prefix} idle") or {}).get("rss_kb")
    peak = (one(f"{prefix} closed c=64") or {}).get("peak_rss_kb")
    cpu = cpu_ms_per_1000(one(f"{prefix} closed c=16"))
    first = [startup(prefix.split()[0], n) for n in (1, 10, 50)] if prefix.endswith("stdio") else [None] * 3
    resources[prefix] = {"idle_rss_kb": idle, "peak_rss_kb": peak, "cpu_ms_per_1000_calls": cpu,
                         "first_call_ms": dict(zip(["1", "10", "50"], first))}
    first_cell = " / ".join(f"{num(f, 0)} ms" for f in first) if prefix.endswith("stdio") else ""
    lines.append(f"| {name} | {num(idle / 1024, 1) if idle else 'n/a'} MB | {num(peak / 1024, 1) if peak else 'n/a'} MB | "
                 f"{num(cpu, 0)} ms | {first_cell} |")


def closed_entry(t, c):
    return next(e for e in closed if e["transport"] == t and e["concurrency"] == c)


def target(name, value, ok, shown):
    return {"target": name, "measured": shown, "value": value, "met": ok}


targets = []
e16 = closed_entry("stdio", 16)
r = e16.get("ratio_to_limit")
targets.append(target("c=16 stdio: >= 90% of the limit's throughput", r, r is not None and r >= 0.9, f"{num((r or 0) * 100, 0)}%"))
r = e16.get("ratio_to_python")
targets.append(target("c=16 stdio: >= 10x the Python mcpo", r, r is not None and r >= 10, f"{num(r, 1)}x"))
a = closed_entry("stdio", 1).get("added_p50_ms")
targets.append(target("c=1 stdio: added p50 < 0.1 ms", a, a is not None and a < 0.1, f"{num(a, 3)} ms"))
a = closed_entry("http", 1).get("added_p50_ms")
targets.append(target("c=1 streamable HTTP: added p50 < 0.2 ms", a, a is not None and a < 0.2, f"{num(a, 3)} ms"))
for label, t in [("rs stdio open", "stdio"), ("rs http open", "streamable HTTP")]:
    r = open_loop.get(label)
    p = r["p99_ms"] if r else None
    targets.append(target(f"open loop at half the maximum ({t}): p99 < 2 ms", p, p is not None and p < 2,
                          f"{num(p, 2)} ms at {num(r['rate'], 0) if r else '?'}/s"))
idle = resources["rs stdio"]["idle_rss_kb"]
targets.append(target("idle RSS < 20 MB", idle, idle is not None and idle < 20 * 1024, f"{num(idle / 1024 if idle else None, 1)} MB"))
f1 = resources["rs stdio"]["first_call_ms"]["1"]
targets.append(target("first answered call < 100 ms (1 fake stdio server)", f1, f1 is not None and f1 < 100, f"{num(f1, 0)} ms"))
lines += ["", "| target | measured | |", "| --- | --- | --- |"]
for t in targets:
    lines.append(f"| {t['target']} | {t['measured']} | {'met' if t['met'] else 'missed'} |")

table = "\n".join(lines) + "\n"
with open(os.path.join(out, "load.md"), "w") as f:
    f.write(table)
with open(os.path.join(out, "load.json"), "w") as f:
    json.dump({"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine(),
               "closed_loop": closed, "open_loop": open_loop, "resources": resources,
               "targets": targets, "runs": runs}, f, indent=2)
print(table)
print(f"written: {os.path.join(out, 'load.md')}, {os.path.join(out, 'load.json')}")
