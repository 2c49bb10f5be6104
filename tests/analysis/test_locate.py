"""Go to address and Find everywhere, on results built by hand."""

from analysis.dumpfile.base import Module
from analysis.locate import find, locate_native, parse_address
from analysis.model.vocab import RowKind
from analysis.values import Address, ByteSize
from tests.builders import (
    finalizer_queue,
    heap_stats,
    large_blocks,
    nt_heap,
    thread_view,
    type_count,
)

BLOCKS = large_blocks(3, 2 * 2**20, first=0x3000_0000)
HEAPS = (nt_heap(0x50_0000, BLOCKS),)
MODULES = (
    Module("app.exe", r"C:\app\app.exe", Address(0x40_0000), ByteSize(0x2_0000)),
    Module(
        "ntdll.dll", r"C:\Windows\ntdll.dll", Address(0x7FF8_0000), ByteSize(0x1000)
    ),
)


def test_addresses_read_as_debuggers_write_them():
    assert parse_address("0x7ff6`12340000") == 0x7FF6_1234_0000
    assert parse_address(" 7ff612340000 ") == 0x7FF6_1234_0000
    assert parse_address("0X10") == 0x10
    assert parse_address("LockHolder") is None
    assert parse_address("0x") is None
    assert parse_address("1" * 17) is None  # longer than any 64-bit address


def test_a_native_address_names_the_most_specific_row_that_holds_it():
    inside = int(BLOCKS[1].address) + 0x123
    hit = locate_native(inside, HEAPS, None, MODULES)
    assert (hit.row, hit.key) == (RowKind.LARGE_BLOCK, int(BLOCKS[1].address))
    assert hit.text.startswith(f"0x{inside:x} is in native large block ")
    segment = locate_native(0x50_0010, HEAPS, None, MODULES)
    assert (segment.row, segment.key) == (RowKind.NATIVE_HEAP, 0x50_0000)
    module = locate_native(0x40_1000, HEAPS, None, MODULES)
    assert (module.row, module.key) == (RowKind.MODULE, "app.exe")
    assert module.text == "0x401000 is in module app.exe (+0x1000)"
    # One past the end of a module is not in it.
    assert locate_native(0x42_0000, HEAPS, None, MODULES) is None


def test_find_matches_types_threads_by_name_or_id_and_modules():
    heap = heap_stats([("System.Drawing.Bitmap", 627, 30096), ("System.String", 3, 90)])
    queue = finalizer_queue((type_count("System.Drawing.Bitmap", 600, 28800),))
    threads = (thread_view(4660, name="LockHolder"), thread_view(77))
    hits = find("bitmap", heap, queue, threads, MODULES)
    assert [(h.row, h.key) for h in hits] == [
        (RowKind.HEAP_TYPE, "System.Drawing.Bitmap"),
        (RowKind.READY_TYPE, "System.Drawing.Bitmap"),
    ]
    assert [h.key for h in find("4660", heap, queue, threads)] == [4660]
    assert [h.key for h in find("0x1234", heap, queue, threads)] == [4660]
    assert [h.text for h in find("lockholder", threads=threads)] == [
        "Thread 4660 (0x1234) 'LockHolder'"
    ]
    assert [h.key for h in find("windows", modules=MODULES)] == ["ntdll.dll"]
    assert find("   ", heap, queue, threads, MODULES) == []
