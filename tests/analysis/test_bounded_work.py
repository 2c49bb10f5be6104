"""Work is bounded by the bytes a dump holds, not by what its headers claim:
a damaged size field (one PT_LOAD claiming a terabyte) or a hostile count
(a hundred thousand threads over as many regions) must cost seconds, and
what is found must not change."""

from __future__ import annotations

import shutil
import struct

import pytest

from analysis.dumpfile import open_dump
from analysis.dumpfile.base import Module, ThreadInfo
from analysis.native.address_summary import summarize
from analysis.native.glibc_heap import walk_glibc_heaps
from analysis.native.heaps import LargeBlock, find_native_heaps
from analysis.native.stacks import walk_stack
from analysis.native.symbols import Symbolizer
from analysis.values import Address
from scenarios.dumps import ensure_dump
from tests.analysis.corrupt import PT_LOAD, memsz_field, program_headers, time_bound
from tests.analysis.synthetic import FakeLinuxProcess

TIB = 1 << 40


def mmapped(heaps) -> list[LargeBlock]:
    return [b for h in heaps if h.kind == "glibc-mmap" for b in h.large_blocks]


@pytest.fixture(scope="module")
def core_claiming_a_terabyte(tmp_path_factory):
    """The healthy scenario's core, copied, with the p_memsz of its highest
    writable user-space PT_LOAD set to 1 TiB."""
    source = ensure_dump("healthy").path
    damaged = tmp_path_factory.mktemp("tib") / "tib.core"
    shutil.copyfile(source, damaged)
    data = damaged.read_bytes()
    target = max(
        (
            ph
            for ph in program_headers(data)
            if ph.type == PT_LOAD and ph.flags & 2 and ph.vaddr + TIB < 1 << 47
        ),
        key=lambda ph: ph.vaddr,
    )
    with open(damaged, "r+b") as f:
        f.seek(memsz_field(target))
        f.write(struct.pack("<Q", TIB))
    return source, damaged, target


def test_a_pt_load_claiming_a_terabyte_is_scanned_in_seconds(
    core_claiming_a_terabyte,
):
    source, damaged, target = core_claiming_a_terabyte
    with open_dump(str(source)) as reader:
        expected = mmapped(find_native_heaps(reader))
    with open_dump(str(damaged)) as reader:
        claimed = sum(
            int(r.size)
            for r in reader.regions()
            if target.vaddr <= int(r.base) < target.vaddr + TIB
        )
        assert claimed == TIB, "the damage reaches the regions"
        with time_bound(20):
            heaps = find_native_heaps(reader)
            summary = summarize(reader, heaps)
    assert mmapped(heaps) == expected
    assert int(summary.busy) > TIB // 2


def test_a_region_claiming_a_terabyte_scans_only_its_held_page():
    block = struct.pack("<QQ", 0, (256 << 10) | 0x2)
    process = FakeLinuxProcess()
    process.add(0x7F0000000000, block)
    # The region claims a terabyte; the dump holds its first page and one
    # page far inside it.
    process.regions_[0] = process.regions_[0].__class__(
        **{**process.regions_[0].__dict__, "size": TIB}
    )
    process.memory[0x7F0000000000 + (TIB // 2)] = block + bytes(0x1000 - 16)
    with time_bound(10):
        heaps = walk_glibc_heaps(process)
    assert [(int(b.address), int(b.size)) for b in mmapped(heaps)] == [
        (0x7F0000000000, 256 << 10),
        (0x7F0000000000 + TIB // 2, 256 << 10),
    ]


def many_threads_over_many_regions(n: int) -> FakeLinuxProcess:
    process = FakeLinuxProcess()
    for i in range(n):
        base = 0x10000000 + i * 0x2000
        process.add(base, bytes(16))
        process.threads_.append(
            ThreadInfo(
                os_id=i + 1,
                teb=None,
                stack_base=None,
                stack_limit=None,
                stack_pointer=Address(base + 0xFF0),
                instruction_pointer=None,
            )
        )
    return process


def test_address_summary_of_many_threads_over_many_regions_is_not_quadratic():
    n = 20_000
    process = many_threads_over_many_regions(n)
    with time_bound(20):
        summary = summarize(process)
    stack = next(row for row in summary.usage if row.usage == "Stack")
    assert stack.regions == n and int(stack.bytes) == n * 0x1000


def test_stack_bounds_of_many_threads_are_looked_up_not_searched():
    n = 8_000
    process = many_threads_over_many_regions(n)
    process.modules_.append(
        Module("a.so", "/a.so", Address(0x10000000), n * 0x2000)  # type: ignore[arg-type]
    )
    symbolizer = Symbolizer(process)
    with time_bound(10):
        walks = [walk_stack(process, t, symbolizer) for t in process.threads_]
    assert all(
        not any("no stack range" in p for p in w.problems) for w in walks
    ), "each stack pointer's region bounds its stack"
