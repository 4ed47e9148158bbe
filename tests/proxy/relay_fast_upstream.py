"""A handshake-era MCP server written as bare JSON-RPC lines, so its answers can misbehave in
ways an SDK server never would (for the relay's raw upstream path).

Tools: `echo` (answers normally), `string_id` (echoes the request id as a string), `bad_result`
(a result that is not an object), `garbage_first` (a line that is not JSON, then the answer),
`split` (the answer written in two pieces, a pause between them), `chatty` (as many log
notifications as its text says, then the answer a moment later), `odd_ids` (answers to ids that
look like digits but are no numbers, written in one piece with the real answer).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any


def write(message: dict[str, Any] | bytes) -> None:
    data = message if isinstance(message, bytes) else json.dumps(message).encode() + b"\n"
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def text(value: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": value}], "isError": False}


def answer(request: dict[str, Any]) -> None:
    rid, method = request["id"], request["method"]
    if method == "initialize":
        write({"jsonrpc": "2.0", "id": rid, "result": {
            "protocolVersion": "2025-11-25",
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "raw-upstream", "version": "1"},
        }})
        return
    if method == "tools/list":
        names = ["echo", "string_id", "bad_result", "garbage_first", "split", "chatty", "odd_ids"]
        tools = [{"name": n, "inputSchema": {"type": "object"}} for n in names]
        write({"jsonrpc": "2.0", "id": rid, "result": {"tools": tools}})
        return
    if method != "tools/call":
        write({"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": "Method not found"}})
        return
    name = request["params"]["name"]
    said = str(request["params"].get("arguments", {}).get("text", ""))
    if name == "string_id":
        write({"jsonrpc": "2.0", "id": str(rid), "result": text(said)})
    elif name == "bad_result":
        write({"jsonrpc": "2.0", "id": rid, "result": [said]})
    elif name == "garbage_first":
        write(b"this is not JSON\n")
        write({"jsonrpc": "2.0", "id": rid, "result": text(said)})
    elif name == "chatty":  # log notifications first, the answer a moment later
        for n in range(int(said)):
            write({"jsonrpc": "2.0", "method": "notifications/message",
                   "params": {"level": "info", "data": f"note {n}"}})
        time.sleep(0.2)
        write({"jsonrpc": "2.0", "id": rid, "result": text(said)})
    elif name == "odd_ids":  # superscript two, a number too long for int(): then the answer
        odd = [{"jsonrpc": "2.0", "id": rid, "result": text(said)} for rid in ("\u00b2", "9" * 5000)]
        write(b"".join(json.dumps(m).encode() + b"\n" for m in [*odd, {"jsonrpc": "2.0", "id": rid,
                                                                      "result": text(said)}]))
    elif name == "split":
        data = json.dumps({"jsonrpc": "2.0", "id": rid, "result": text(said)}).encode() + b"\n"
        write(data[:10])
        time.sleep(0.2)
        write(data[10:])
    else:
        write({"jsonrpc": "2.0", "id": rid, "result": text(said)})


def main() -> None:
    for line in sys.stdin.buffer:
        if not line.strip():
            continue
        message = json.loads(line)
        if "id" in message and "method" in message:
            answer(message)


if __name__ == "__main__":
    main()
