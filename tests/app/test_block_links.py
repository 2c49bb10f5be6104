"""A link naming large blocks of several native heaps selects every one of
them: the heaps holding them are selected together and their blocks listed
as one."""

from __future__ import annotations

from analysis.model.vocab import RowKind
from tests.analysis.test_nt_heap import BLOCK_COMMIT, process
from tests.app.test_registry import open_and_wait

SECOND_HEAP = 0x0000_01F4_0000_0000
SECOND_BLOCKS = 0x0000_01F5_0000_0000


def two_heaps(tmp_path):
    """The test process's heap with 24 large blocks, and a second heap with 6."""
    b = process("x64", "win10")
    b.add_nt_heap(
        SECOND_HEAP,
        layout="win10",
        large_blocks=[(SECOND_BLOCKS + i * 0x30_0000, BLOCK_COMMIT) for i in range(6)],
    )
    return b.write(tmp_path / "two-heaps.dmp")


def test_a_link_to_blocks_of_two_heaps_selects_all_of_them(window, qtbot, tmp_path):
    open_and_wait(window, qtbot, str(two_heaps(tmp_path)))
    view = window.native_heaps
    heaps = [view.heaps.record_at(r) for r in range(view.heaps.row_count())]
    first, second = sorted(
        (h for h in heaps if h.large_blocks), key=lambda h: int(h.address)
    )
    assert int(second.address) == SECOND_HEAP and len(second.large_blocks) == 6
    named = [int(b.address) for b in first.large_blocks[:3]] + [
        int(b.address) for b in second.large_blocks[-2:]
    ]

    window.show_evidence(RowKind.LARGE_BLOCK, tuple(named))

    assert window.tabs.currentWidget() is view
    assert {int(h.address) for h in view.heaps.selected_records()} == {
        int(first.address),
        SECOND_HEAP,
    }
    # Both heaps' blocks in one list, the five named ones selected.
    assert view.blocks.row_count() == 24 + 6
    selected = view.blocks.selected_records()
    assert sorted(int(b.address) for b in selected) == sorted(named)
    titles = [c.title for c in view.blocks.model.columns()]
    heap_column = titles.index("Heap")
    rows = view.blocks.selected_rows()
    assert sorted(view.blocks.text_at(r, heap_column) for r in rows) == sorted(
        [f"0x{int(first.address):x}"] * 3 + [f"0x{SECOND_HEAP:x}"] * 2
    )
    assert "30 large blocks" in view.blocks_label.text()
    assert "the 2 selected heaps" in view.blocks_label.text()

    # A link to blocks of one heap shows that heap alone again.
    window.show_evidence(RowKind.LARGE_BLOCK, (int(second.large_blocks[0].address),))
    assert [int(h.address) for h in view.heaps.selected_records()] == [SECOND_HEAP]
    assert view.blocks.row_count() == 6
    assert len(view.blocks.selected_records()) == 1
