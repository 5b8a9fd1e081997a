"""An MCP client of the official Python SDK against the proxy's MCP endpoint.

usage: python mcp_client.py URL KEY
Initializes once, lists the tools, calls `echo`, then prints `PAUSED` and waits for a line on
stdin (the test kills an upstream meanwhile), then calls `echo` and `add` again on the same
session. Prints one JSON object: the tool names, the session id before and after, the answers.
"""

import asyncio
import json
import sys

from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


def text_of(result):
    return {
        "isError": bool(result.is_error),
        "text": "".join(getattr(c, "text", "") for c in result.content),
    }


async def main():
    url, key = sys.argv[1], sys.argv[2]
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {key}"})
    async with http:
        async with streamable_http_client(url, http_client=http) as streams:
            read, write = streams[0], streams[1]
            async with ClientSession(read, write) as session:
                init = await session.initialize()
                tools = await session.list_tools()
                names = sorted(t.name for t in tools.tools)
                prefix = "" if "echo" in names else next(
                    n[: -len("echo")] for n in names if n.endswith("__echo"))
                first = await session.call_tool(prefix + "echo", {"message": "before 5d1e"})
                print("PAUSED", flush=True)
                await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
                after = await session.call_tool(prefix + "echo", {"message": "after 5d1e"})
                added = await session.call_tool(prefix + "add", {"a": 20, "b": 22})
                bad = None
                try:
                    await session.call_tool(prefix + "add", {"a": "not a number"})
                except Exception as e:  # the SDK raises the JSON-RPC error
                    bad = str(e)
                print(json.dumps({
                    "server": init.server_info.name,
                    "protocol": init.protocol_version,
                    "tools": names,
                    "first": text_of(first),
                    "after": text_of(after),
                    "added": text_of(added),
                    "bad": bad,
                }), flush=True)


asyncio.run(main())
