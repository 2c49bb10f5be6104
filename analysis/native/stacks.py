"""Native call stacks without unwind data, and COM cross-apartment waits.

Two symbol-free methods, each frame saying which one found it so a user can
weigh it: the frame-pointer chain (rbp/ebp/x29), which is exact where code
keeps frame pointers, and a scan of the stack for words that point into
executable code just after a call instruction, which also sees frames of code
built without frame pointers but can include stale return addresses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from analysis.dumpfile.base import (
    MemoryNotInDump,
    MemoryReader,
    Module,
    Region,
    ThreadInfo,
)
from analysis.model.native import NativeFrame
from analysis.model.vocab import FrameHow
from analysis.native.symbols import Symbolizer, module_display_name
from analysis.native.teb import Wow64Context, is_wow64, wow64_context
from analysis.values import Address


@dataclass(frozen=True)
class StackLimits:
    """Bounds on the work done per thread, against corrupt or huge stacks."""

    max_frames: int = 256
    max_scan_bytes: int = 256 * 1024
    # All threads of one dump together (see ScanBudget): a hundred thousand
    # threads pointing into one held stack must not cost days.
    max_total_scan_bytes: int = 16 << 20


class ScanBudget:
    """Stack bytes the walks of one dump may still scan."""

    def __init__(self, limits: StackLimits) -> None:
        self.limit = limits.max_total_scan_bytes
        self.remaining = limits.max_total_scan_bytes


@dataclass(frozen=True)
class StackWalk:
    frames: tuple[NativeFrame, ...]
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class ComCallWait:
    """Whether a stack shows a thread waiting for a COM cross-apartment call
    to return; true-valued when it does. evidence: the wait frame and the
    combase/ole32 and rpcrt4 frames below it."""

    waiting: bool
    evidence: tuple[NativeFrame, ...] = ()
    reason: str = ""

    def __bool__(self) -> bool:
        return self.waiting


_FRAME_POINTER = {"x64": ("rbp",), "x86": ("ebp",), "arm64": ("x29", "fp")}
_LINK_REGISTER = {"arm64": ("x30", "lr")}
_PAGE = 0x1000


class _StackMemory:
    """The dumped part of one stack range, read a page at a time so a hole
    in the dump only loses that page."""

    def __init__(self, reader: MemoryReader, low: int, high: int) -> None:
        self.low = low
        self.high = high
        self.pointer_size = reader.pointer_size
        self._pages: dict[int, bytes] = {}
        page = low & ~(_PAGE - 1)
        while page < high:
            start, end = max(page, low), min(page + _PAGE, high)
            try:
                self._pages[page] = reader.read(start, end - start)
            except MemoryNotInDump:
                pass
            page += _PAGE
        self.readable_bytes = sum(len(p) for p in self._pages.values())

    def word(self, address: int) -> Optional[int]:
        if not self.low <= address <= self.high - self.pointer_size:
            return None
        page = address & ~(_PAGE - 1)
        data = self._pages.get(page)
        if data is None:
            return None
        at = address - max(page, self.low)
        if at + self.pointer_size > len(data):
            return None
        return int.from_bytes(data[at : at + self.pointer_size], "little")


def _modrm_call_length(modrm: int, sib: Optional[int]) -> Optional[int]:
    """Length of `FF /2` (call r/m) with this ModRM, or None if it is not
    /2; `sib` is needed only when the ModRM says one follows."""
    if (modrm >> 3) & 7 != 2:
        return None
    mod, rm = modrm >> 6, modrm & 7
    if mod == 3:
        return 2
    has_sib = rm == 4
    if has_sib and sib is None:
        return None
    if mod == 0:
        if has_sib:
            return 7 if sib is not None and sib & 7 == 5 else 3
        return 6 if rm == 5 else 2
    if mod == 1:
        return 4 if has_sib else 3
    return 7 if has_sib else 6


def _ends_with_x86_call(before: bytes) -> bool:
    n = len(before)
    if n >= 5 and before[n - 5] == 0xE8:
        return True
    for k in range(2, min(n, 7) + 1):
        if before[n - k] != 0xFF:
            continue
        sib = before[n - k + 2] if k >= 3 else None
        if _modrm_call_length(before[n - k + 1], sib) == k:
            return True
    return False


def _is_arm64_call(instruction: int) -> bool:
    if instruction & 0xFC000000 == 0x94000000:  # BL imm26
        return True
    if instruction & 0xFFFFFC1F == 0xD63F0000:  # BLR Xn
        return True
    return instruction & 0xFEFFF800 == 0xD63F0800  # BLRAA/BLRAB (PAC)


class _CallCheck:
    """Whether a code address follows a call instruction, cached per address.
    Code bytes missing from the dump cannot refute a candidate."""

    def __init__(self, reader: MemoryReader) -> None:
        self.reader = reader
        self.window = 4 if reader.arch == "arm64" else 7
        self._seen: dict[int, bool] = {}

    def _bytes_before(self, address: int) -> bytes:
        for n in range(min(self.window, address), 0, -1):
            try:
                return self.reader.read(address - n, n)
            except MemoryNotInDump:
                continue
        return b""

    def __call__(self, address: int) -> bool:
        if address not in self._seen:
            before = self._bytes_before(address)
            if len(before) < self.window:
                # Too few bytes to rule out every call form: keep it.
                self._seen[address] = True
            elif self.reader.arch == "arm64":
                self._seen[address] = _is_arm64_call(int.from_bytes(before, "little"))
            else:
                self._seen[address] = _ends_with_x86_call(before)
        return self._seen[address]


def _register(thread: ThreadInfo, names: tuple[str, ...]) -> Optional[int]:
    for name in names:
        if name in thread.registers:
            return int(thread.registers[name])
    return None


def _stack_bounds(
    symbolizer: Symbolizer, thread: ThreadInfo, sp: int
) -> tuple[Optional[int], str]:
    """The stack's high end: the thread's stack base when known, else the end
    of the mapping holding the stack pointer (looked up by bisection: a dump
    may list a hundred thousand threads and millions of regions)."""
    if thread.stack_base and int(thread.stack_base) > sp:
        return int(thread.stack_base), ""
    region = symbolizer.region_at(sp)
    if region is not None:
        return int(region.base) + int(region.size), ""
    return None, f"no stack range known around the stack pointer 0x{sp:x}"


def _frame_pointer_chain(
    memory: _StackMemory,
    start: Optional[int],
    symbolizer: Symbolizer,
    limit: int,
) -> list[tuple[int, int]]:
    """(stack address, return address) pairs along the saved-frame-pointer
    chain; stops at the first link that leaves the stack, does not move
    towards the stack base (so cannot loop), or returns to non-code."""
    ps = memory.pointer_size
    links: list[tuple[int, int]] = []
    fp = start
    while fp is not None and len(links) < limit:
        if fp % ps or not memory.low <= fp <= memory.high - 2 * ps:
            break
        saved, ret = memory.word(fp), memory.word(fp + ps)
        if saved is None or ret is None or not symbolizer.is_code(ret):
            break
        # A frame record holds the caller's frame pointer: further up this
        # stack, or 0 where the chain ends. Anything else means rbp was not
        # a frame pointer here, and its neighbour is no return address.
        if saved != 0 and not fp < saved <= memory.high - 2 * ps:
            break
        links.append((fp + ps, ret))
        if saved == 0:
            break
        fp = saved
    return links


class _X86View:
    """A WOW64 dump seen as the 32-bit process it holds: 4-byte stack words
    and x86 code, over the same memory, regions and modules."""

    arch = "x86"
    pointer_size = 4

    def __init__(self, reader: MemoryReader) -> None:
        self._reader = reader
        self.path, self.format, self.os = reader.path, reader.format, reader.os

    def regions(self) -> Sequence[Region]:
        return self._reader.regions()

    def threads(self) -> Sequence[ThreadInfo]:
        return self._reader.threads()

    def modules(self) -> Sequence[Module]:
        return self._reader.modules()

    def read(self, address: int, size: int) -> bytes:
        return self._reader.read(address, size)

    def held_ranges(self, address: int, size: int) -> Sequence[tuple[int, int]]:
        return self._reader.held_ranges(address, size)

    @property
    def problems(self) -> Sequence[str]:
        return self._reader.problems

    def check_unchanged(self) -> None:
        self._reader.check_unchanged()

    def close(self) -> None:
        self._reader.close()


def walk_stack(
    reader: MemoryReader,
    thread: ThreadInfo,
    symbolizer: Symbolizer,
    limits: StackLimits = StackLimits(),
    budget: Optional[ScanBudget] = None,
) -> StackWalk:
    """Frames from the context, the frame-pointer chain and a stack scan,
    ordered from the innermost call outwards (by where each return address
    sits on the stack). budget: shared by the walks of one dump's threads.

    A thread of a WOW64 process dumped by a 64-bit writer is walked on its
    32-bit stack, from the context it saved on entering the 64-bit layer: the
    process's own frames, not the emulator's."""
    if not is_wow64(reader):
        return _walk(reader, thread, symbolizer, limits, [], budget)
    context = wow64_context(reader, thread)
    if not isinstance(context, Wow64Context):
        problems = [
            f"32-bit stack not walked ({context.reason}): "
            "these are the WOW64 layer's 64-bit frames"
        ]
        return _walk(reader, thread, symbolizer, limits, problems, budget)
    thread32 = ThreadInfo(
        os_id=thread.os_id,
        teb=thread.teb,
        stack_base=context.stack_base,
        stack_limit=context.stack_limit,
        stack_pointer=context.esp,
        instruction_pointer=context.eip,
        registers={"eip": context.eip, "esp": context.esp, "ebp": context.ebp},
        name=thread.name,
    )
    return _walk(_X86View(reader), thread32, symbolizer, limits, [], budget)


def _walk(
    reader: MemoryReader,
    thread: ThreadInfo,
    symbolizer: Symbolizer,
    limits: StackLimits,
    problems: list[str],
    budget: Optional[ScanBudget] = None,
) -> StackWalk:
    frames: list[tuple[Optional[int], int, FrameHow]] = []
    pc = thread.instruction_pointer
    if pc is not None:
        frames.append((None, int(pc), FrameHow.CONTEXT))
    lr = _register(thread, _LINK_REGISTER.get(reader.arch, ()))
    if lr is not None and lr != pc and symbolizer.is_code(lr):
        frames.append((None, lr, FrameHow.CONTEXT))
    sp = thread.stack_pointer
    if sp is None:
        problems.append("the dump records no stack pointer for this thread")
        return _finish(frames, symbolizer, reader, limits, problems)
    high, why = _stack_bounds(symbolizer, thread, int(sp))
    if high is None:
        problems.append(why)
        return _finish(frames, symbolizer, reader, limits, problems)
    scan = limits.max_scan_bytes
    if budget is not None:
        if budget.remaining <= 0:
            problems.append(
                f"stack not scanned: the stacks of this dump's threads reached "
                f"the limit of {budget.limit} scanned bytes in all"
            )
            return _finish(frames, symbolizer, reader, limits, problems)
        scan = min(scan, budget.remaining)
    memory = _StackMemory(reader, int(sp), min(high, int(sp) + scan))
    if budget is not None:
        budget.remaining -= max(memory.readable_bytes, 1)
    if memory.readable_bytes == 0:
        problems.append(f"the stack at 0x{int(sp):x} is not in the dump")
        return _finish(frames, symbolizer, reader, limits, problems)
    if high > int(sp) + scan:
        problems.append(
            f"stack scan stopped after {scan} bytes "
            f"(0x{high - int(sp):x} bytes to the stack base)"
        )
    found: dict[int, tuple[int, FrameHow]] = {}
    chain = _frame_pointer_chain(
        memory,
        _register(thread, _FRAME_POINTER.get(reader.arch, ())),
        symbolizer,
        limits.max_frames,
    )
    for where, ret in chain:
        found[where] = (ret, FrameHow.FRAME_POINTER)
    follows_call = _CallCheck(reader)
    ps = reader.pointer_size
    where = (int(sp) + ps - 1) & ~(ps - 1)
    while where + ps <= memory.high and len(found) < 4 * limits.max_frames:
        word = memory.word(where)
        if (
            word is not None
            and where not in found
            and symbolizer.is_code(word)
            and follows_call(word)
        ):
            found[where] = (word, FrameHow.SCAN)
        where += ps
    for where in sorted(found):
        ret, how = found[where]
        frames.append((where, ret, how))
    return _finish(frames, symbolizer, reader, limits, problems)


def _finish(
    frames: list[tuple[Optional[int], int, FrameHow]],
    symbolizer: Symbolizer,
    reader: MemoryReader,
    limits: StackLimits,
    problems: list[str],
) -> StackWalk:
    if len(frames) > limits.max_frames:
        problems.append(f"stack cut at {limits.max_frames} frames")
    out = []
    for index, (where, address, how) in enumerate(frames[: limits.max_frames]):
        module = symbolizer.module_at(address)
        out.append(
            NativeFrame(
                index=index,
                address=Address(address),
                name=symbolizer.name(address),
                module=module_display_name(module, reader.os) if module else None,
                how=how,
                stack_address=Address(where) if where is not None else None,
            )
        )
    return StackWalk(tuple(out), tuple(problems))


# --- COM cross-apartment call -------------------------------------------

_WAITS = {
    "ntdll": frozenset(
        {
            "NtWaitForSingleObject",
            "NtWaitForMultipleObjects",
            "ZwWaitForSingleObject",
            "ZwWaitForMultipleObjects",
        }
    ),
    "kernelbase": frozenset(
        {
            "WaitForSingleObject",
            "WaitForSingleObjectEx",
            "WaitForMultipleObjects",
            "WaitForMultipleObjectsEx",
        }
    ),
    "user32": frozenset(
        {
            "MsgWaitForMultipleObjects",
            "MsgWaitForMultipleObjectsEx",
            "NtUserMsgWaitForMultipleObjectsEx",
        }
    ),
    "win32u": frozenset({"NtUserMsgWaitForMultipleObjectsEx"}),
}
_WAITS["kernel32"] = _WAITS["kernelbase"]
_COM_MODULES = frozenset({"combase", "ole32"})
_RPC_MODULES = frozenset({"rpcrt4"})

# How deep below the top the wait may sit: frame 0 may be unnamed (the stub's
# page not in the dump) while the wait's caller is.
WAIT_SEARCH_DEPTH = 3


def _module_key(frame: NativeFrame) -> str:
    name = (frame.module or "").lower()
    return name[:-4] if name.endswith(".dll") else name


def _function(frame: NativeFrame) -> Optional[str]:
    if "!" not in frame.name:
        return None
    return frame.name.split("!", 1)[1].split("+", 1)[0]


def com_call_wait(frames: tuple[NativeFrame, ...]) -> ComCallWait:
    """A wait on top of the stack, then return addresses into combase/ole32
    and, further out, into rpcrt4: the symbol-free shape of a thread blocked
    in a COM cross-apartment call (the channel's SendReceive and modal wait
    in combase/ole32 sit between the wait and the NDR proxy in rpcrt4)."""
    wait_at = None
    for i, frame in enumerate(frames[:WAIT_SEARCH_DEPTH]):
        if _function(frame) in _WAITS.get(_module_key(frame), ()):
            wait_at = i
            break
    if wait_at is None:
        return ComCallWait(False, (), "no wait function on top of the stack")
    below = frames[wait_at + 1 :]
    first_com = next(
        (i for i, f in enumerate(below) if _module_key(f) in _COM_MODULES), None
    )
    if first_com is None:
        return ComCallWait(
            False, (), f"waits in {frames[wait_at].name}, but no combase/ole32 frame"
        )
    if not any(_module_key(f) in _RPC_MODULES for f in below[first_com + 1 :]):
        return ComCallWait(
            False,
            (),
            f"waits in {frames[wait_at].name} under combase/ole32, "
            "but no rpcrt4 frame further out",
        )
    evidence = (frames[wait_at],) + tuple(
        f for f in below if _module_key(f) in _COM_MODULES | _RPC_MODULES
    )
    return ComCallWait(
        True,
        evidence,
        f"waits in {frames[wait_at].name} under combase/ole32 and rpcrt4 frames",
    )
