"""The gallery of broken proxies that `mcpo chaos` must catch (tests/it/chaos_gallery.rs; the YAML
files beside this one are the shipped scenarios, shortened).

usage: python3 proxy.py MODE PORT CONFIG
Starts `$MCPO_BIN serve --config CONFIG` on a free port and serves PORT in front of it, passing
every request on, except for the one thing MODE gets wrong:

  dies           a server that fails once after working is lost for good: every later call
                 to it is answered 502 without being passed on (a proxy that never gets a
                 server back)
  all-fail       any failure makes every server answer 503 for 2 s (one breaker for all
                 servers: one server's trouble breaks the others)
  retry-all      every failed call is sent again at once, up to 3 more times, with no budget;
                 the proxy behind has recovery off, so every call reaches the failing server
  deadline-only  a 2 s deadline (504), in front of a proxy with recovery off: calls are
                 answered in time, but a hung or dead server is never replaced
  stale          a failed call is answered 200 with the last good answer of the same tool:
                 another request's result

A failure is any answer that is not 2xx, or no answer. Ends the proxy behind it on SIGTERM.
"""

import ctypes
import http.client
import http.server
import os
import signal
import subprocess
import sys
import threading
import time

MODE, PORT, CONFIG = sys.argv[1], int(sys.argv[2]), sys.argv[3]
MODES = ("dies", "all-fail", "retry-all", "deadline-only", "stale")
if MODE not in MODES:
    sys.exit(f"unknown mode {MODE!r}; one of {', '.join(MODES)}")

env = dict(os.environ)
if MODE in ("retry-all", "deadline-only"):
    env["MCPO_ERROR_RECOVERY_ENABLED"] = "false"


def die_with_parent():
    # PR_SET_PDEATHSIG: the proxy behind goes when this wrapper goes, however it goes.
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)


inner = subprocess.Popen(
    [os.environ["MCPO_BIN"], "serve", "--host", "127.0.0.1", "--port", "0", "--config", CONFIG],
    stdout=subprocess.PIPE, env=env, preexec_fn=die_with_parent, text=True)
INNER_PORT = None
for line in inner.stdout:
    if "mcpo serving on " in line:
        INNER_PORT = int(line.split("mcpo serving on ")[1].split()[0].rsplit(":", 1)[1].strip("/"))
        break
if INNER_PORT is None:
    sys.exit("the proxy behind never said where it serves")
threading.Thread(target=lambda: [None for _ in inner.stdout], daemon=True).start()


def stop(*_):
    inner.terminate()
    try:
        inner.wait(15)
    except subprocess.TimeoutExpired:
        inner.kill()
    os._exit(0)


signal.signal(signal.SIGTERM, stop)

lock = threading.Lock()
dead = set()          # dies: servers lost for good
worked = set()        # dies: servers that answered a call once
all_fail_until = 0.0  # all-fail: every server fails until then (monotonic)
last_good = {}        # stale: (server, tool) -> the last 2xx body


def forward(method, path, body, content_type):
    """(status, body, content type) of the proxy behind; status 502 for no answer."""
    timeout = 2.0 if MODE == "deadline-only" else None
    conn = http.client.HTTPConnection("127.0.0.1", INNER_PORT, timeout=timeout)
    try:
        headers = {"content-type": content_type} if content_type else {}
        conn.request(method, path, body=body, headers=headers)
        answer = conn.getresponse()
        return answer.status, answer.read(), answer.getheader("content-type")
    except TimeoutError:
        return 504, b'{"detail":"deadline"}', "application/json"
    except OSError as e:
        return 502, f'{{"detail":"{type(e).__name__}"}}'.encode(), "application/json"
    finally:
        conn.close()


def answer(method, path, body, content_type):
    global all_fail_until
    parts = path.split("/")
    server, tool = (parts[1], parts[-1]) if len(parts) >= 3 else (None, None)
    if server is None:
        return forward(method, path, body, content_type)
    with lock:
        if MODE == "dies" and server in dead:
            return 502, b'{"detail":"server lost"}', "application/json"
        if MODE == "all-fail" and time.monotonic() < all_fail_until:
            return 503, b'{"detail":"every server is failing"}', "application/json"
    status, out, kind = forward(method, path, body, content_type)
    tries = 0
    while MODE == "retry-all" and not 200 <= status < 300 and tries < 3:
        tries += 1
        status, out, kind = forward(method, path, body, content_type)
    ok = 200 <= status < 300
    with lock:
        if ok:
            worked.add(server)
            last_good[(server, tool)] = (out, kind)
        elif MODE == "dies" and server in worked:
            dead.add(server)
        elif MODE == "all-fail":
            all_fail_until = time.monotonic() + 2.0
        elif MODE == "stale" and (server, tool) in last_good:
            out, kind = last_good[(server, tool)]
            return 200, out, kind
    return status, out, kind


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def serve(self):
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        status, out, kind = answer(self.command, self.path, body or None,
                                   self.headers.get("content-type"))
        self.send_response(status)
        self.send_header("content-type", kind or "application/json")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = serve

    def log_message(self, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256


Server(("127.0.0.1", PORT), Handler).serve_forever()
