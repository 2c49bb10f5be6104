"""One running engine process and how it is found and stopped.

Kept apart from the client (and its result types) so that the engine can
be started before the rest of the application is loaded (prestart.py).
"""

from __future__ import annotations

import collections
import json
import queue
import subprocess
import threading
from pathlib import Path
from typing import IO, Any, Optional

REPO_ROOT = Path(__file__).resolve().parents[2]
ENGINE_OUT = REPO_ROOT / "engine" / "out"
# The Linux engine: one Native AOT executable (engine/build.sh), started as
# it is; it needs no dotnet runtime.
ENGINE = ENGINE_OUT / "DumpScope.Engine"

# How long an engine told to shut down is given to exit before it is killed:
# beyond the 20 s it gives a heap-graph index still being saved (ExitSaveGrace
# in engine/src/Analysis/DumpSession.HeapGraph.cs), so that a large dump's
# index is not abandoned just because the report or the window ended first.
ENGINE_EXIT_WAIT = 25.0


class EngineProcess:
    """One running engine: a reader thread turns stdout lines into a queue
    (None marks its end) and another keeps the last lines of stderr."""

    def __init__(
        self, command: list[str], env: Optional[dict[str, str]] = None
    ) -> None:
        self.proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=str(REPO_ROOT),
            env=env,
        )
        self.messages: "queue.Queue[Optional[dict[str, Any]]]" = queue.Queue()
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=20)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        threading.Thread(
            target=self._read_stdout, args=(self.proc.stdout,), daemon=True
        ).start()
        self._stderr_reader = threading.Thread(
            target=self._read_stderr, args=(self.proc.stderr,), daemon=True
        )
        self._stderr_reader.start()

    def _read_stdout(self, stream: IO[bytes]) -> None:
        for line in stream:
            try:
                message = json.loads(line)
            except ValueError:
                self.stderr_tail.append(f"not JSON on stdout: {line[:200]!r}")
                continue
            if isinstance(message, dict):
                self.messages.put(message)
        self.messages.put(None)

    def _read_stderr(self, stream: IO[bytes]) -> None:
        for line in stream:
            self.stderr_tail.append(line.decode("utf-8", "replace").rstrip())

    def last_words(self) -> str:
        """The end of what a stopped engine wrote to stderr."""
        self._stderr_reader.join(timeout=1)
        return " | ".join(list(self.stderr_tail)[-5:])

    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message).encode("utf-8") + b"\n")
        self.proc.stdin.flush()

    def stop(self, timeout: float = ENGINE_EXIT_WAIT) -> None:
        if self.alive():
            try:
                self.send({"jsonrpc": "2.0", "id": 0, "method": "shutdown"})
                assert self.proc.stdin is not None
                self.proc.stdin.close()
                self.proc.wait(timeout)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
