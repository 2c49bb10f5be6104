"""The heap graph through the client, against facts planted in scenario dumps:
who retains what, why an object is alive, and where instances pile up."""

from __future__ import annotations

import threading

import pytest

from analysis.managed.client import (
    EngineClient,
    EngineError,
    ErrorCode,
    engine_available,
)
from analysis.managed.results import GraphSummary, TypeRetained
from scenarios.dumps import ensure_dump

pytestmark = pytest.mark.skipif(
    not engine_available(), reason="engine not built: run engine/build.sh"
)


@pytest.fixture(scope="module")
def event_leak():
    dump = ensure_dump("event-leak", "net10")
    with EngineClient() as client:
        client.open(str(dump.path), use_index=False)
        yield client, dump


def _type(client: EngineClient, name: str) -> TypeRetained:
    page = client.retained_by_type(limit=100_000)
    return next(t for t in page.items if t.name == name)


def test_the_graph_counts_the_live_heap(event_leak) -> None:
    client, _ = event_leak
    summary = client.graph()
    assert isinstance(summary, GraphSummary)
    assert summary.reachable_objects is not None and summary.objects is not None
    assert 10_000 < summary.reachable_objects <= summary.objects
    kinds = [r.kind for r in summary.roots_by_kind]
    assert {"static", "stack", "strong_handle"} <= set(kinds)
    # One line per kind, as the Dominators tab lists them, adding up to all roots.
    assert len(kinds) == len(set(kinds))
    assert sum(r.count or 0 for r in summary.roots_by_kind) == summary.root_count


def test_the_static_events_delegate_retains_the_subscribers(event_leak) -> None:
    client, dump = event_leak
    facts = dump.facts
    top = client.dominators(limit=5)
    first = top.items[0]
    # The event's multicast delegate is the biggest retainer, held by the static.
    assert first.type == facts["handler_type"]
    assert first.roots[0].kind == "static"
    assert first.roots[0].name == f"{facts['event_owner_type']}.{facts['event_name']}"
    subscriber = _type(client, facts["subscriber_type"])
    assert subscriber.count == facts["subscriber_count"]
    assert first.retained is not None and subscriber.retained is not None
    assert (
        first.retained
        >= subscriber.retained
        >= 10_000 * (facts["subscriber_history_bytes"] + 16)
    )
    # Below it: the invocation list, then one delegate per subscriber.
    invocation = client.dominators(first.address, limit=1).items[0]
    assert invocation.type == "System.Object[]"
    delegates = client.dominators(invocation.address, limit=3)
    assert delegates.total == facts["handler_count"]
    assert {d.type for d in delegates.items} == {facts["handler_type"]}


def test_why_alive_names_the_static_event(event_leak) -> None:
    client, dump = event_leak
    subscriber = _type(client, dump.facts["subscriber_type"])
    holders = client.holders(subscriber.method_table)
    group = holders.groups[0]
    delegate = client.dominators(group.holder, limit=1).items[0]
    one = client.dominators(delegate.address, type_filter="Subscriber").items[0]
    why = client.why_alive(one.address)
    assert why.reachable is True
    static = next(p for p in why.by_root_kind if p.root and p.root.kind == "static")
    assert static.root is not None and static.root.name is not None
    assert static.root.name.endswith("Publisher.PriceChanged")
    assert [link.type for link in static.chain][-1] == dump.facts["subscriber_type"]
    assert [link.type for link in why.dominator_chain] == [
        "System.EventHandler",
        "System.Object[]",
        "System.EventHandler",
        dump.facts["subscriber_type"],
    ]


def test_bad_parameters_and_unknown_objects_are_errors(event_leak) -> None:
    client, _ = event_leak
    with pytest.raises(EngineError) as e:
        client.dominators(limit=1_000_000)
    assert e.value.code == ErrorCode.INVALID_PARAMS
    with pytest.raises(EngineError) as e:
        client._call("dominators", {"offset": "many"})
    assert e.value.code == ErrorCode.INVALID_PARAMS
    with pytest.raises(EngineError) as e:
        client.why_alive(0x10)
    assert e.value.code == ErrorCode.NOT_FOUND


def test_a_cancelled_build_stops_and_the_next_call_builds_again() -> None:
    # Without the index: a saved graph would load at once, with nothing to cancel.
    dump = ensure_dump("retention", "net10")
    with EngineClient() as client:
        client.open(str(dump.path), use_index=False)
        cancel = threading.Event()
        seen: list[tuple[int, int]] = []

        def progress(done: int, total: int, message: str) -> None:
            seen.append((done, total))
            cancel.set()

        with pytest.raises(EngineError) as e:
            client.graph(progress=progress, cancel=cancel)
        assert e.value.code == ErrorCode.CANCELLED
        assert seen
        summary = client.graph()
        assert summary.reachable_objects and summary.reachable_objects > 75_000


def test_reopening_loads_the_index_with_the_same_answers(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DUMPSCOPE_INDEX", str(tmp_path))
    dump = ensure_dump("retention", "net10")

    def answers(use_index: bool = True):
        with EngineClient() as client:
            client.open(str(dump.path), use_index=use_index)
            summary = client.graph()
            top = client.dominators(limit=20)
            types = client.retained_by_type(limit=50)
        return summary, top, types

    built, top, types = answers()
    assert built.from_index is False
    assert [p.name for p in tmp_path.iterdir()] != []
    assert not list(dump.path.parent.glob("*.graph"))
    loaded, top_again, types_again = answers()
    assert loaded.from_index is True
    assert (top_again, types_again) == (top, types)
    assert dataclass_fields(loaded, "from_index") == dataclass_fields(
        built, "from_index"
    )

    for saved in tmp_path.iterdir():
        saved.unlink()
    unindexed, _, _ = answers(use_index=False)
    assert unindexed.from_index is False
    assert list(tmp_path.iterdir()) == []


def dataclass_fields(value: GraphSummary, *leave_out: str) -> dict:
    return {k: v for k, v in vars(value).items() if k not in leave_out}
