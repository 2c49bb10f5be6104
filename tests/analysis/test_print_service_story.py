"""The print-service story, native half, end to end through `main.py report`
on a synthetic Windows dump (no public Windows dump with full memory exists):
624 large blocks of 2 MB in the process heap, printer threads in STA.

The managed half (the f-reachable queue, the blocked finalizer) needs the
dump's Windows DAC, which this synthetic dump cannot have, so the report must
say plainly what is missing."""

import json
import os
import subprocess
import sys

import pytest

from analysis.managed.client import ErrorCode
from analysis.managed.engines import WINE64
from tests.analysis.synthetic import MinidumpBuilder
from tests.paths import ROOT

MB = 1 << 20
HEAP = 0x1F0_0000_0000
BLOCKS = [(0x2000_0000_0000 + i * 0x0040_0000, 2 * MB + 0x1000) for i in range(624)]
MAIN, PRINTER_1, PRINTER_2 = 4100, 4104, 4108


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    dump = tmp_path_factory.mktemp("print") / "print-service.dmp"
    builder = MinidumpBuilder(arch="x64")
    builder.set_peb(0x7FF5_FFFD_E000)
    builder.add_module("spoolsv.exe", 0x7FF6_0000_0000, 0x20000)
    builder.add_module("coreclr.dll", 0x7FF8_1000_0000, 0x500000)
    for n, (tid, flags) in enumerate(
        ((MAIN, 0x141), (PRINTER_1, 0x81), (PRINTER_2, 0x81))
    ):
        base = 0x10_0000_0000 + n * 0x100_0000
        builder.add_thread(
            tid,
            teb=0x7FF5_FFF0_0000 + n * 0x2000,
            stack_base=base,
            stack_limit=base - 0x4000,
            ole_flags=flags,
        )
    builder.add_nt_heap(HEAP, reserved=0x100000, committed=0x40000, large_blocks=BLOCKS)
    builder.write(dump)
    run = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "report", str(dump)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_the_large_block_list_holds_624_blocks_of_2_mb(report):
    (heap,) = [h for h in report["native_heaps"] if h["address"] == HEAP]
    assert heap["kind"] == "nt"
    assert len(heap["large_blocks"]) == 624
    assert {b["size"] for b in heap["large_blocks"]} == {2 * MB + 0x1000}
    heap_row = next(r for r in report["memory"]["usage"] if r["usage"] == "Heap")
    assert heap_row["bytes"] >= 624 * 2 * MB  # the 1.3 GB of the story


def test_printer_threads_are_sta_and_the_main_thread_mta(report):
    apartments = {
        t["os_id"]: (t["apartment_os"], t["apartment"]) for t in report["threads"]
    }
    assert apartments == {
        MAIN: ("MTA", "MTA"),
        PRINTER_1: ("STA", "STA"),
        PRINTER_2: ("STA", "STA"),
    }


def test_the_pile_is_a_finding_and_the_managed_half_says_why_it_is_missing(report):
    (finding,) = [f for f in report["findings"] if f["rule"] == "native-large-blocks"]
    assert finding["title"] == "624 native blocks of 2.00 MB"
    assert finding["evidence"][0]["key"] == BLOCKS[0][0]
    # Every block is named: one link for all 624, ten one by one, the rest.
    evidence = finding["evidence"]
    assert len(evidence[0]["keys"]) == 624
    assert [e["text"] for e in (evidence[0], evidence[-1])] == [
        "all 624 blocks of 2.00 MB",
        "and 614 more blocks",
    ]
    assert len(evidence[-1]["keys"]) == 614
    assert finding["remedy"].startswith("Find the managed objects that own these")
    managed = report["managed"]
    assert managed["available"] is False
    if os.access(WINE64, os.X_OK):
        # The win-x64 engine ran under Wine and needs this runtime's DAC.
        assert "mscordaccore.dll" in managed["reason"]
        assert managed["code"] == ErrorCode.DAC_NOT_FOUND
    else:
        assert "install wine64" in managed["reason"]
