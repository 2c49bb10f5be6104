"""The first numbers on the Diagnosis tab say what could not be read."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Optional

from analysis.analyses import NATIVE_HEAPS, THREADS
from analysis.key_facts import key_facts
from analysis.model.native import DumpInfo, NativeHeap
from analysis.model.outcome import Done
from analysis.values import ByteSize, Unknown
from tests.builders import large_blocks, nt_heap, thread_view, unread_heap

WHY = "no _HEAP.Signature 0xeeffeeff where Windows 7 to 11 put it"


class _Computed:
    """A session of which these analyses are computed, and nothing else yet."""

    def __init__(self, done: dict[Any, Any], os: Any = "windows") -> None:
        self._done = done
        self._os = os

    def info(self) -> DumpInfo:
        return DumpInfo("x.dmp", "minidump", self._os, "x64", 8, ByteSize(1 << 20))

    def peek(self, analysis: Any) -> Optional[Done[Any]]:
        return Done(self._done[analysis]) if analysis in self._done else None


def _line(start: str, analysis: Any, value: Any, os: Any = "windows") -> str:
    lines = key_facts(_Computed({analysis: value}, os))  # type: ignore[arg-type]
    return next(line for line in lines if line.startswith(start))


def _heaps_line(*heaps: NativeHeap) -> str:
    return _line("Native heaps: ", NATIVE_HEAPS, heaps)


def test_a_heap_that_could_not_be_read_is_not_counted_as_empty():
    line = _heaps_line(unread_heap(0x2C0000, WHY))
    assert line == f"Native heaps: 1, none could be read ({WHY})"


def test_the_heaps_read_are_counted_and_the_others_named():
    blocks = large_blocks(624, 2 * 1024 * 1024)
    line = _heaps_line(unread_heap(0x2C0000, WHY), nt_heap(0x7D0000, blocks))
    assert line.startswith("Native heaps: 2, 1 not read; in the 1 read, committed ")
    assert line.endswith("; 624 large blocks, 1.22 GB")


def test_heaps_all_read_give_their_totals():
    line = _heaps_line(nt_heap(0x5D0000), nt_heap(0x7D0000, large_blocks(2, 1 << 20)))
    assert line == "Native heaps: 2, committed 3.00 MB; 2 large blocks, 2.00 MB"


def test_a_heap_read_in_part_gives_lower_bounds():
    cut = replace(
        nt_heap(0x7D0000, large_blocks(2, 1 << 20)),
        problems=("1.00 MB of it is not in the dump",),
    )
    line = _heaps_line(nt_heap(0x5D0000), cut)
    assert line == (
        "Native heaps: 2, committed at least 3.00 MB; at least 2 large blocks, 2.00 MB"
    )


def test_sta_threads_are_counted_only_where_the_apartment_could_be_read():
    # A minidump without TEBs: no apartment is known, so no "STA: 0".
    unknown = (thread_view(1), thread_view(2))
    assert _line("Threads: ", THREADS, unknown) == "Threads: 2, COM apartments unknown"
    some = (
        thread_view(1, apartment="STA"),
        thread_view(2),
        thread_view(3, apartment="MTA"),
    )
    assert (
        _line("Threads: ", THREADS, some)
        == "Threads: 3, of which STA: 1 (1 of unknown apartment)"
    )
    known = (thread_view(1, apartment="STA"), thread_view(2, apartment="none"))
    assert _line("Threads: ", THREADS, known) == "Threads: 2, of which STA: 1"
    # A dump whose OS is not known (no SYSTEM_INFO) may be Windows'.
    no_os = Unknown("SYSTEM_INFO: missing")
    assert _line("Threads: ", THREADS, unknown, no_os) == (
        "Threads: 2, COM apartments unknown"
    )
    # Linux has no COM: no thread is in an STA, whatever could be read.
    assert (
        _line("Threads: ", THREADS, unknown, "linux") == "Threads: 2, of which STA: 0"
    )
