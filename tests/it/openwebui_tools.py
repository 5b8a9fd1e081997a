"""Drive the proxy the way Open WebUI drives an OpenAPI tool server, with Open WebUI's own code.

The functions are taken from the wheel's `open_webui/utils/tools.py` (never copied into this
repo): `get_tool_server_url`, `get_tool_server_data`, `resolve_schema`,
`convert_openapi_to_tool_payload` and `execute_tool_server`, plus the constant they share. The
rest of that module needs Open WebUI's database and app, so only its module-level settings are
stubbed, with Open WebUI's defaults.

usage: python openwebui_tools.py WHEEL SPEC.json
SPEC: {"servers": [{"url": ..., "key": ...}], "arguments": {"operationId": {...}}}
Prints one JSON object: per server, per tool, the converted payload and the call's answer.
"""

import ast
import asyncio
import json
import logging
import sys
import zipfile

import aiohttp
import yaml

WANTED = {
    "OPENAPI_HTTP_METHODS",
    "get_tool_server_url",
    "get_tool_server_data",
    "resolve_schema",
    "convert_openapi_to_tool_payload",
    "execute_tool_server",
}


def load_open_webui(wheel):
    with zipfile.ZipFile(wheel) as z:
        source = z.read("open_webui/utils/tools.py").decode()
    tree = ast.parse(source)
    keep = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in WANTED:
            keep.append(node)
        elif isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id in WANTED for t in node.targets
        ):
            keep.append(node)
    found = {getattr(n, "name", None) or n.targets[0].id for n in keep}
    missing = WANTED - found
    if missing:
        raise SystemExit(f"not in this Open WebUI wheel: {sorted(missing)}")
    module = ast.Module(body=keep, type_ignores=[])

    class JSONCodec:
        JSONDecodeError = json.JSONDecodeError
        loads = staticmethod(json.loads)

    import base64
    import copy
    from typing import Any
    from urllib.parse import quote, urlencode

    namespace = {
        "__name__": "open_webui_tools",
        "aiohttp": aiohttp,
        "yaml": yaml,
        "json": json,
        "base64": base64,
        "copy": copy,
        "quote": quote,
        "urlencode": urlencode,
        "Any": Any,
        "JSONCodec": JSONCodec,
        "log": logging.getLogger("open_webui"),
        # Open WebUI's defaults (open_webui/env.py).
        "ENABLE_TOOL_SERVERS": True,
        "AIOHTTP_CLIENT_TIMEOUT_TOOL_SERVER_DATA": 10,
        "AIOHTTP_CLIENT_TIMEOUT_TOOL_SERVER": None,
        "AIOHTTP_CLIENT_SESSION_TOOL_SERVER_SSL": True,
        "AIOHTTP_CLIENT_ALLOW_REDIRECTS": True,
    }
    exec(compile(ast.fix_missing_locations(module), "open_webui/utils/tools.py", "exec"), namespace)
    return namespace


def example(schema):
    """A value the schema accepts, as a model would fill it in from what it sees."""
    if not isinstance(schema, dict):
        return "x"
    for key in ("default", "const"):
        if key in schema:
            return schema[key]
    if schema.get("enum"):
        return schema["enum"][0]
    if schema.get("examples"):
        return schema["examples"][0]
    for key in ("oneOf", "anyOf"):
        if schema.get(key):
            return example(schema[key][0])
    t = schema.get("type")
    if isinstance(t, list):
        t = next((x for x in t if x != "null"), "string")
    if t == "integer":
        return max(1, schema.get("minimum", 1))
    if t == "number":
        return max(1.5, schema.get("minimum", 1.5))
    if t == "boolean":
        return True
    if t == "array":
        return [example(schema.get("items", {}))] * schema.get("minItems", 0)
    if t == "object":
        return {k: example(v) for k, v in schema.get("properties", {}).items()
                if k in schema.get("required", [])}
    return "x"


async def main():
    wheel, spec_path = sys.argv[1], sys.argv[2]
    owui = load_open_webui(wheel)
    spec = json.load(open(spec_path))
    report = {}
    for server in spec["servers"]:
        headers = {"Authorization": f"Bearer {server['key']}"} if server.get("key") else {}
        spec_url = owui["get_tool_server_url"](server["url"], "openapi.json")
        openapi = await owui["get_tool_server_data"](spec_url, headers)
        payload = owui["convert_openapi_to_tool_payload"](openapi)
        tools = {}
        for tool in payload:
            params = spec.get("arguments", {}).get(tool["name"])
            if params is None:
                props = tool["parameters"].get("properties", {})
                params = {k: example(v) for k, v in props.items()
                          if k in tool["parameters"].get("required", [])}
            call_headers = dict(headers, **{"Content-Type": "application/json"})
            answer, _ = await owui["execute_tool_server"](
                server["url"], call_headers, {}, tool["name"], params, {"openapi": openapi}
            )
            tools[tool["name"]] = {"payload": tool, "params": params, "answer": answer}
        report[server["url"]] = tools
    print(json.dumps(report))


asyncio.run(main())
