#!/usr/bin/env python3
"""Runs another MCP gateway in front of the servers of an mcpo config file, so that `mcpo chaos
--via mcp --target` and `benches/gateways.sh` can judge it as they judge `mcpo serve`.

    gateway-target.py KIND --config CONFIG --port PORT

KIND is one of:

- `mcp-proxy` (PyPI, sparfenyuk): one process for every server, each at
  `/servers/{server}/mcp`, tools named as they are. It starts only stdio servers, so a URL
  server becomes a stdio entry that runs mcp-proxy's own client (`mcp-proxy --transport
  streamablehttp URL`, or `mcp-proxy URL` for SSE).
- `supergateway` (npm): one process per server (stdio only; `--stateful`, one child per MCP
  session, since its default starts a child for every POST), put behind nginx at
  `/servers/{server}/mcp` on PORT so that the harness reaches every server on one port. A URL
  server is bridged by a second supergateway (`--streamableHttp URL` or `--sse URL` to stdio).
- `contextforge` (PyPI, IBM mcp-contextforge-gateway): one process with every tool on `/mcp`,
  named `{server}-{tool}`. It does not start stdio servers itself (its own bridge,
  `mcpgateway.translate`, mixes up concurrent answers), so the stdio servers are started by
  one mcp-proxy on a side port, and each server is registered with the gateway by URL
  (`POST /gateways`). Authentication and rate limiting are off; its database is a fresh
  SQLite file in a temporary directory.

It prints `listening on http://127.0.0.1:PORT` once the gateway answers (for ContextForge:
once every server is registered), and stops everything it started on SIGTERM or SIGINT, or when
one of its processes exits. Where the gateways are installed: GATEWAYS_DIR (default `.deps/gateways`
of the repository), as `benches/gateways.sh` installs them.
"""

import argparse
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GATEWAYS = os.environ.get("GATEWAYS_DIR", os.path.join(ROOT, ".deps", "gateways"))
MCP_PROXY = os.path.join(GATEWAYS, "mcp-proxy", "bin", "mcp-proxy")
SUPERGATEWAY = os.path.join(GATEWAYS, "node_modules", ".bin", "supergateway")
CONTEXTFORGE = os.path.join(GATEWAYS, "contextforge", "bin", "mcpgateway")

procs = []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd, env=None, **kw):
    # Their output goes to stderr: stdout carries only the "listening on" line.
    p = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=sys.stderr, **kw)
    procs.append(p)
    return p


def stop(*_):
    """SIGTERM or SIGINT: leave through `main`'s cleanup, with status 0."""
    raise SystemExit(0)


def wait_http(url, seconds=90, ok=lambda status: status < 500):
    """Until `url` answers with a status `ok` accepts; exits if a process of ours exits."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                sys.exit(f"gateway-target: {p.args!r} exited with {p.returncode} while starting")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if ok(r.status):
                    return
        except urllib.error.HTTPError as e:
            if ok(e.code):
                return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    sys.exit(f"gateway-target: nothing answered at {url} within {seconds} s")


def stdio_entry(entry):
    """The server as mcp-proxy's named-server entry (stdio), bridging a URL server."""
    if "command" in entry:
        return {k: entry[k] for k in ("command", "args", "env") if k in entry}
    url = entry["url"]
    kind = entry.get("type", "")
    if kind in ("sse",) or url.rstrip("/").endswith("/sse"):
        return {"command": MCP_PROXY, "args": [url]}
    return {"command": MCP_PROXY, "args": ["--transport", "streamablehttp", url]}


def run_mcp_proxy(servers, port, work):
    config = {"mcpServers": {name: stdio_entry(e) for name, e in servers.items()}}
    path = os.path.join(work, "servers.json")
    with open(path, "w") as f:
        json.dump(config, f)
    start([MCP_PROXY, "--named-server-config", path, "--host", "127.0.0.1",
           "--port", str(port), "--log-level", "WARNING"])
    wait_http(f"http://127.0.0.1:{port}/status")


def run_supergateway(servers, port, work):
    routes = []
    for name, entry in servers.items():
        env = dict(os.environ, **entry.get("env", {}))
        if "command" in entry:
            cmd = shlex.join([entry["command"], *entry.get("args", [])])
        else:
            flag = "--sse" if entry.get("type") == "sse" else "--streamableHttp"
            cmd = shlex.join([SUPERGATEWAY, flag, entry["url"], "--logLevel", "none"])
        p = free_port()
        start([SUPERGATEWAY, "--stdio", cmd, "--outputTransport", "streamableHttp",
               "--stateful", "--port", str(p), "--healthEndpoint", "/healthz",
               "--logLevel", "none"], env=env)
        routes.append((name, p))
    conf = os.path.join(work, "nginx.conf")
    # Kept-alive connections to each supergateway, as a client's own would be.
    upstreams = "\n".join(
        f"  upstream sg{i} {{ server 127.0.0.1:{p}; keepalive 64; }}"
        for i, (_, p) in enumerate(routes))
    locations = "\n".join(
        f"    location /servers/{name}/ {{ proxy_pass http://sg{i}/; }}"
        for i, (name, _) in enumerate(routes))
    with open(conf, "w") as f:
        f.write(f"""daemon off;
worker_processes 1;
pid {work}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {work}/body;
  proxy_temp_path {work}/proxy;
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  proxy_buffering off;
  proxy_request_buffering off;
  proxy_read_timeout 3600s;
{upstreams}
  server {{
    listen 127.0.0.1:{port};
{locations}
  }}
}}
""")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    start([nginx, "-p", work, "-c", conf, "-e", "stderr"])
    for name, p in routes:
        wait_http(f"http://127.0.0.1:{p}/healthz")
    wait_http(f"http://127.0.0.1:{port}/servers/{routes[0][0]}/healthz")


def post_json(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.load(r)


def run_contextforge(servers, port, work):
    env = dict(
        os.environ,
        JWT_SECRET_KEY="bench-jwt-secret-0123456789abcdef0123456789abcdef",
        AUTH_ENCRYPTION_SECRET="bench-enc-secret-0123456789abcdef0123456789abcdef",
        PLATFORM_ADMIN_PASSWORD="Bench-Passw0rd!x",
        DATABASE_URL=f"sqlite:///{work}/mcp.db",
        MCPGATEWAY_UI_ENABLED="false",
        MCPGATEWAY_ADMIN_API_ENABLED="false",
        SSRF_ALLOW_LOCALHOST="true",
        RATE_LIMITING_ENABLED="false",
        AUTH_REQUIRED="false",
        MCP_REQUIRE_AUTH="false",
        ALLOW_UNAUTHENTICATED_ADMIN="true",
        LOG_LEVEL="WARNING",
    )
    stdio = {name: e for name, e in servers.items() if "command" in e}
    bridge = None
    if stdio:
        bridge = free_port()
        path = os.path.join(work, "bridge.json")
        with open(path, "w") as f:
            json.dump({"mcpServers": stdio}, f)
        start([MCP_PROXY, "--named-server-config", path, "--host", "127.0.0.1",
               "--port", str(bridge), "--log-level", "WARNING"])
    start([CONTEXTFORGE, "--host", "127.0.0.1", "--port", str(port)], env=env, cwd=work)
    if bridge:
        wait_http(f"http://127.0.0.1:{bridge}/status")
    # The gateway's own health first, then each server: registering connects to it and
    # lists its tools, so a server that is down at start is retried until it comes up.
    wait_http(f"http://127.0.0.1:{port}/health", seconds=120, ok=lambda s: s == 200)
    for name, entry in servers.items():
        if name in stdio:
            url, transport = f"http://127.0.0.1:{bridge}/servers/{name}/mcp", "STREAMABLEHTTP"
        elif entry.get("type") == "sse":
            url, transport = entry["url"], "SSE"
        else:
            url, transport = entry["url"], "STREAMABLEHTTP"
        deadline = time.monotonic() + 90
        while True:
            try:
                post_json(f"http://127.0.0.1:{port}/gateways",
                          {"name": name, "url": url, "transport": transport})
                break
            except (urllib.error.URLError, OSError) as e:
                if time.monotonic() > deadline:
                    sys.exit(f"gateway-target: could not register {name} ({url}): {e}")
                time.sleep(0.5)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["mcp-proxy", "supergateway", "contextforge"])
    ap.add_argument("--config", required=True)
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    with open(args.config) as f:
        servers = json.load(f)["mcpServers"]
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    work = tempfile.mkdtemp(prefix=f"gw-{args.kind}-")
    try:
        {"mcp-proxy": run_mcp_proxy, "supergateway": run_supergateway,
         "contextforge": run_contextforge}[args.kind](servers, args.port, work)
        print(f"listening on http://127.0.0.1:{args.port}", flush=True)
        while all(p.poll() is None for p in procs):
            time.sleep(0.2)
        gone = next(p for p in procs if p.poll() is not None)
        print(f"gateway-target: {gone.args!r} exited with {gone.returncode}", file=sys.stderr)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(1)


if __name__ == "__main__":
    main()
