"""The Linux engine is one Native AOT executable (engine/build.sh): it runs,
restarts its worker and reads a dump without the dotnet host."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from analysis.managed.client import ENGINE, engine_available
from analysis.managed.engines import EngineLaunch, engine_for_dump
from scenarios.dumps import ensure_dump

pytestmark = pytest.mark.skipif(
    not engine_available(), reason="engine not built: run engine/build.sh"
)


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry))
    return found


def test_a_linux_dump_s_engine_is_started_as_its_own_executable() -> None:
    launch = engine_for_dump("linux", 8)
    assert isinstance(launch, EngineLaunch)
    assert launch.command == (str(ENGINE),) and dict(launch.env) == {}


def test_the_engine_reads_a_dump_with_no_dotnet_on_path(tmp_path: Path) -> None:
    dump = ensure_dump("blocked-finalizer", "net10")
    # Nothing named dotnet can be found: an empty PATH, no DOTNET_ROOT.
    env = {k: v for k, v in os.environ.items() if k != "PATH" and "DOTNET" not in k}
    env.update(PATH=str(tmp_path), DUMPSCOPE_INDEX=str(tmp_path / "index"))
    requests = [
        {"method": "version", "params": {}},
        {"method": "open", "params": {"dump": str(dump.path), "index": False}},
        {"method": "heap_stats", "params": {}},
    ]
    engine = subprocess.Popen(
        [str(ENGINE)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    assert engine.stdin is not None and engine.stdout is not None
    answers = []
    try:
        for number, request in enumerate(requests, 1):
            line = {"jsonrpc": "2.0", "id": number, **request}
            engine.stdin.write(json.dumps(line).encode() + b"\n")
            engine.stdin.flush()
            while True:
                answer = json.loads(engine.stdout.readline())
                if answer.get("id") == number:
                    answers.append(answer)
                    break
        # The front and its worker are the engine's executable itself.
        processes = [engine.pid] + _children(engine.pid)
        executables = {os.readlink(f"/proc/{pid}/exe") for pid in processes}
    finally:
        engine.stdin.close()
        engine.wait(30)
    assert len(processes) == 2
    assert executables == {str(ENGINE.resolve())}
    version, opened, stats = (a.get("result") for a in answers)
    assert version["clrmd_version"].startswith("4.")
    assert opened["dac_path"].endswith("libmscordaccore.so")
    counts = {t["name"]: t["count"] for t in stats["types"]}
    # The scenario's own objects, as many as it planted.
    assert counts[dump.facts["buffer_type"]] == dump.facts["buffer_count"]
