"""Drive the proxy's MCP endpoint the way Open WebUI's native MCP client does, with its own code.

`open_webui/utils/mcp/client.py` is read from the wheel (never copied into this repo) and run
as it is; only the two modules it imports from the rest of Open WebUI are stubbed, with Open
WebUI's defaults: `open_webui.env` (timeouts, TLS verification) and
`open_webui.utils.json_codec` (a JSON codec). The client speaks whatever the SDK's `auto` mode
picks: it probes `server/discover` (protocol 2026-07-28) and falls back to `initialize`.

usage: python openwebui_mcp.py WHEEL URL KEY TOOL_PREFIX [OTHER_PREFIX ...]
As Open WebUI does for a chat message: connect, list the tools, call `{prefix}echo`; then print
`PAUSED` and wait for a line on stdin (the test breaks upstreams meanwhile), then call `echo`
and `add` again on the same client, `echo` of every other prefix (other servers behind the
same endpoint), and `echo` once more on a new client (Open WebUI connects again for each
message). Prints one JSON object: the protocol revision the client settled on, the
tool names, the answers, the errors.
"""

import asyncio
import json
import sys
import types
import zipfile


def load_client(wheel):
    env = types.ModuleType("open_webui.env")
    env.AIOHTTP_CLIENT_SESSION_TOOL_SERVER_SSL = True
    env.AIOHTTP_CLIENT_TIMEOUT_TOOL_SERVER = None
    env.MCP_INITIALIZE_TIMEOUT = 10

    class JSONCodec:
        JSONDecodeError = json.JSONDecodeError
        loads = staticmethod(json.loads)
        dumps = staticmethod(json.dumps)

    codec = types.ModuleType("open_webui.utils.json_codec")
    codec.JSONCodec = JSONCodec
    for name in ("open_webui", "open_webui.utils", "open_webui.utils.mcp"):
        sys.modules[name] = types.ModuleType(name)
    sys.modules["open_webui.env"] = env
    sys.modules["open_webui.utils.json_codec"] = codec
    with zipfile.ZipFile(wheel) as z:
        source = z.read("open_webui/utils/mcp/client.py").decode()
    module = types.ModuleType("open_webui.utils.mcp.client")
    exec(compile(source, "open_webui/utils/mcp/client.py", "exec"), module.__dict__)
    return module.MCPClient


def texts(content):
    return "".join(c.get("text", "") for c in content if c.get("type") == "text")


async def call(client, name, args, out, label):
    try:
        out[label] = texts(await client.call_tool(name, args))
    except Exception as e:  # noqa: BLE001 - every failure is reported, not raised
        out.setdefault("errors", []).append(f"{label}: {type(e).__name__}: {e}")


async def main():
    wheel, url, key, prefix = sys.argv[1:5]
    others = sys.argv[5:]
    MCPClient = load_client(wheel)
    headers = {"Authorization": f"Bearer {key}"}
    out = {}
    client = MCPClient()
    await client.connect(url, headers=headers)
    out["protocol"] = client.client.protocol_version
    out["tools"] = sorted(spec["name"] for spec in await client.list_tool_specs())
    await call(client, prefix + "echo", {"message": "before 7c2a"}, out, "first")
    print("PAUSED", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    await call(client, prefix + "echo", {"message": "after 7c2a"}, out, "after")
    await call(client, prefix + "add", {"a": 20, "b": 22}, out, "add")
    for other in others:
        await call(client, other + "echo", {"message": f"to {other}"}, out, other)
    await client.disconnect()
    again = MCPClient()
    await again.connect(url, headers=headers)
    await call(again, prefix + "echo", {"message": "next message"}, out, "next")
    await again.disconnect()
    print(json.dumps(out), flush=True)


asyncio.run(main())
