"""Result types of the image check (what WinDbg users know as `!chkimg`):
each module's read-only pages in the dump compared with its file."""

from __future__ import annotations

from dataclasses import dataclass

from enum import StrEnum
from analysis.values import Address, ByteSize


class ImageState(StrEnum):
    """checked: every read-only page the dump holds equals the file;
    damaged: some differ; not_checked: no file to compare with, another
    build of it, or no read-only page of it in the dump (reason says)."""

    CHECKED = "checked"
    DAMAGED = "damaged"
    NOT_CHECKED = "not checked"


class ImageKind(StrEnum):
    """What a module is to the managed analysis: the runtime and managed
    assemblies are read by the DAC (stack walks go through them)."""

    RUNTIME = "runtime"
    MANAGED = "managed"
    NATIVE = "native"


@dataclass(frozen=True)
class DamagedPages:
    """Consecutive pages of one part of a module (a PE section, an ELF
    segment) whose bytes in the dump differ from the file's."""

    address: Address
    size: ByteSize
    part: str
    differing_bytes: int


@dataclass(frozen=True)
class ImageCheck:
    """One module. file: the file compared with ("" when none);
    compared: the read-only bytes of it the dump holds that were compared;
    affects: what reads those pages and may be wrong where they differ."""

    module: str
    path: str
    base: Address
    state: ImageState
    file: str
    compared: ByteSize
    damaged: tuple[DamagedPages, ...]
    affects: str
    reason: str = ""
    kind: ImageKind = ImageKind.NATIVE

    @property
    def damaged_bytes(self) -> int:
        return sum(int(d.size) for d in self.damaged)


@dataclass(frozen=True)
class FileStamp:
    """A file the check looked for, as it was then: size and modification
    time in nanoseconds, or both -1 when there was no readable file."""

    path: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class ImageChecks:
    """Every module of the dump; undetectable: the damage this check
    cannot see, in a sentence; files: every file the check looked for (at
    hand or not), so that a kept result can tell whether they changed."""

    modules: tuple[ImageCheck, ...]
    undetectable: str
    files: tuple[FileStamp, ...] = ()

    @property
    def damaged(self) -> tuple[ImageCheck, ...]:
        return tuple(m for m in self.modules if m.state is ImageState.DAMAGED)
