"""A stand-in for the engine that stalls, to test the client's deadlines.

Speaks the engine's line protocol: answers `version` and `open` at once, and
`heap_stats` as STALL_MODE (environment) says:
- "silent": never answers;
- "progress": sends a progress notification every STALL_STEP seconds for
  STALL_FOR seconds, then answers;
- "once": never answers if the file STALL_MARK does not exist (and creates
  it), else answers at once: an engine that stalls the first time only;
- "crash": dies of SIGSEGV, as when the DAC crashes on a damaged dump.
Any other method is answered with -32601.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import Any

HEAP_STATS = {"types": [], "total_objects": 7, "total_bytes": 700, "free_by_kind": []}


def send(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def stall() -> None:
    while True:
        time.sleep(3600)


def heap_stats(request_id: Any) -> None:
    mode = os.environ.get("STALL_MODE", "silent")
    if mode == "silent":
        stall()
    if mode == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)
    if mode == "once":
        mark = os.environ["STALL_MARK"]
        if not os.path.exists(mark):
            open(mark, "w").close()
            stall()
    if mode == "progress":
        step = float(os.environ["STALL_STEP"])
        until = time.monotonic() + float(os.environ["STALL_FOR"])
        done = 0
        while time.monotonic() < until:
            time.sleep(step)
            done += 1
            params = {"id": request_id, "done": done, "total": 0, "message": "walking"}
            send({"jsonrpc": "2.0", "method": "$/progress", "params": params})
    send({"jsonrpc": "2.0", "id": request_id, "result": HEAP_STATS})


def main() -> None:
    for line in sys.stdin:
        request = json.loads(line)
        method, request_id = request.get("method"), request.get("id")
        if method == "version":
            send(
                {"jsonrpc": "2.0", "id": request_id, "result": {"protocol_version": 1}}
            )
        elif method == "open":
            send({"jsonrpc": "2.0", "id": request_id, "result": {"flavor": "Core"}})
        elif method == "heap_stats":
            heap_stats(request_id)
        elif method == "shutdown":
            send({"jsonrpc": "2.0", "id": request_id, "result": None})
            return
        elif request_id is not None:
            error = {"code": -32601, "message": f"no method {method}"}
            send({"jsonrpc": "2.0", "id": request_id, "error": error})


if __name__ == "__main__":
    main()
