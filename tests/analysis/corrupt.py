"""Damage for real dumps: where the structures of an ELF core sit in the
file, so a test can corrupt one field or one page of exactly the structure
it means to, plus a time bound for code that must not hang."""

from __future__ import annotations

import contextlib
import signal
import struct
from dataclasses import dataclass
from typing import Iterator

PT_LOAD, PT_NOTE = 1, 4
NT_PRSTATUS, NT_FILE = 1, 0x46494C45
PHDR = struct.Struct("<IIQQQQQQ")


@dataclass(frozen=True)
class ProgramHeader:
    index: int
    at: int  # file offset of the entry itself
    type: int
    flags: int
    offset: int
    vaddr: int
    filesz: int
    memsz: int


def program_headers(data: bytes) -> list[ProgramHeader]:
    phoff = struct.unpack_from("<Q", data, 32)[0]
    phnum = struct.unpack_from("<H", data, 56)[0]
    rows = []
    for i in range(phnum):
        at = phoff + i * PHDR.size
        p_type, flags, offset, vaddr, _, filesz, memsz, _ = PHDR.unpack_from(data, at)
        rows.append(ProgramHeader(i, at, p_type, flags, offset, vaddr, filesz, memsz))
    return rows


def memsz_field(header: ProgramHeader) -> int:
    """File offset of the entry's p_memsz (8 bytes)."""
    return header.at + 40


@dataclass(frozen=True)
class Note:
    type: int
    at: int  # file offset of the note header
    desc_at: int  # file offset of its descriptor
    desc_size: int


def notes(data: bytes) -> list[Note]:
    found = []
    for ph in program_headers(data):
        if ph.type != PT_NOTE:
            continue
        pos, end = ph.offset, ph.offset + ph.filesz
        while pos + 12 <= end:
            namesz, descsz, note_type = struct.unpack_from("<III", data, pos)
            desc_at = pos + 12 + ((namesz + 3) & ~3)
            found.append(Note(note_type, pos, desc_at, descsz))
            pos = desc_at + ((descsz + 3) & ~3)
    return found


def nt_file(data: bytes) -> Note:
    return next(n for n in notes(data) if n.type == NT_FILE)


class Hang(Exception):
    """The code under test ran past its time bound."""


@contextlib.contextmanager
def time_bound(seconds: float) -> Iterator[None]:
    """Raises Hang in the block when it runs longer than `seconds` (main
    thread only: SIGALRM), so a regression fails instead of stalling the run."""

    def expire(signum: int, frame: object) -> None:
        raise Hang(f"still running after {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
