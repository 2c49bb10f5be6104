"""An engine answering from a loaded index (the file mapped read-only) while
another engine evicts that file to keep the folder under its cap: eviction
unlinks, never truncates, so the first engine's mapping stays whole (a
truncated mapped file is a SIGBUS on the next page read) and it keeps
answering the same."""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis.managed.client import EngineClient, engine_available
from scenarios.dumps import ensure_dump

pytestmark = pytest.mark.skipif(
    not engine_available(), reason="engine not built: run engine/build.sh"
)


def _save(dump_path: str) -> None:
    with EngineClient() as client:
        client.open(dump_path)
        client.graph()
    # The engine's exit waits for the save.


def test_an_index_evicted_by_another_engine_still_answers_where_it_is_mapped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept = ensure_dump("retention", "net10")
    other = ensure_dump("event-leak", "net10")
    monkeypatch.setenv("DUMPSCOPE_INDEX", str(tmp_path))
    _save(str(kept.path))
    (kept_file,) = tmp_path.glob("*.graph")
    _save(str(other.path))
    sizes = [p.stat().st_size for p in tmp_path.glob("*.graph")]
    assert len(sizes) == 2
    for p in tmp_path.glob("*.graph"):
        if p != kept_file:
            p.unlink()

    with EngineClient() as client:
        client.open(str(kept.path))
        assert client.graph().from_index is True
        before = _questions(client)
        # Another engine, whose cap holds one file: saving its graph evicts
        # the least recently used one, the file this engine has mapped.
        monkeypatch.setenv("DUMPSCOPE_INDEX_MAX_BYTES", str(max(sizes)))
        _save(str(other.path))
        assert not kept_file.exists()
        after = _questions(client)
    assert after == before


def _questions(client: EngineClient) -> tuple[object, ...]:
    """Answers read from every part of the graph: the dominator tree's top
    and the rows below it, the retained sizes by type, the why-alive paths."""
    top = client.dominators(limit=5)
    assert top.items
    below = tuple(client.dominators(address=item.address) for item in top.items)
    why = tuple(client.why_alive(item.address) for item in top.items)
    return top, below, why, client.retained_by_type(limit=500)
