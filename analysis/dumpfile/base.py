"""The one protocol every dump reader implements.

Readers (minidump, ELF core) parse untrusted files: every record is checked
against the bytes that remain, one bad record does not sink its stream and one
bad stream does not sink the dump. What could not be read is listed in
`problems`, saying what was expected and what was found.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping, Optional, Protocol, Sequence, Tuple

from analysis.values import Address, ByteSize, ForTheUser


class DumpFormatError(ForTheUser):
    """The file is not a dump we can read at all (nothing usable in it)."""


class DumpChanged(DumpFormatError):
    """The dump file changed on disk while it was open (a new dump written
    over it): what it holds now is another dump's, so nothing more is read
    from it. The message says so in the user's words."""

    @classmethod
    def sizes(cls, size_then: int, size_now: int) -> "DumpChanged":
        """The file of `size_then` bytes when opened is another of
        `size_now` bytes (or the same size, rewritten)."""
        sizes = (
            f"{size_then} bytes when opened, {size_now} now"
            if size_now != size_then
            else f"{size_then} bytes then and now, rewritten"
        )
        return cls(
            f"The dump file changed on disk while it was open ({sizes}): "
            "open it again."
        )


def check_same_file(path: str, opened: os.stat_result) -> None:
    """Raises DumpChanged when the file at `path` is no longer the one
    `opened` describes (gone, another file moved there, cut, grown or
    rewritten): what opens the path again would read another dump."""
    try:
        now = os.stat(path)
    except FileNotFoundError:
        raise DumpChanged(
            f"The dump file {path} is gone from disk since it was opened: open "
            "it again where it is now."
        ) from None
    if (now.st_dev, now.st_ino, now.st_size, now.st_mtime_ns) != (
        opened.st_dev,
        opened.st_ino,
        opened.st_size,
        opened.st_mtime_ns,
    ):
        raise DumpChanged.sizes(opened.st_size, now.st_size)


class MemoryNotInDump(LookupError):
    """A read touched an address whose bytes the dump does not hold."""

    def __init__(self, address: int, size: int) -> None:
        super().__init__(f"{size} bytes at 0x{address:x} are not in the dump")
        self.address = address
        self.size = size


@dataclass(frozen=True)
class Region:
    """One range of the address space, as the dump describes it.

    state: "commit", "reserve" or "free"; type: "image", "mapped", "private"
    or None when unknown; protect: Windows name ("PAGE_READWRITE") or Linux
    flags ("rw-p"); path: the file behind a mapping when known.
    """

    base: Address
    size: ByteSize
    state: str
    type: Optional[str]
    protect: Optional[str]
    allocation_base: Optional[Address] = None
    path: Optional[str] = None
    in_dump: bool = True


@dataclass(frozen=True)
class ThreadInfo:
    os_id: int
    teb: Optional[Address]
    stack_base: Optional[Address]
    stack_limit: Optional[Address]
    stack_pointer: Optional[Address]
    instruction_pointer: Optional[Address]
    registers: Mapping[str, int] = field(default_factory=dict, compare=False)
    name: Optional[str] = None


@dataclass(frozen=True)
class Module:
    name: str
    path: str
    base: Address
    size: ByteSize
    version: Optional[str] = None
    build_id: Optional[str] = None


class MemoryReader(Protocol):
    """What every dump reader offers.

    format: "minidump" or "elf-core"; os: "windows" or "linux";
    arch: "x86", "x64" or "arm64"; pointer_size: 4 or 8.
    """

    path: str
    format: str
    os: str
    arch: str
    pointer_size: int

    def regions(self) -> Sequence[Region]:
        ...

    def threads(self) -> Sequence[ThreadInfo]:
        ...

    def modules(self) -> Sequence[Module]:
        ...

    def read(self, address: int, size: int) -> bytes:
        """Exactly `size` bytes, or raises MemoryNotInDump (DumpChanged when
        the file changed on disk since it was opened)."""
        ...

    def held_ranges(self, address: int, size: int) -> Sequence[Tuple[int, int]]:
        """(start, size) of the pieces of [address, address+size) whose bytes
        the dump holds, in address order. Scans iterate over these, so their
        work is bounded by the file, not by the sizes its headers claim."""
        ...

    @property
    def problems(self) -> Sequence[str]:
        ...

    def check_unchanged(self) -> None:
        """Raises DumpChanged when the file at the dump's path is no longer
        the one opened (rewritten, replaced or gone)."""
        ...

    def close(self) -> None:
        ...
