"""A damaged GC heap makes the per-type sums lower bounds and retained
sizes approximate: "Native owned" says "≥ 80.16 MB" and "Retained" "≈ …",
the damage named in the tooltip, in the Managed types and Finalizer
tables, their CSV, and the text report. (A lost reference can move an
object into another holder's retained size as well as out of all of them,
so a retained size is no lower bound.) The damage: one zeroed page among
the SmallResource objects of a copy of the blocked-finalizer core."""

from __future__ import annotations

import csv
import io
import re

import pytest
from qtpy.QtCore import Qt

from analysis.analyses import HEAP_STATS, NATIVE_OWNERS
from analysis.managed.client import EngineClient
from analysis.report import render_text
from analysis.session import DumpSession
from analysis.values import human_size
from scenarios.dumps import ensure_dump
from tests.app.test_registry import open_and_wait
from tests.engine.test_dump_damage import damaged_copy

PAGE = 0x1000


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    """The damaged copy, the zeroed page, and the bytes the 40 buffers own."""
    dump = ensure_dump("blocked-finalizer", "net10")
    facts = dump.facts
    with EngineClient() as engine:
        engine.open(str(dump.path), dac_folder=str(dump.runtime_dir))
        small = next(
            t
            for t in engine.heap_stats().types
            if t.name == facts["small_resource_type"]
        )
        objects = engine.instances(
            int(small.method_table), offset=0, limit=5000, sort="address"
        )
    # A page in the middle of the 5,000 SmallResource objects: far from the
    # UnmanagedBuffer objects, which still own their blocks.
    page = int(objects.items[2500].address) & ~(PAGE - 1)
    copy = damaged_copy(dump, tmp_path_factory.mktemp("damaged"), page, bytes(PAGE))
    with DumpSession(copy) as session:
        stats = session.result(HEAP_STATS)
        owned = next(
            t.bytes
            for t in session.result(NATIVE_OWNERS).by_type
            if t.type == facts["buffer_type"]
        )
        text = render_text(session)
    assert stats.corrupt_range_count == 1
    assert int(owned) == 40 * (facts["buffer_size"] + PAGE)
    return copy, page, int(owned), text


def column(table, title):
    titles = [c.title for c in table.model.columns()]
    return titles.index(title)


def test_the_text_report_shows_lower_bounds(damaged):
    _, page, owned, text = damaged
    buffer_line = next(
        line
        for line in text.splitlines()
        if line.rstrip().endswith("DumpScope.Scenarios.UnmanagedBuffer")
        and "Native owned" not in line
        and "≥" in line
    )
    assert f"≥ {human_size(owned)}" in buffer_line
    header = next(line for line in text.splitlines() if "Retained" in line)
    rows = text.splitlines()[text.splitlines().index(header) + 1 :][:25]
    # Every retained size in the types table is approximate.
    start = header.index("Bytes") + len("Bytes")
    end = header.index("Retained") + len("Retained")
    cells = [row[start:end].strip() for row in rows if row[start:end].strip()]
    assert cells and all(c.startswith("≈ ") for c in cells)


def test_the_tables_and_their_csv_show_lower_bounds_with_the_damage(
    window, qtbot, damaged
):
    copy, page, owned, _ = damaged
    open_and_wait(window, qtbot, str(copy))
    qtbot.waitUntil(lambda: window.types.types.row_count() > 0)
    tables = {
        "Managed types": (window.types.types, ("Native owned", "Retained")),
        "Finalizer (ready)": (window.finalizer.ready, ("Native owned",)),
    }
    marks = {"Native owned": ("≥ ", "lower bounds"), "Retained": ("≈ ", "approximate")}
    for name, (table, titles) in tables.items():
        assert table.select_where(
            lambda t: t.name == "DumpScope.Scenarios.UnmanagedBuffer"
        )
        row = table.view.currentIndex().row()
        for title in titles:
            at = column(table, title)
            text = table.text_at(row, at)
            mark, said = marks[title]
            assert text.startswith(mark), (name, title, text)
            tooltip = table.proxy.data(
                table.proxy.index(row, at), Qt.ItemDataRole.ToolTipRole
            )
            # The tooltip names the damage: where (in the zeroed page), and
            # what it does to the sums.
            assert "damaged" in tooltip and said in tooltip, tooltip
            where = int(re.search(r"the first at 0x([0-9a-f]+)", tooltip)[1], 16)
            assert page <= where < page + PAGE, tooltip
        assert table.text_at(row, column(table, "Native owned")) == (
            f"≥ {human_size(owned)}"
        )
        # CSV says the same as the table.
        exported = list(csv.reader(io.StringIO(table.csv_text())))
        header, lines = exported[0], exported[1:]
        (line,) = [
            x
            for x in lines
            if x[header.index("Class Name")].endswith("UnmanagedBuffer")
        ]
        assert line[header.index("Native owned")] == f"≥ {human_size(owned)}"


def test_an_undamaged_heap_shows_plain_sums(window, qtbot):
    dump = ensure_dump("blocked-finalizer", "net10")
    open_and_wait(window, qtbot, str(dump.path))
    table = window.types.types
    owned, retained = column(table, "Native owned"), column(table, "Retained")
    cells = [
        table.text_at(row, at)
        for row in range(table.row_count())
        for at in (owned, retained)
    ]
    assert any(re.match(r"\d", c) for c in cells)
    assert not any("≥" in c or "≈" in c for c in cells)
