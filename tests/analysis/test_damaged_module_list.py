"""A minidump whose module list is missing or damaged says so and still
finds the images in memory by their PE headers, so a .NET dump does not
read as one without a runtime for want of its module list."""

from __future__ import annotations

import struct

from analysis.dumpfile.minidump import MinidumpReader
from tests.analysis.synthetic import MinidumpBuilder

CORECLR = 0x7FFA_1000_0000
CORECLR_SIZE = 0x4C_0000
MODULE_LIST = 4


def pe_headers(name: str, size_of_image: int) -> bytes:
    """The first page of a mapped PE32+ image: DOS header, NT headers with
    SizeOfImage, and an export directory whose Name is `name`."""
    page = bytearray(0x1000)
    page[0:2] = b"MZ"
    struct.pack_into("<I", page, 0x3C, 0x80)
    page[0x80:0x84] = b"PE\0\0"
    struct.pack_into("<HHIIIHH", page, 0x84, 0x8664, 0, 0, 0, 0, 0xF0, 0x2022)
    optional = 0x98
    struct.pack_into("<H", page, optional, 0x20B)
    struct.pack_into("<I", page, optional + 56, size_of_image)
    struct.pack_into("<I", page, optional + 108, 16)
    struct.pack_into("<II", page, optional + 112, 0x200, 0x40)  # export directory
    struct.pack_into("<I", page, 0x200 + 0xC, 0x300)  # its Name
    page[0x300 : 0x300 + len(name) + 1] = name.encode() + b"\0"
    return bytes(page)


def dump_with_coreclr(tmp_path, damage) -> MinidumpReader:
    b = MinidumpBuilder("x64")
    b.add_module("coreclr.dll", CORECLR, CORECLR_SIZE)
    b.add_memory(CORECLR, pe_headers("coreclr.dll", CORECLR_SIZE))
    data = bytearray(b.build())
    count, directory = struct.unpack_from("<II", data, 8)
    for i in range(count):
        at = directory + 12 * i
        if struct.unpack_from("<I", data, at)[0] == MODULE_LIST:
            damage(data, at)
    path = tmp_path / "damaged.dmp"
    path.write_bytes(bytes(data))
    return MinidumpReader(str(path))


def test_undamaged_dump_lists_coreclr_from_its_module_list(tmp_path):
    with dump_with_coreclr(tmp_path, lambda data, at: None) as reader:
        assert [(m.name, int(m.base)) for m in reader.modules()] == [
            ("coreclr.dll", CORECLR)
        ]
        assert reader.problems == []


def test_a_missing_module_list_is_said_and_coreclr_found_by_its_headers(tmp_path):
    def retype(data: bytearray, at: int) -> None:
        struct.pack_into("<I", data, at, 0xFFFF)

    with dump_with_coreclr(tmp_path, retype) as reader:
        (module,) = reader.modules()
        problems = reader.problems
    assert (module.name, int(module.base), int(module.size)) == (
        "coreclr.dll",
        CORECLR,
        CORECLR_SIZE,
    )
    assert any(
        p.startswith("no MODULE_LIST stream") and f"coreclr.dll at 0x{CORECLR:x}" in p
        for p in problems
    ), problems


def test_a_zeroed_module_list_is_said_and_coreclr_found_by_its_headers(tmp_path):
    def zero_records(data: bytearray, at: int) -> None:
        size, rva = struct.unpack_from("<II", data, at + 4)
        data[rva : rva + size] = bytes(size)
        struct.pack_into("<I", data, rva, 7)  # seven modules, all zeros

    with dump_with_coreclr(tmp_path, zero_records) as reader:
        names = {m.name for m in reader.modules()}
        problems = reader.problems
    assert "coreclr.dll" in names
    assert any("the module list is damaged" in p for p in problems), problems
