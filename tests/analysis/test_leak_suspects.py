"""The leak-suspect rule on the engine's heap-graph results: it names each
planted accumulation with its root and share of the heap, and says nothing
about healthy processes or a big but ordinary working set."""

from __future__ import annotations

import pytest

from analysis.diagnosis.leak_suspects import (
    LEAK_MIN_OBJECTS,
    leak_candidates,
    leak_suspects,
)
from analysis.managed.client import EngineClient, engine_available
from analysis.managed.results import (
    ChainLink,
    HolderGroup,
    InstanceHolders,
    RootRef,
    TypeRetained,
)
from analysis.model.vocab import RootKind
from analysis.values import Address, ByteSize
from scenarios.dumps import ensure_dump

needs_engine = pytest.mark.skipif(
    not engine_available(), reason="engine not built: run engine/build.sh"
)


def findings_for(scenario: str):
    """What the rule says about a scenario dump, asked as the session would."""
    dump = ensure_dump(scenario, "net10")
    with EngineClient() as client:
        client.open(str(dump.path), use_index=False)
        summary = client.graph()
        reachable = int(summary.reachable_bytes or 0)
        types = client.retained_by_type(limit=100_000).items
        holders = [
            client.holders(int(t.method_table))
            for t in leak_candidates(types, reachable)
            if t.method_table is not None
        ]
    return dump, leak_suspects(reachable, holders)


@needs_engine
def test_the_static_event_leak_is_found_with_its_root_and_share() -> None:
    dump, found = findings_for("event-leak")
    assert len(found) == 1
    finding = found[0]
    assert finding.rule == "leak-suspect"
    assert "10,000 Subscriber objects" in finding.title
    assert "Publisher.PriceChanged" in finding.statement
    assert "EventHandler → Object[]" in finding.statement
    assert "% of the live managed heap" in finding.statement
    assert finding.evidence[0].key == dump.facts["subscriber_type"]


@needs_engine
def test_a_static_cache_a_gc_handle_and_the_runtimes_own_store_are_each_found() -> None:
    dump, found = findings_for("retention")
    facts = dump.facts
    by_type = {f.evidence[0].key: f for f in found}
    assert set(by_type) == {
        facts["cache_item_type"],
        facts["handle_item_type"],
        facts["appcontext_item_type"],
    }
    cache = by_type[facts["cache_item_type"]]
    assert f"{facts['cache_count']:,} CachedReport" in cache.title
    assert f"{facts['cache_owner_type']}.{facts['cache_field']}" in cache.statement
    assert "Dictionary<Int64, DumpScope.Scenarios.CachedReport>" not in cache.title
    handle = by_type[facts["handle_item_type"]]
    assert "strong GC handle" in handle.statement
    assert f"{facts['handle_count']:,} " in handle.statement
    store = by_type[facts["appcontext_item_type"]]
    assert "System.AppContext.s_dataStore" in store.statement
    assert "inside the runtime's own classes" in store.statement


@needs_engine
@pytest.mark.parametrize("scenario", ["healthy", "big-heap"])
def test_healthy_and_big_heaps_have_no_suspect(scenario: str) -> None:
    _, found = findings_for(scenario)
    assert found == ()


def _holders(count: int, retained: int, holder: int | None) -> InstanceHolders:
    root = RootRef(RootKind.STRONG_HANDLE, None, Address(0x10), None)
    chain = (ChainLink(Address(0x1000), "System.Collections.Generic.List<X>", 1),)
    group = HolderGroup(
        holder=Address(holder) if holder is not None else None,
        holder_type="X[]" if holder is not None else None,
        holder_retained=ByteSize(retained + 100),
        count=count,
        size=ByteSize(count * 24),
        retained=ByteSize(retained),
        roots=(root,),
        chain=chain if holder is not None else (),
    )
    return InstanceHolders(
        Address(0x77), "App.X", count, count, ByteSize(count * 24), None, 1, (group,)
    )


def test_thresholds_count_share_and_bytes() -> None:
    heap = 100 * 1024 * 1024
    big = 30 * 1024 * 1024
    assert len(leak_suspects(heap, [_holders(LEAK_MIN_OBJECTS, big, 0x2000)])) == 1
    assert leak_suspects(heap, [_holders(LEAK_MIN_OBJECTS - 1, big, 0x2000)]) == ()
    assert leak_suspects(heap, [_holders(5000, heap // 10, 0x2000)]) == ()
    # A fifth of a small heap is not worth a warning.
    assert leak_suspects(1_000_000, [_holders(5000, 500_000, 0x2000)]) == ()
    assert leak_suspects(0, [_holders(5000, big, 0x2000)]) == ()


def test_objects_held_one_root_each_are_one_finding() -> None:
    heap = 100 * 1024 * 1024
    (finding,) = leak_suspects(heap, [_holders(20_000, 40 * 1024 * 1024, None)])
    assert "20,000 X objects each held by a root of their own" == finding.title
    assert "strong GC handle" in finding.statement
    assert "40%" in finding.statement


def test_candidates_are_types_that_could_hold_a_suspect() -> None:
    def t(name: str, reachable: int, retained: int) -> TypeRetained:
        return TypeRetained(
            Address(1), name, reachable, ByteSize(0), reachable, ByteSize(retained)
        )

    heap = 100 * 1024 * 1024
    names = [
        c.name
        for c in leak_candidates(
            [
                t("many-big", 5000, heap // 2),
                t("few-big", 10, heap // 2),
                t("many-small", 5000, heap // 10),
            ],
            heap,
        )
    ]
    assert names == ["many-big"]
