"""The heap graph in the window: retained sizes beside the type statistics,
and the dominator tree from the object that keeps the most alive down to
what it holds, each object one Enter away from the inspector."""

from __future__ import annotations

import pytest
from qtpy import QtCore

from analysis.analyses import ANALYSES, HEAP_GRAPH
from analysis.managed.results import DominatorItem, DominatorPage
from analysis.values import Address, ByteSize
from scenarios.dumps import ensure_dump
from views.dominators_view import ADDRESS_ROLE, RETAINED_ROLE, DominatorsView


@pytest.fixture(autouse=True)
def own_index(tmp_path, monkeypatch):
    """A graph index of this test's own: built here, not loaded from a run
    before."""
    monkeypatch.setenv("DUMPSCOPE_INDEX", str(tmp_path / "index"))


def test_the_event_leak_from_the_top_of_the_dominator_tree(window, qtbot):
    dump = ensure_dump("event-leak")
    facts = dump.facts
    with qtbot.waitSignal(window.sig_analysis_finished, timeout=180_000):
        window.open_dump(str(dump.path))
    graph = window.session.result(HEAP_GRAPH)

    # Managed types: the subscribers' retained size beside their count.
    types = window.types.types
    assert types.select_where(lambda t: t.name == facts["subscriber_type"])
    row = types.view.currentIndex().row()
    titles = [
        types.model.headerData(c, QtCore.Qt.Orientation.Horizontal)
        for c in range(types.model.columnCount())
    ]
    retained = types.text_at(row, titles.index("Retained"))
    assert retained and retained != "unknown"

    # The tree's top: what keeps the most alive, with its share of the heap.
    tree = window.dominators.tree
    qtbot.waitUntil(lambda: tree.topLevelItemCount() > 0, timeout=60_000)
    top = tree.topLevelItem(0)
    assert float(top.text(3).rstrip(" %")) > 0
    # The sizes are on screen beside the types, however long a generic
    # type's name: Retained and the share end inside the tree's width.
    window.resize(1400, 900)
    window.show()
    window.tabs.setCurrentWidget(window.dominators)
    header = tree.header()
    qtbot.waitUntil(
        lambda: 0
        < header.sectionViewportPosition(3) + header.sectionSize(3)
        <= tree.viewport().width(),
        timeout=5_000,
    )
    assert f"{graph.reachable_objects:,} live objects" in (
        window.dominators.summary.text()
    )
    # Down the tree until the subscribers show: each level is one expand.
    item = top
    for _ in range(6):
        item.setExpanded(True)
        qtbot.waitUntil(
            lambda it=item: it.childCount() > 0 and it.child(0).text(0) != "loading…",
            timeout=60_000,
        )
        children = [item.child(i) for i in range(item.childCount())]
        if any(c.text(1) == facts["subscriber_type"] for c in children):
            break
        item = max(children, key=lambda c: c.data(0, RETAINED_ROLE) or 0.0)
    subscribers = [
        item.child(i)
        for i in range(item.childCount())
        if item.child(i).text(1) == facts["subscriber_type"]
    ]
    assert subscribers, "the subscribers sit under the event's invocation list"
    # The invocation list holds more delegates than one page: the list goes
    # on, from the engine, a page a double-click (or Enter) on its last row.
    lists = item
    while lists is not None and "smaller ones" not in lists.child(
        lists.childCount() - 1
    ).text(0):
        lists = lists.parent()
    assert lists is not None, "a level above the subscribers is paged"
    last = lists.child(lists.childCount() - 1)
    assert last.data(0, ADDRESS_ROLE) is None
    shown = lists.childCount() - 1
    window.dominators.tree.itemActivated.emit(last, 0)
    qtbot.waitUntil(lambda: lists.childCount() - 1 > shown, timeout=60_000)
    paged = [lists.child(i).data(0, ADDRESS_ROLE) for i in range(lists.childCount())]
    objects = [a for a in paged if a is not None]
    assert len(objects) == len(set(objects)) > shown

    # Enter on an object opens it in the inspector.
    address = subscribers[0].data(0, ADDRESS_ROLE)
    window.dominators._activated(subscribers[0], 0)
    qtbot.waitUntil(lambda: window.types.fields.row_count() > 0, timeout=60_000)
    assert window.tabs.currentWidget() is window.types
    assert facts["subscriber_type"] in window.types.object_label.text()

    # Why alive? A path per kind of root, and what dominates the object.
    inspector = window.types
    qtbot.waitUntil(
        lambda: "searching" not in inspector.roots_label.text(), timeout=120_000
    )
    inspector.why_alive_button.click()
    qtbot.waitUntil(
        lambda: inspector.roots_label.text().startswith("Why alive: ")
        and "searching" not in inspector.roots_label.text(),
        timeout=120_000,
    )
    qtbot.waitUntil(lambda: inspector.roots.count() > 0, timeout=60_000)
    lines = [inspector.roots.item(i).text() for i in range(inspector.roots.count())]
    # From a root through the event's invocation list to the subscriber.
    assert any(
        line.startswith("DumpScope.Scenarios.Publisher.PriceChanged → ")
        and "Object[]@0x" in line
        and line.endswith(f"Subscriber@0x{address:x}")
        for line in lines
    ), lines
    assert lines[-1].startswith("dominated by: ")


def rows(tree):
    return [
        [tree.topLevelItem(r).text(c) for c in range(tree.columnCount())]
        for r in range(tree.topLevelItemCount())
    ]


def test_a_reopened_dump_shows_the_top_of_the_tree_without_the_engine(window, qtbot):
    dump = ensure_dump("event-leak")
    tree = window.dominators.tree
    with qtbot.waitSignal(window.sig_analysis_finished, timeout=180_000):
        window.open_dump(str(dump.path))
    qtbot.waitUntil(lambda: tree.topLevelItemCount() > 0, timeout=60_000)
    first = rows(tree)

    # Opening it again closes the first session, which saves the results.
    with qtbot.waitSignal(window.sig_analysis_finished, timeout=180_000):
        window.open_dump(str(dump.path))
    session = window.session
    assert all(session.from_cache(a) for a in ANALYSES)
    qtbot.waitUntil(lambda: tree.topLevelItemCount() > 0, timeout=10_000)
    assert rows(tree) == first
    # No engine process was started for the top of the tree.
    assert session.engine_version() is None

    # What the top object keeps alive comes from the engine, started now.
    top = tree.topLevelItem(0)
    top.setExpanded(True)
    qtbot.waitUntil(
        lambda: top.childCount() > 0 and top.child(0).text(0) != "loading…",
        timeout=120_000,
    )
    assert session.engine_version() is not None


def _page(parent, first, count, total, dominated=0):
    # Each parent's objects at addresses of their own.
    base = 0x1000 if parent is None else parent << 8
    items = tuple(
        DominatorItem(
            Address(base + 0x20 * i),
            Address(0x77),
            "Orders.Line",
            ByteSize(32),
            ByteSize(10_000 - i),
            dominated,
            (),
        )
        for i in range(first, first + count)
    )
    return DominatorPage(
        None if parent is None else Address(parent),
        None,
        ByteSize(1 << 20),
        total,
        first,
        items,
    )


def _rows(parent):
    return [parent.child(i) for i in range(parent.childCount())]


def test_a_long_list_of_dominated_objects_pages_on_instead_of_ending(qtbot):
    view = DominatorsView()
    qtbot.addWidget(view)
    asked = []
    view.sig_children_wanted.connect(lambda *a: asked.append(a))
    view.set_top(_page(None, 0, 200, 450, dominated=300))
    top = view.tree.invisibleRootItem()
    more = _rows(top)[-1]
    assert more.data(0, ADDRESS_ROLE) is None
    assert more.text(0).startswith("… and 250 smaller ones")

    view.tree.itemActivated.emit(more, 0)
    assert asked == [(None, None, 200)]
    view.tree.itemActivated.emit(more, 0)  # asked once, however often clicked
    assert len(asked) == 1
    view.add_children(_page(None, 200, 200, 450))
    view.add_children(_page(None, 200, 200, 450))  # a late twin changes nothing
    rows = _rows(top)
    assert [r.data(0, ADDRESS_ROLE) for r in rows[:-1]] == [
        0x1000 + 0x20 * i for i in range(400)
    ]
    assert rows[-1].text(0).startswith("… and 50 smaller ones")

    # Under an object as at the top: its next page is its own.
    first = rows[0]
    view.tree.expandItem(first)
    assert asked[-1] == (0x1000, None, 0)
    view.add_children(_page(0x1000, 0, 200, 300))
    view.tree.itemActivated.emit(_rows(first)[-1], 0)
    assert asked[-1] == (0x1000, None, 200)
    view.add_children(_page(0x1000, 200, 100, 300))
    assert len(_rows(first)) == 300
    assert all(r.data(0, ADDRESS_ROLE) is not None for r in _rows(first))
