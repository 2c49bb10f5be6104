"""Each thread as the OS saw it: TEB, stack range, COM apartment and native
stack. The CLR's view of the same threads comes from the engine; the two are
merged elsewhere, so this one stays symbol- and runtime-free."""

from __future__ import annotations

from typing import Optional

from analysis.dumpfile.base import MemoryReader
from analysis.model.native import AddressOrGap, NativeThread
from analysis.model.vocab import Apartment
from analysis.native.stacks import (
    ScanBudget,
    StackLimits,
    com_call_wait,
    walk_stack,
)
from analysis.native.symbols import Symbolizer
from analysis.native.teb import com_apartment_of, read_teb
from analysis.values import Address


def _bound(from_teb: AddressOrGap, from_dump: Optional[Address]) -> AddressOrGap:
    # The TEB holds the whole reserved stack; a minidump's thread list only
    # the part it captured, so the TEB wins when it is readable.
    if isinstance(from_teb, Address) and from_teb:
        return from_teb
    if from_dump is not None:
        return Address(from_dump)
    return from_teb


def native_threads(
    reader: MemoryReader,
    symbolizer: Optional[Symbolizer] = None,
    limits: StackLimits = StackLimits(),
) -> tuple[NativeThread, ...]:
    symbolizer = symbolizer or Symbolizer(reader)
    threads = []
    budget = ScanBudget(limits)
    for thread in reader.threads():
        teb = read_teb(reader, thread)
        apartment = com_apartment_of(reader, teb)
        walk = walk_stack(reader, thread, symbolizer, limits, budget)
        wait = com_call_wait(walk.frames)
        problems = list(teb.problems) + list(walk.problems)
        # On Linux every thread lacks a TEB: the reason is kept once per
        # thread in apartment_reason, not repeated as a problem.
        if apartment.kind == "unknown" and reader.os == "windows":
            problems.append(f"apartment unknown: {apartment.reason}")
        threads.append(
            NativeThread(
                os_id=thread.os_id,
                name=thread.name,
                teb=teb.listed_address,
                stack_base=_bound(teb.stack_base, thread.stack_base),
                stack_limit=_bound(teb.stack_limit, thread.stack_limit),
                apartment_os=Apartment(apartment.kind),
                apartment_reason=apartment.reason,
                com_flags=apartment.flags,
                com_inits=apartment.com_inits,
                native_frames=walk.frames,
                in_com_call=wait.waiting,
                com_call_evidence=wait.evidence,
                problems=tuple(problems),
            )
        )
    return tuple(threads)
