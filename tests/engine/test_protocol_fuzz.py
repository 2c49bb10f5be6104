"""Protocol fuzzing of a real engine process: malformed and hostile lines,
named cases from the fault campaign and seeded random ones. The engine must
never exit, must answer every request with a result or a proper JSON-RPC
error, and must keep its memory small whatever a line holds.

The normal run sends a few hundred random cases; DUMPSCOPE_FUZZ_CASES=N sets
another number (DUMPSCOPE_FUZZ_SEED another seed)."""

from __future__ import annotations

import json
import os
import queue
import random
import subprocess
import threading
from pathlib import Path
from typing import IO, Any, Iterator, Optional

import pytest

from analysis.managed.client import ENGINE, engine_available
from scenarios.dumps import ensure_dump

pytestmark = pytest.mark.skipif(
    not engine_available(), reason="engine not built: run engine/build.sh"
)

CASES = int(os.environ.get("DUMPSCOPE_FUZZ_CASES", "300"))
SEED = int(os.environ.get("DUMPSCOPE_FUZZ_SEED", "20261201"))
ANSWER_TIMEOUT = 60.0


class Engine:
    """A raw engine process: lines in, parsed messages out."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [str(ENGINE)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self.messages: "queue.Queue[Optional[dict[str, Any]]]" = queue.Queue()
        assert self.proc.stdout is not None
        threading.Thread(
            target=self._read, args=(self.proc.stdout,), daemon=True
        ).start()
        self._probe = 0

    def _read(self, stream: IO[bytes]) -> None:
        for line in stream:
            message = json.loads(line)  # the engine writes JSON only
            if message.get("method") != "$/progress":
                self.messages.put(message)
        self.messages.put(None)

    def send(self, line: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + b"\n")
        self.proc.stdin.flush()

    def answer(self, request_id: Any) -> dict[str, Any]:
        """The reply to request_id; replies with id null (to lines that were
        not requests) met on the way are checked and skipped."""
        while True:
            message = self.messages.get(timeout=ANSWER_TIMEOUT)
            assert message is not None, f"engine exited ({self.proc.wait()})"
            assert message.get("jsonrpc") == "2.0"
            if message.get("id") is None:
                assert_error_shape(message)
                continue
            if message["id"] == request_id:
                return message

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        self.send(json.dumps(request).encode())
        return self.answer(request["id"])

    def probe(self) -> None:
        """Asserts the engine is alive and answering."""
        self._probe += 1
        probe_id = f"probe-{self._probe}"
        reply = self.ask({"jsonrpc": "2.0", "id": probe_id, "method": "version"})
        assert reply["result"]["protocol_version"] == 1
        assert self.proc.poll() is None

    def rss_bytes(self) -> int:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        kb = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
        return int(kb.split()[1]) * 1024

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def assert_error_shape(message: dict[str, Any]) -> None:
    error = message.get("error")
    assert isinstance(error, dict), message
    assert isinstance(error.get("code"), int) and isinstance(error.get("message"), str)
    assert error["message"], message


@pytest.fixture(scope="module")
def dump() -> Path:
    return ensure_dump("blocked-finalizer", "net10").path


@pytest.fixture
def engine() -> Iterator[Engine]:
    e = Engine()
    yield e
    e.close()


def request(request_id: Any, method: str, params: Any = None) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        message["params"] = params
    return message


def error_code(engine: Engine, message: dict[str, Any]) -> int:
    reply = engine.ask(message)
    assert_error_shape(reply)
    return int(reply["error"]["code"])


# --------------------------------------------------------------- named cases


@pytest.mark.parametrize(
    "params",
    [[1], 7, "1", None, {"id": [1]}, {"id": {"a": 1}}, {"id": True}, {}],
    ids=[
        "array",
        "number",
        "string",
        "missing",
        "id-array",
        "id-object",
        "id-bool",
        "no-id",
    ],
)
def test_cancel_request_with_any_params_leaves_the_engine_running(
    engine: Engine, params: Any
) -> None:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": "$/cancelRequest"}
    if params is not None:
        message["params"] = params
    engine.send(json.dumps(message).encode())
    engine.probe()


def test_duplicate_keys_are_refused_and_the_engine_goes_on(engine: Engine) -> None:
    line = b'{"jsonrpc":"2.0","id":1,"method":"version","id":2}'
    engine.send(line)
    reply = engine.messages.get(timeout=ANSWER_TIMEOUT)
    assert reply is not None and reply["error"]["code"] == -32700
    assert "Duplicate" in reply["error"]["message"]
    engine.probe()


@pytest.mark.parametrize(
    "method,params",
    [
        ("stack", {"os_id": 2**32 + 4242}),
        ("stack", {"os_id": -1}),
        ("stack", {"os_id": "0x"}),
        ("object", {"address": "0x"}),
        ("object", {"address": ""}),
        ("object", {"address": "0xzz"}),
        ("object", {"address": 2**64}),
        ("object", {"address": None}),
        ("object", {"address": 1.5}),
        ("instances", {"method_table": 1, "offset": -1}),
        ("instances", {"method_table": 1, "limit": -1}),
        ("instances", {"method_table": 1, "limit": 2**31 + 5}),
        ("instances", {"method_table": 1, "sort": 3}),
        ("root_paths", {"address": 1, "max_paths": 2**32 + 1}),
        ("root_paths", {"address": 1, "max_paths": -3}),
        ("finalizer_objects", {"method_table": 1, "queue": "all"}),
        ("finalizer_objects", {"method_table": 1, "offset": 2**31}),
        ("native_pointers", {"ranges": [[1]]}),
        ("native_pointers", {"indirect": "yes"}),
        ("native_pointers", {"limit": 0}),
        ("dominators", {"offset": -1}),
        ("dominators", {"address": "0x"}),
        ("retained_by_type", {"limit": 2**31}),
        ("why_alive", {"address": 2**64}),
        ("holders", {"method_table": "0x"}),
        ("open", {"dump": "/x.core", "index": "no"}),
        ("open", {"dump": 12}),
        ("open", {"dump": ""}),
        ("open", {"dump": "/tmp/x\udcff.core"}),
        ("heap_stats", [1, 2]),
        ("heap_stats", "all"),
    ],
)
def test_bad_parameters_are_refused_with_invalid_params(
    engine: Engine, dump: Path, method: str, params: Any
) -> None:
    # With a dump open: a refused value must not reach the analysis (os_id
    # 2^32+tid used to return tid's stack; "0x" used to give -32603).
    assert "result" in engine.ask(request(1, "open", {"dump": str(dump)}))
    assert error_code(engine, request(2, method, params)) == -32602
    engine.probe()


def test_an_open_with_a_bad_parameter_leaves_the_open_dump_open(
    engine: Engine, dump: Path
) -> None:
    assert "result" in engine.ask(request(1, "open", {"dump": str(dump)}))
    assert error_code(engine, request(2, "open", {"dump": 5})) == -32602
    assert error_code(engine, request(3, "open", {"dump": "/nonexistent.core"})) == 1002
    reply = engine.ask({"jsonrpc": "2.0", "id": 4, "method": "gc_heap"})
    assert reply["result"]["segments"]


def test_a_256_mib_line_is_refused_without_being_held(engine: Engine) -> None:
    engine.probe()
    chunk = b"x" * (1 << 20)
    assert engine.proc.stdin is not None
    head, tail = b'{"jsonrpc":"2.0","id":1,"method":"version","p":"', b'"}'
    engine.proc.stdin.write(head)
    for _ in range(256):
        engine.proc.stdin.write(chunk)
    engine.proc.stdin.write(tail + b"\n")
    engine.proc.stdin.flush()
    refused = engine.messages.get(timeout=ANSWER_TIMEOUT)
    assert refused is not None and refused["error"]["code"] == -32600
    assert f"{len(head) + (256 << 20) + len(tail)} bytes" in refused["error"]["message"]
    engine.probe()
    # The engine idles at 40-80 MB; holding the line took 1.7 GB.
    assert engine.rss_bytes() < 300 << 20


@pytest.mark.parametrize(
    "line",
    [
        b'{"jsonrpc":"2.0","id":1,"method":"\xff\xfe"}',
        b"\xef\xbb\xbf{}",
        b"[" * 100000,
        b'{"a":' * 5000,
        b"null",
        b"[]",
        b'{"jsonrpc":"2.0","id":1,"method":7}',
        b'{"jsonrpc":"2.0","id":{"a":1},"method":"version"}',
        b'{"jsonrpc":"2.0","id":1e999,"method":"version"}',
        b"\x00\x00\x00",
    ],
)
def test_hostile_lines_get_an_error_and_the_engine_goes_on(
    engine: Engine, line: bytes
) -> None:
    engine.send(line)
    engine.probe()


# ------------------------------------------------------------- random cases

METHODS = [
    "version",
    "open",
    "runtime_info",
    "heap_stats",
    "gc_heap",
    "finalizer_queue",
    "thread_pool",
    "stack",
    "monitors",
    "instances",
    "object",
    "root_paths",
    "finalizer_objects",
    "native_pointers",
    "no_such_method",
]
PARAM_NAMES = [
    "dump",
    "dac",
    "dac_folder",
    "os_id",
    "method_table",
    "offset",
    "limit",
    "sort",
    "address",
    "max_paths",
    "queue",
    "ranges",
    "indirect",
]


def random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return rng.choice(
            [0, 1, -1, 2**31, 2**32 + 7, 2**53 + 1, 2**63, 2**64, -(2**63)]
        )
    if kind == 1:
        return rng.choice([0.5, -0.0, 1e300, 3.0])
    if kind == 2:
        return rng.choice(
            ["", "0x", "0x0", "0xFFFFFFFFFFFFFFFFF", "-1", " 1", "size", "\udcff"]
        )
    if kind == 3:
        return rng.choice([True, False, None])
    if kind == 4:
        return "".join(chr(rng.randrange(1, 0x3000)) for _ in range(rng.randrange(12)))
    if kind == 5:
        return rng.randrange(2**64)
    if kind == 6:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {
        rng.choice(PARAM_NAMES + ["id", "x"]): random_value(rng, depth + 1)
        for _ in range(rng.randrange(4))
    }


def random_case(rng: random.Random, n: int) -> tuple[bytes, Optional[str]]:
    """A line and the id whose answer it must get (None: no answer is due,
    or the line is too broken to name one)."""
    request_id = f"r{n}"
    method = rng.choice(METHODS)
    params: Any = (
        {name: random_value(rng) for name in rng.sample(PARAM_NAMES, rng.randrange(4))}
        if rng.random() < 0.8
        else random_value(rng)
    )
    if method == "open" and isinstance(params, dict):
        params.pop("dump", None)  # never open an arbitrary path
    message = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
    line = json.dumps(message).encode()
    style = rng.randrange(4)
    if style == 0:
        return line, request_id
    if style == 1:  # flipped bytes
        data = bytearray(line)
        for _ in range(rng.randrange(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data).replace(b"\n", b" "), None
    if style == 2:  # cut short
        return line[: rng.randrange(len(line))], None
    # a key written twice
    return line[:-1] + b',"method":"version"}', None


def test_seeded_random_lines_never_end_the_engine(engine: Engine, dump: Path) -> None:
    assert "result" in engine.ask(request("open", "open", {"dump": str(dump)}))
    rng = random.Random(SEED)
    answered = 0
    for n in range(CASES):
        line, request_id = random_case(rng, n)
        engine.send(line)
        if request_id is not None:
            reply = engine.answer(request_id)
            if "error" in reply:
                assert_error_shape(reply)
                assert reply["error"]["code"] != -32603, (line, reply)
            else:
                assert "result" in reply
            answered += 1
        if n % 10 == 9:
            engine.probe()
    engine.probe()
    assert answered > CASES // 5
