"""The diagnosis rules on situations built by hand: the print-service story
and its look-alikes. Real dumps are checked in test_diagnosis_scenarios.py."""

from analysis.diagnosis.rules import (
    Facts,
    blocked_finalizer,
    deadlock,
    finalization_backlog,
    fragmentation,
    native_large_blocks,
    threadpool_starvation,
)
from analysis.model.threads import WaitTarget
from analysis.model.vocab import RowKind, Severity
from tests.builders import (
    finalizer_queue,
    heap_stats,
    large_blocks,
    nt_heap,
    thread_view,
    type_count,
)

MB = 1 << 20
PRINT_SERVICE_BLOCKS = large_blocks(624, 2 * MB)
READY = (
    type_count("System.Drawing.Font", 66000, 66000 * 40),
    type_count("System.Drawing.Bitmap", 627, 627 * 48),
)


def test_print_service_story_is_stated_with_its_evidence():
    facts = Facts(
        threads=(
            thread_view(1, name="Main"),
            thread_view(2, finalizer=True, apartment="MTA", com=True),
            thread_view(3, name="Printer", apartment="STA"),
            thread_view(4, name="Printer", apartment="STA"),
        ),
        finalizer=finalizer_queue(READY),
        heap=None,
        native_heaps=(nt_heap(0x5D0000, PRINT_SERVICE_BLOCKS),),
    )
    (finding,) = blocked_finalizer(facts)
    assert finding.severity == "critical"
    assert "COM call into another apartment" in finding.statement
    assert "66,627 objects" in finding.statement
    assert "624 blocks of 2.00 MB" in finding.statement
    assert "2 STA thread(s)" in finding.statement
    targets = {(e.row, e.key) for e in finding.evidence}
    assert {(RowKind.THREAD, 2), (RowKind.THREAD, 3), (RowKind.THREAD, 4)} <= targets
    assert (RowKind.READY_TYPE, "System.Drawing.Font") in targets
    assert (RowKind.LARGE_BLOCK, PRINT_SERVICE_BLOCKS[0].address) in targets


def test_finalizer_waiting_on_a_monitor_names_the_holder():
    facts = Facts(
        threads=(
            thread_view(10, name="LockHolder"),
            thread_view(
                11, finalizer=True, waits=WaitTarget(0x7000, "System.Object", 10)
            ),
        ),
        finalizer=finalizer_queue(READY),
        heap=None,
        native_heaps=(),
    )
    (finding,) = blocked_finalizer(facts)
    assert "held by thread 'LockHolder' (OS id 10" in finding.statement
    assert (RowKind.THREAD, 10) in {(e.row, e.key) for e in finding.evidence}
    assert list(finalization_backlog(facts)) == []  # one finding, not two


def test_a_finalizer_waiting_on_a_task_is_blocked_and_says_so():
    facts = Facts(
        threads=(
            thread_view(
                11, finalizer=True, frames=["System.Threading.Tasks.Task.Wait()"]
            ),
        ),
        finalizer=finalizer_queue(READY),
        heap=None,
        native_heaps=(),
    )
    (finding,) = blocked_finalizer(facts)
    assert finding.statement.startswith(
        "The finalizer thread waits synchronously for a task"
    )


def test_a_thread_idle_in_monitor_wait_is_not_blocked():
    idle = WaitTarget(0x7000, "System.Object", None, kind="wait")
    facts = Facts(
        threads=(thread_view(11, finalizer=True, waits=idle),),
        finalizer=finalizer_queue(READY[:1]),
        heap=None,
        native_heaps=(),
    )
    assert list(blocked_finalizer(facts)) == []
    assert list(deadlock(facts)) == []


def test_an_idle_finalizer_with_an_empty_queue_is_no_finding():
    facts = Facts((thread_view(11, finalizer=True),), finalizer_queue(()), None, ())
    assert list(blocked_finalizer(facts)) == []
    assert list(finalization_backlog(facts)) == []
    assert list(deadlock(facts)) == []


def test_a_busy_finalizer_with_a_long_queue_is_a_backlog():
    facts = Facts((thread_view(11, finalizer=True),), finalizer_queue(READY), None, ())
    (finding,) = finalization_backlog(facts)
    assert finding.statement.startswith("66,627 objects wait in the f-reachable queue")


def test_two_threads_waiting_for_each_other_are_a_deadlock():
    facts = Facts(
        threads=(
            thread_view(20, name="A", waits=WaitTarget(0x1, "LockB", 21)),
            thread_view(21, name="B", waits=WaitTarget(0x2, "LockA", 20)),
            thread_view(22, name="C", waits=WaitTarget(0x2, "LockA", 20)),
        ),
        finalizer=None,
        heap=None,
        native_heaps=(),
    )
    (finding,) = deadlock(facts)
    assert finding.title == "Deadlock between 2 threads"
    assert finding.statement.startswith(
        "Thread 'A' (OS id 20, managed id 20) waits for"
    )
    assert {e.key for e in finding.evidence} == {20, 21}


def test_a_few_large_blocks_are_not_a_pile():
    few = Facts((), None, None, (nt_heap(0x10000, PRINT_SERVICE_BLOCKS[:3]),))
    assert list(native_large_blocks(few)) == []
    many = Facts((), None, None, (nt_heap(0x10000, PRINT_SERVICE_BLOCKS),))
    (finding,) = native_large_blocks(many)
    assert finding.title == "624 native blocks of 2.00 MB"


def test_pool_threads_blocked_on_tasks_are_starvation():
    blocked = tuple(
        thread_view(
            30 + i, pool=True, frames=["System.Threading.Tasks.Task.Wait(Int32)"]
        )
        for i in range(5)
    )
    (finding,) = threadpool_starvation(Facts(blocked, None, None, ()))
    assert "5 thread-pool threads" in finding.statement
    assert list(threadpool_starvation(Facts(blocked[:2], None, None, ()))) == []


def test_fragmentation_needs_a_large_free_share():
    fragmented = heap_stats([("Free", 40, 60 * MB), ("System.Byte[]", 10, 40 * MB)])
    (finding,) = fragmentation(Facts((), None, fragmented, ()))
    assert finding.title == "60% of the GC heap is free space"
    tidy = heap_stats([("Free", 40, 1 * MB), ("System.Byte[]", 10, 99 * MB)])
    assert list(fragmentation(Facts((), None, tidy, ()))) == []


def test_a_damaged_heap_is_a_finding_and_its_counts_are_lower_bounds():
    from dataclasses import replace

    from analysis.diagnosis import diagnose
    from analysis.managed.results import CorruptRange
    from analysis.values import Address, ByteSize

    fragmented = heap_stats([("Free", 40, 60 * MB), ("System.Byte[]", 10, 40 * MB)])
    damaged = replace(
        fragmented,
        corrupt_ranges=(
            CorruptRange(Address(0x1000), Address(0x3000), "loh", "bad method table"),
        ),
        corrupt_range_count=1,
        unwalked_bytes=ByteSize(0x2000),
    )
    found = {f.rule: f for f in diagnose(Facts((), None, damaged, ()))}
    assert "0x1000-0x3000 in loh (bad method table)" in (
        found["gc-heap-damaged"].statement
    )
    assert "8.00 KB not walked" in found["gc-heap-damaged"].statement
    assert found["gc-fragmentation"].statement.endswith(
        "these counts are lower bounds.)"
    )
    # An intact heap says neither.
    intact = {f.rule: f for f in diagnose(Facts((), None, fragmented, ()))}
    assert "gc-heap-damaged" not in intact
    assert "lower bounds" not in intact["gc-fragmentation"].statement


def test_the_blocked_finalizer_finding_says_what_the_holder_does_and_what_to_do():
    facts = Facts(
        threads=(
            thread_view(
                10,
                name="LockHolder",
                frames=[
                    "System.Threading.Thread.Sleep(Int32)",
                    "Service.Printer.Flush()",
                ],
            ),
            thread_view(
                11, finalizer=True, waits=WaitTarget(0x7000, "System.Object", 10)
            ),
        ),
        finalizer=finalizer_queue(READY),
        heap=None,
        native_heaps=(nt_heap(0x5D0000, PRINT_SERVICE_BLOCKS),),
    )
    (finding,) = blocked_finalizer(facts)
    assert finding.remedy.startswith(
        "The lock holder, thread 'LockHolder' (OS id 10, managed id 10), is in "
        "System.Threading.Thread.Sleep(Int32), called from Service.Printer.Flush()"
    )
    assert "Do not take locks or block in a finalizer." in finding.remedy
    assert "Dispose objects that hold native resources deterministically" in (
        finding.remedy
    )
    # The pile's evidence names all 624 blocks, not the first.
    (pile,) = [e for e in finding.evidence if e.row == RowKind.LARGE_BLOCK]
    assert pile.keys == tuple(int(b.address) for b in PRINT_SERVICE_BLOCKS)


def test_a_finalizer_stuck_in_com_is_told_to_pump_messages_on_sta_threads():
    facts = Facts(
        threads=(
            thread_view(2, finalizer=True, apartment="MTA", com=True),
            thread_view(3, name="Printer", apartment="STA"),
        ),
        finalizer=finalizer_queue(READY),
        heap=None,
        native_heaps=(),
    )
    (finding,) = blocked_finalizer(facts)
    assert finding.remedy.startswith("Pump messages on STA threads")


def test_a_pile_lists_ten_blocks_and_links_the_rest_and_all():
    facts = Facts((), None, None, (nt_heap(0x5D0000, PRINT_SERVICE_BLOCKS),))
    (finding,) = native_large_blocks(facts)
    addresses = tuple(int(b.address) for b in PRINT_SERVICE_BLOCKS)
    everything, *single, more = finding.evidence
    assert everything.text == "all 624 blocks of 2.00 MB"
    assert everything.keys == addresses
    assert [e.keys for e in single] == [(a,) for a in addresses[:10]]
    assert more.text == "and 614 more blocks"
    assert more.keys == addresses[10:]
    assert finding.remedy.startswith("Find the managed objects that own these blocks")


def test_the_ready_queue_beyond_five_types_is_one_more_link():
    ready = tuple(type_count(f"T{i}", 100 - i, 1000) for i in range(8))
    facts = Facts(
        (thread_view(11, finalizer=True),),
        finalizer_queue(ready + (type_count("Big", 20000, 10),)),
        None,
        (),
    )
    (finding,) = finalization_backlog(facts)
    assert [e.text for e in finding.evidence][-1] == "and 4 more types"
    assert finding.evidence[-1].keys == ("T4", "T5", "T6", "T7")


def test_a_leak_suspect_from_a_damaged_graph_says_its_counts_may_be_off():
    from dataclasses import replace

    from analysis.diagnosis import diagnose
    from analysis.managed.results import GraphSummary
    from analysis.model.diagnosis import Finding

    suspect = Finding(
        rule="leak-suspect",
        severity=Severity.WARNING,
        title="10,000 Subscriber objects accumulate in one Object[]",
        statement="One Object[] holds 10,000 Subscriber objects.",
        evidence=(),
    )
    graph = GraphSummary(1, 1, None, 0, None, 1, 1, ())
    sound = diagnose(Facts((), None, None, (), leak_suspects=(suspect,), graph=graph))
    assert sound[0].statement == suspect.statement
    dangling = replace(graph, dangling_references=1)
    (finding,) = diagnose(
        Facts((), None, None, (), leak_suspects=(suspect,), graph=dangling)
    )
    assert finding.statement.endswith("so they may be too low or too high.)")
