"""Comparing two dumps of one scenario: the types that grew come first, with
their growth in count, size and retained size."""

from __future__ import annotations

import pytest

from analysis.managed.client import EngineClient, engine_available
from analysis.managed.compare import (
    HeapComparison,
    compare_heaps,
    compared_rows,
    mismatch,
)
from analysis.managed.results import TypeRetained, TypeStat
from analysis.model.columns import type_change_columns
from analysis.model.native import DumpInfo
from analysis.values import Address, ByteSize, NotApplicable, Unknown
from scenarios.dumps import ScenarioDump, ensure_dump, ensure_stages
from scenarios.sos import parse_dumpheap_stat, run_sos


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


def test_rows_to_show_list_vanished_types_and_leave_free_space_last() -> None:
    deltas = compare_heaps(
        [_t("A", 10, 100, 100), _t("Gone", 5, 50, 50)],
        [_t("A", 30, 300, 900), _t("New", 2, 40, 40)],
    )
    current = (
        TypeStat("Free", Address(8), 3, ByteSize(999)),
        TypeStat("New", Address(16), 2, ByteSize(40)),
        TypeStat("A", Address(24), 30, ByteSize(300)),
    )
    rows = compared_rows(current, deltas)
    assert [r.name for r in rows] == ["A", "New", "Gone", "Free"]
    gone = rows[2]
    assert (gone.method_table, gone.count, gone.size) == (None, 0, 0)

    comparison = HeapComparison("before.core", deltas, rows)
    count, size, retained = type_change_columns(lambda: comparison)
    assert [count.text(r) for r in rows[:3]] == ["+20", "+2", "-5"]
    assert size.text(rows[2]) == "-50 bytes"
    assert retained.text(rows[0]) == "+800 bytes"
    # Free space is no object: not compared, and the cell says why.
    assert isinstance(count.get(rows[3]), NotApplicable)
    assert count.gap_reason(rows[3])
    # Nothing compared: blank cells, not zeros.
    assert type_change_columns(lambda: None)[0].text(rows[0]) == ""


def test_a_retained_size_unknown_on_one_side_is_an_unknown_change() -> None:
    deltas = compare_heaps([_t("A", 1, 8, None)], [_t("A", 2, 16, 16)])
    rows = (TypeStat("A", Address(8), 2, ByteSize(16)),)
    comparison = HeapComparison("before.core", deltas, rows)
    _count, size, retained = type_change_columns(lambda: comparison)
    assert size.text(rows[0]) == "+8 bytes"
    assert isinstance(retained.get(rows[0]), Unknown)


def _info(os: str, arch: str, pointer_size: int) -> DumpInfo:
    return DumpInfo("d", "elf core", os, arch, pointer_size, ByteSize(1))


def test_dumps_of_another_os_or_architecture_are_not_compared() -> None:
    assert mismatch(_info("linux", "x64", 8), _info("linux", "x64", 8)) is None
    why = mismatch(_info("linux", "x64", 8), _info("windows", "x86", 4))
    assert why is not None
    assert "windows x86" in why and "linux x64" in why


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


def retained_types(dump: ScenarioDump) -> tuple[TypeRetained, ...]:
    # A self-contained net8 app carries its own DAC.
    dac = dump.runtime_dir / "libmscordaccore.so" if dump.runtime == "net8" else None
    with EngineClient() as client:
        client.open(
            str(dump.path), dac=None if dac is None else str(dac), use_index=False
        )
        return client.retained_by_type(limit=100_000).items


def growth_key(d) -> tuple[int, int, int]:
    return (
        d.retained_delta if d.retained_delta is not None else d.size_delta,
        d.size_delta,
        d.count_delta,
    )


@pytest.mark.skipif(not engine_available(), reason="engine not built")
@pytest.mark.parametrize("runtime", ("net10", "net8"))
def test_one_process_at_two_moments_shows_the_planted_changes(runtime: str) -> None:
    before, after = ensure_stages("growth", runtime)
    deltas = compare_heaps(retained_types(before), retained_types(after))
    by_name = {d.name: d for d in deltas}
    planted = before.facts["counts"].keys()
    # SOS's dumpheap -stat of each dump, the oracle for counts and sizes.
    sos = [
        parse_dumpheap_stat(run_sos(d.path, "dumpheap -stat")) for d in (before, after)
    ]
    for name in planted:
        d = by_name[name]
        counts = before.facts["counts"][name], after.facts["counts"][name]
        assert (d.count_before, d.count_after) == counts, name
        assert d.count_delta == counts[1] - counts[0]
        sos_counts = [s.get(name, (0, 0)) for s in sos]
        assert d.count_delta == sos_counts[1][0] - sos_counts[0][0], name
        assert d.size_delta == sos_counts[1][1] - sos_counts[0][1], name
        # Each object holds no other: what goes with them is their own size.
        assert d.retained_delta == d.size_delta, name
    grown = by_name["DumpScope.Scenarios.BasketItem"]
    assert grown.count_delta == 12_000 and grown.size_delta > 0
    shrunk = by_name["DumpScope.Scenarios.PriceQuote"]
    assert shrunk.count_delta == -4_000 and shrunk.size_delta < 0
    # A type the process no longer holds and one it did not hold yet are both
    # listed, counted from or to zero.
    gone, new = (
        by_name["DumpScope.Scenarios.Voucher"],
        by_name["DumpScope.Scenarios.Refund"],
    )
    assert (gone.count_before, gone.count_after) == (1_500, 0)
    assert (new.count_before, new.count_after) == (0, 700)

    # Largest growth first: the list of basket items (its array holds all
    # 12,000 new ones), then the items; shrinking and vanished types last.
    assert [growth_key(d) for d in deltas] == sorted(
        (growth_key(d) for d in deltas), reverse=True
    )
    rank = {d.name: i for i, d in enumerate(deltas)}
    assert deltas[0].name == "DumpScope.Scenarios.BasketItem[]"
    assert (
        rank["DumpScope.Scenarios.BasketItem"]
        < rank["DumpScope.Scenarios.Basket"]
        < rank["DumpScope.Scenarios.Refund"]
        < rank["DumpScope.Scenarios.Voucher"]
        < rank["DumpScope.Scenarios.PriceQuote"]
    )
    assert rank["DumpScope.Scenarios.PriceQuote"] >= len(deltas) - 3
