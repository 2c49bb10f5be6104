"""Notes which thread asks the engine for the heap walk (`heap_stats`), and
can hold the walk back until a test lets it go: the early thread's run is
then known to be under way when the test asks for it too."""

from __future__ import annotations

import threading
import time
from typing import Callable

import pytest

from analysis.managed.client import EngineClient


class HeapWalks:
    """With `hold`, each walk waits for `release` before it goes to the
    (real) engine; `entered` is set as the first one is asked for."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, hold: bool = False) -> None:
        self.threads: list[str] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        if not hold:
            self.release.set()
        real = EngineClient.heap_stats

        def walk(client: EngineClient, *args, **kwargs):
            self.threads.append(threading.current_thread().name)
            self.entered.set()
            self.release.wait(60)
            return real(client, *args, **kwargs)

        monkeypatch.setattr(EngineClient, "heap_stats", walk)


EARLY_THREAD = "engine-early"


def early_thread_ended() -> bool:
    """No session's early thread runs any more."""
    return not any(t.name == EARLY_THREAD for t in threading.enumerate())


def wait_for(predicate: Callable[[], bool], seconds: float = 120.0) -> bool:
    """Whether predicate came true within seconds (polled every 50 ms)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False
