"""The engine answers `graph` as soon as the graph is built and saves the
index in the background: an engine told to exit right after leaves a whole
index or none, never a partial file, and the next open answers the same."""

from __future__ import annotations

import pytest

from analysis.managed.client import EngineClient, engine_available
from scenarios.dumps import ensure_dump

pytestmark = pytest.mark.skipif(
    not engine_available(), reason="engine not built: run engine/build.sh"
)


def _answers(dump, use_index: bool = True, close_at_once: bool = False):
    with EngineClient() as client:
        client.open(str(dump.path), use_index=use_index)
        summary = client.graph()
        if close_at_once:
            return summary, None, None
        top = client.dominators(limit=20)
        types = client.retained_by_type(limit=50)
    return summary, top, types


def test_an_engine_closed_during_the_save_leaves_a_whole_index_or_none(
    tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("DUMPSCOPE_INDEX", str(tmp_path))
    dump = ensure_dump("retention", "net10")
    built, _, _ = _answers(dump, close_at_once=True)
    assert built.from_index is False
    # The engine has exited: whatever it left is whole.
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".graph")] == []

    _, top, types = _answers(dump, use_index=False)
    again, top_again, types_again = _answers(dump)
    saved = list(tmp_path.glob("*.graph"))
    assert again.from_index is bool(saved)
    assert (top_again, types_again) == (top, types)
    assert again.objects == built.objects
    assert again.reachable_bytes == built.reachable_bytes
