"""The SOS parsers on output as SOS prints it (thousands separators, dead
threads, several GC heaps, several commands in one output)."""

from __future__ import annotations

from scenarios.sos import (
    parse_clrstack,
    parse_clrthreads,
    parse_dumpheap_stat,
    parse_finalizequeue,
    parse_gchandles,
    parse_gcroot,
    parse_dumpheap_short,
    parse_syncblk,
)

FINALIZEQUEUE_TWO_HEAPS = """\
SyncBlocks to be cleaned up: 0
----------------------------------
Heap 0
generation 0 has 6 objects (55bd11e65eb0->55bd11e65ee0)
generation 1 has 16 objects (55bd11e65e30->55bd11e65eb0)
generation 2 has 0 objects (55bd11e65e30->55bd11e65e30)
Ready for finalization 5,041 objects (55bd11e65fb0->55bd11e6fd38)
------------------------------
Heap 1
generation 0 has 1 objects (55bd11e75eb0->55bd11e75eb8)
generation 1 has 0 objects (55bd11e75eb0->55bd11e75eb0)
generation 2 has 1,200 objects (55bd11e75e30->55bd11e75eb0)
Ready for finalization 2 objects (55bd11e75fb0->55bd11e75fc0)
------------------------------
Statistics for all finalizable objects that are no longer rooted:
         Address               MT           Size
    7f6b19001ba0     7f76f3b713c0             24

Statistics:
          MT Count TotalSize Class Name
7f76f3b71290    40       960 DumpScope.Scenarios.UnmanagedBuffer
7f76f3b713c0 5,000   120,000 DumpScope.Scenarios.SmallResource
Total 5,040 objects, 120,960 bytes
"""

DUMPHEAP_STAT = """\
Statistics:
          MT Count TotalSize Class Name
7f76f3ba3e28     1        24 System.Buffers.SharedArrayPool<System.Char>+<>c
7f76f3b713c0 5,000   120,000 DumpScope.Scenarios.SmallResource
7fcbcba622d8       679 160,028,976 System.Object[]
Total 5,680 objects, 160,149,000 bytes
"""

GCHANDLES_STAT = """\
Statistics:
              MT    Count    TotalSize Class Name
00007f8db36547b0        1           24 System.Object
Total 1 objects

Handles:
    Strong Handles:       10
    Pinned Handles:       17
    Weak Long Handles:    1,170
"""


def test_finalizequeue_sums_heaps_and_reads_separators() -> None:
    queue = parse_finalizequeue(FINALIZEQUEUE_TWO_HEAPS)
    assert queue["generations"] == {0: 7, 1: 16, 2: 1200}
    assert queue["ready"] == 5043
    assert queue["types"] == {
        "DumpScope.Scenarios.UnmanagedBuffer": (40, 960),
        "DumpScope.Scenarios.SmallResource": (5000, 120000),
    }


def test_dumpheap_stat_ignores_other_commands_tables() -> None:
    text = FINALIZEQUEUE_TWO_HEAPS + DUMPHEAP_STAT + GCHANDLES_STAT
    heap = parse_dumpheap_stat(text)
    assert heap == {
        "System.Buffers.SharedArrayPool<System.Char>+<>c": (1, 24),
        "DumpScope.Scenarios.SmallResource": (5000, 120000),
        "System.Object[]": (679, 160028976),
    }
    assert parse_gchandles(text) == {"Strong": 10, "Pinned": 17, "Weak Long": 1170}


def test_clrthreads_rows_including_dead_threads() -> None:
    text = """\
 DBG   ID     OSID ThreadOBJ           State GC Mode     GC Alloc Context                  Domain           Count Apt Exception
   5    2     2c96 000055BD11DF8400  2021220 Preemptive  0000000000000000:0000000000000000 000055BD11DD0340 -00001 Ukn (Finalizer) 
XXXX    9        0 000055BD11E2E7C0  1039820 Preemptive  0000000000000000:0000000000000000 000055BD11DD0340 0     Ukn (Threadpool Worker) 
"""  # noqa: E501, W291 - SOS pads its lines
    finalizer, dead = parse_clrthreads(text)
    assert (finalizer["dbg_id"], finalizer["managed_id"], finalizer["os_id"]) == (
        5,
        2,
        0x2C96,
    )
    assert finalizer["state"] == 0x2021220 and finalizer["special"] == "(Finalizer)"
    assert (dead["dbg_id"], dead["os_id"], dead["lock_count"]) == (None, 0, 0)
    assert dead["special"] == "(Threadpool Worker)"


def test_syncblk_owner_and_waiters() -> None:
    text = """\
Index         SyncBlock MonitorHeld Recursion Owning Thread Info          SyncBlock Owner
    2 000055BD11E51D20            5         1 000055BD11E2E7C0 2c98   7   00007f6b1980a2e0 DumpScope.Scenarios.FinalizerLock
-----------------------------
Total           2
"""  # noqa: E501
    (block,) = parse_syncblk(text)
    assert block["owner_os_id"] == 0x2C98
    assert block["waiters"] == 2
    assert block["type"] == "DumpScope.Scenarios.FinalizerLock"
    assert block["object"] == 0x7F6B1980A2E0


def test_clrstack_per_thread_without_source_positions() -> None:
    text = """\
OS Thread Id: 0x2c96
        Child SP               IP Call Site
00007F76E3FFE860 00007F76F2888B32 System.Threading.Monitor.Enter_Slowpath(System.Object)
00007F76E3FFE920 00007F76F3672E49 DumpScope.Scenarios.BlockingFinalizable.Finalize() [/src/BlockedFinalizer.cs @ 57]
OS Thread Id: 0x2c97
        Child SP               IP Call Site
00007F76E23FEDF0 00007f7771dc3f16 [DebuggerU2MCatchHandlerFrame: 00007f76e23fedf0] 
"""  # noqa: E501, W291
    assert parse_clrstack(text) == {
        0x2C96: [
            "System.Threading.Monitor.Enter_Slowpath(System.Object)",
            "DumpScope.Scenarios.BlockingFinalizable.Finalize()",
        ],
        0x2C97: ["[DebuggerU2MCatchHandlerFrame: 00007f76e23fedf0]"],
    }


def test_gcroot_paths_from_handles_and_stacks() -> None:
    text = """\
Caching GC roots, this may take a while.

HandleTable:
    00007f4824d613e8 (strong handle)
          -> 7f0790000028     System.Object[] 
          -> 7f079240aac8     DumpScope.Scenarios.Subscriber 

Thread 5c24:
    7f52ea131b00 7f52f8698b32 System.Threading.Monitor.Enter_Slowpath(System.Object)
        rbp-30: 00007f52ea131b60
          -> 7f4721809e70     DumpScope.Scenarios.OrdersLock 

Found 2 unique roots.
"""  # noqa: W291
    handle, stack = parse_gcroot(text)
    assert handle == {
        "section": "HandleTable",
        "thread": None,
        "root": "00007f4824d613e8 (strong handle)",
        "chain": [
            (0x7F0790000028, "System.Object[]"),
            (0x7F079240AAC8, "DumpScope.Scenarios.Subscriber"),
        ],
    }
    assert (stack["section"], stack["thread"], stack["root"]) == (
        "Thread",
        0x5C24,
        "rbp-30: 00007f52ea131b60",
    )
    assert stack["chain"] == [(0x7F4721809E70, "DumpScope.Scenarios.OrdersLock")]
    assert parse_dumpheap_short(
        "Loading core dump: x ...\n    7fe3c5409cd8\n7fe3c5409e50\n"
    ) == [
        0x7FE3C5409CD8,
        0x7FE3C5409E50,
    ]
