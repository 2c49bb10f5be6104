"""The Modules tab's image checks: each module's state against its file,
the damaged one findable from the diagnosis's evidence link, and nothing
left after a reset."""

from __future__ import annotations

from analysis.model.images import (
    DamagedPages,
    ImageCheck,
    ImageChecks,
    ImageKind,
    ImageState,
)
from analysis.model.vocab import RowKind
from analysis.native.image_check import AFFECTS, UNDETECTABLE
from analysis.values import Address, ByteSize
from views.modules_view import ModulesView

CORELIB = "System.Private.CoreLib.dll"


def checks() -> ImageChecks:
    damaged = ImageCheck(
        CORELIB,
        f"/dotnet/{CORELIB}",
        Address(0x7F45B9660000),
        ImageState.DAMAGED,
        f"/dotnet/{CORELIB}",
        ByteSize(0x340000),
        (DamagedPages(Address(0x7F45B9EEE000), ByteSize(0x1000), ".text", 2400),),
        AFFECTS[ImageKind.MANAGED],
        kind=ImageKind.MANAGED,
    )
    missing = ImageCheck(
        "ntdll.dll",
        "C:\\windows\\system32\\ntdll.dll",
        Address(0x170000000),
        ImageState.NOT_CHECKED,
        "",
        ByteSize(0),
        (),
        "",
        "its file is not at hand (no file at the path the dump names)",
    )
    return ImageChecks((missing, damaged), UNDETECTABLE)


def test_the_damaged_module_is_shown_with_its_first_page_and_selectable(qtbot):
    view = ModulesView()
    qtbot.addWidget(view)
    view.set_images(checks())
    table = view.images
    assert table.row_count() == 2
    texts = {table.text_at(r, 0): r for r in range(table.row_count())}
    row = texts[CORELIB]
    cells = [table.text_at(row, c) for c in range(8)]
    assert cells[2] == "damaged"
    assert "0x7f45b9eee000" in cells
    assert ".text" in cells
    assert "stack walks" in table.text_at(row, 7)
    missing = texts["ntdll.dll"]
    assert "not at hand" in table.text_at(missing, 7)
    assert "Writable pages" in view.undetectable.text()
    assert view.select(RowKind.MODULE, (CORELIB,))
    view.reset()
    assert view.images.row_count() == 0
    assert view.undetectable.text() == ""
