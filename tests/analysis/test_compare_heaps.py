"""Comparing two dumps of one scenario: the types that grew come first, with
their growth in count, size and retained size."""

from __future__ import annotations

import pytest

from analysis.managed.client import EngineClient, engine_available
from analysis.managed.compare import compare_heaps
from analysis.managed.results import TypeRetained
from analysis.values import Address, ByteSize
from scenarios.dumps import ensure_dump


def _t(name: str, count: int, size: int, retained: int | None) -> TypeRetained:
    return TypeRetained(
        Address(1),
        name,
        count,
        ByteSize(size),
        count,
        None if retained is None else ByteSize(retained),
    )


def test_growth_sorts_first_and_new_and_gone_types_count_from_zero() -> None:
    deltas = compare_heaps(
        [_t("A", 10, 100, 100), _t("Gone", 5, 50, 50), _t("Same", 1, 8, 8)],
        [_t("A", 30, 300, 900), _t("New", 2, 40, 40), _t("Same", 1, 8, 8)],
    )
    assert [d.name for d in deltas] == ["A", "New", "Same", "Gone"]
    a = deltas[0]
    assert (a.count_delta, a.size_delta, a.retained_delta) == (20, 200, 800)
    assert (deltas[1].count_before, deltas[1].count_after) == (0, 2)
    assert deltas[-1].count_delta == -5


def test_unknown_retained_sizes_stay_unknown() -> None:
    (d,) = compare_heaps([_t("A", 1, 8, None)], [_t("A", 2, 16, 16)])
    assert d.retained_before is None and d.retained_delta is None
    assert d.size_delta == 8


@pytest.mark.skipif(not engine_available(), reason="engine not built")
def test_two_dumps_of_the_big_heap_scenario_show_what_grew() -> None:
    def types(objects: int) -> tuple[TypeRetained, ...]:
        dump = ensure_dump("big-heap", "net10", objects=objects)
        with EngineClient() as client:
            client.open(str(dump.path), use_index=False)
            return client.retained_by_type(limit=100_000).items

    smaller, bigger = types(400_000), types(800_000)
    deltas = compare_heaps(smaller, bigger)
    rank = {d.name: i for i, d in enumerate(deltas)}
    for kind in ("Order", "OrderLine", "Customer", "Address"):
        name = f"DumpScope.Scenarios.Model.{kind}"
        d = deltas[rank[name]]
        assert (d.count_before, d.count_after) == (50_000, 100_000)
        assert d.size_delta == int(d.size_before)
        # The eight planted types and the two array types holding them
        # grew; nothing else did as much.
        assert rank[name] < 10
    # The static's array of arrays holds everything: it grew by the most.
    assert deltas[0].name == "System.Object[][]"
