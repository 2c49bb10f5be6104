"""The diagnosis rules on facts built by hand: the print-service story and
its look-alikes. Real dumps are checked in tests/analysis/test_diagnosis_scenarios.py."""

from dataclasses import dataclass

from analysis.diagnosis.rules import (
    Facts,
    blocked_finalizer,
    deadlock,
    finalization_backlog,
    fragmentation,
    native_large_blocks,
    threadpool_starvation,
)
from analysis.session import ThreadView, WaitTarget


@dataclass(frozen=True)
class Entry:
    name: str
    count: int
    size: int


@dataclass(frozen=True)
class Queue:
    ready: tuple
    ready_count: int


@dataclass(frozen=True)
class Block:
    address: int
    size: int


@dataclass(frozen=True)
class Heap:
    address: int
    large_blocks: tuple


@dataclass(frozen=True)
class Stats:
    types: tuple
    total_bytes: int


def thread(
    os_id,
    name=None,
    apartment="unknown",
    finalizer=False,
    pool=False,
    waits=None,
    com=False,
    frames=(),
):
    return ThreadView(
        os_id=os_id,
        managed_id=os_id % 100,
        name=name,
        teb=None,
        stack_base=None,
        stack_limit=None,
        apartment_os=apartment,
        apartment_clr=None,
        apartment=apartment,
        apartment_disagrees=False,
        is_finalizer=finalizer,
        is_gc=False,
        is_threadpool=pool,
        lock_count=0,
        exception=None,
        waits_for=waits,
        in_com_call=com,
        frames=tuple(frames),
    )


PRINT_SERVICE_BLOCKS = tuple(
    Block(0x10000000 + i * 0x210000, 2 * 1024 * 1024) for i in range(624)
)
READY = (
    Entry("System.Drawing.Font", 66000, 66000 * 40),
    Entry("System.Drawing.Bitmap", 627, 627 * 48),
)


def test_print_service_story_is_stated_with_its_evidence():
    facts = Facts(
        threads=(
            thread(1, "Main"),
            thread(2, finalizer=True, apartment="MTA", com=True),
            thread(3, "Printer", apartment="STA"),
            thread(4, "Printer", apartment="STA"),
        ),
        finalizer=Queue(READY, 66627),
        heap=None,
        native_heaps=(Heap(0x5D0000, PRINT_SERVICE_BLOCKS),),
    )
    (finding,) = blocked_finalizer(facts)
    assert finding.severity == "critical"
    assert "COM call into another apartment" in finding.statement
    assert "66,627 objects" in finding.statement
    assert "624 blocks of 2.00 MB" in finding.statement
    assert "2 STA thread(s)" in finding.statement
    targets = {(e.view, e.key) for e in finding.evidence}
    assert (
        ("threads", 2) in targets
        and ("threads", 3) in targets
        and ("threads", 4) in targets
    )
    assert ("finalizer", "System.Drawing.Font") in targets
    assert ("native_heaps", PRINT_SERVICE_BLOCKS[0].address) in targets


def test_finalizer_waiting_on_a_monitor_names_the_holder():
    facts = Facts(
        threads=(
            thread(10, "LockHolder"),
            thread(11, finalizer=True, waits=WaitTarget(0x7000, "System.Object", 10)),
        ),
        finalizer=Queue(READY, 5),
        heap=None,
        native_heaps=(),
    )
    (finding,) = blocked_finalizer(facts)
    assert "held by thread 'LockHolder' (OS id 10" in finding.statement
    assert ("threads", 10) in {(e.view, e.key) for e in finding.evidence}
    assert list(finalization_backlog(facts)) == []


def test_an_idle_finalizer_with_an_empty_queue_is_no_finding():
    facts = Facts((thread(11, finalizer=True),), Queue((), 0), None, ())
    assert list(blocked_finalizer(facts)) == []
    assert list(deadlock(facts)) == []


def test_two_threads_waiting_for_each_other_are_a_deadlock():
    facts = Facts(
        threads=(
            thread(20, "A", waits=WaitTarget(0x1, "LockB", 21)),
            thread(21, "B", waits=WaitTarget(0x2, "LockA", 20)),
            thread(22, "C", waits=WaitTarget(0x2, "LockA", 20)),
        ),
        finalizer=None,
        heap=None,
        native_heaps=(),
    )
    (finding,) = deadlock(facts)
    assert finding.title == "Deadlock between 2 threads"
    assert {e.key for e in finding.evidence} == {20, 21}


def test_a_few_large_blocks_are_not_a_pile():
    few = Facts((), None, None, (Heap(1, PRINT_SERVICE_BLOCKS[:3]),))
    assert list(native_large_blocks(few)) == []
    many = Facts((), None, None, (Heap(1, PRINT_SERVICE_BLOCKS),))
    (finding,) = native_large_blocks(many)
    assert finding.title == "624 native blocks of 2.00 MB"


def test_pool_threads_blocked_on_tasks_are_starvation():
    blocked = [
        thread(30 + i, pool=True, frames=["System.Threading.Tasks.Task.Wait(Int32)"])
        for i in range(5)
    ]
    (finding,) = threadpool_starvation(Facts(tuple(blocked), None, None, ()))
    assert "5 thread-pool threads" in finding.statement
    assert list(threadpool_starvation(Facts(tuple(blocked[:2]), None, None, ()))) == []


def test_fragmentation_needs_a_large_free_share():
    mb = 1024 * 1024
    fragmented = Stats(
        (Entry("Free", 40, 60 * mb), Entry("System.Byte[]", 10, 40 * mb)), 100 * mb
    )
    (finding,) = fragmentation(Facts((), None, fragmented, ()))
    assert finding.title == "60% of the GC heap is free space"
    tidy = Stats(
        (Entry("Free", 40, 1 * mb), Entry("System.Byte[]", 10, 99 * mb)), 100 * mb
    )
    assert list(fragmentation(Facts((), None, tidy, ()))) == []
