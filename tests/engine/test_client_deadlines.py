"""The client's per-call deadline against a stand-in engine that stalls
(tests/engine/programs/stalling_engine): a silent engine is stopped and
reported, progress keeps a long call alive, and a call that lost its engine
is asked again once on a fresh one."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from analysis.managed.client import (
    EngineClient,
    EngineError,
    ErrorCode,
    retry_once_if_engine_lost,
)

STALLING_ENGINE = Path(__file__).parent / "programs" / "stalling_engine" / "engine.py"


def stalling_client(timeout: float) -> EngineClient:
    return EngineClient(
        [sys.executable, str(STALLING_ENGINE)],
        call_timeouts={"heap_stats": timeout},
    )


def test_a_silent_engine_is_stopped_at_the_deadline_and_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STALL_MODE", "silent")
    with stalling_client(1.0) as client:
        client.open("/tmp/any.core")
        process = client._process
        assert process is not None
        started = time.monotonic()
        with pytest.raises(EngineError) as e:
            client.heap_stats()
        assert 1.0 <= time.monotonic() - started < 10.0
        assert e.value.code == ErrorCode.ENGINE_STALLED
        assert e.value.engine_lost
        assert "heap_stats" in e.value.message and "1 s" in e.value.message
        assert process.proc.poll() is not None  # the stalled engine is gone


def test_progress_extends_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STALL_MODE", "progress")
    monkeypatch.setenv("STALL_STEP", "0.3")
    monkeypatch.setenv("STALL_FOR", "3")
    seen: list[int] = []
    with stalling_client(1.5) as client:
        client.open("/tmp/any.core")
        stats = client.heap_stats(
            progress=lambda done, total, message: seen.append(done)
        )
    assert stats.total_objects == 7
    assert len(seen) >= 5


def test_a_stalled_call_asked_again_once_gets_its_answer_from_a_fresh_engine(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("STALL_MODE", "once")
    monkeypatch.setenv("STALL_MARK", str(tmp_path / "stalled-once"))
    with stalling_client(1.0) as client:
        client.open("/tmp/any.core")
        first = client._process
        stats = retry_once_if_engine_lost(client.heap_stats)
        assert stats.total_objects == 7
        assert client._process is not first


def test_a_second_loss_is_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STALL_MODE", "silent")
    with stalling_client(0.5) as client:
        client.open("/tmp/any.core")
        with pytest.raises(EngineError) as e:
            retry_once_if_engine_lost(client.heap_stats)
        assert e.value.code == ErrorCode.ENGINE_STALLED


def test_other_errors_are_not_retried() -> None:
    calls = []

    def refused() -> None:
        calls.append(1)
        raise EngineError("no such object", ErrorCode.NOT_FOUND)

    with pytest.raises(EngineError):
        retry_once_if_engine_lost(refused)
    assert len(calls) == 1


def test_an_engine_crash_is_named_as_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STALL_MODE", "crash")
    with stalling_client(10.0) as client:
        client.open("/tmp/any.core")
        with pytest.raises(EngineError) as e:
            client.heap_stats()
    assert e.value.code == ErrorCode.ENGINE_DIED and e.value.engine_lost
    assert "crashed (SIGSEGV" in e.value.message
