"""The results cache: the outcomes of a dump's analyses, kept in the user's
cache folder so that reopening the dump shows them at once.

An entry is keyed by the dump's identity (resolved path, size, modification
time in nanoseconds, a SHA-256 of its first 64 KiB), by the version of the
code that computed it (a hash of the analysis/ sources and the identity of
the built engines) and by how the engine was asked to read the dump (DAC,
DAC folder, ...): a changed dump, newer code or other options find no entry
and recompute. A kept outcome that rests on more than the dump (the image
check reads module files of this machine) is recomputed when its
Analysis.still_valid says those changed, and so is what needs or uses it.
Never beside the dump: dumps are read-only and may sit on read-only media.

The folder is $DUMPSCOPE_RESULTS, else $DUMPSCOPE_CACHE/results, else
~/.cache/dumpscope/results (the engine's graph index lives beside it, in
.../index), capped at $DUMPSCOPE_RESULTS_MAX_BYTES (default 1 GiB) by
deleting the least recently used entries first.

Serialization is pickle, of our own frozen result dataclasses: it keeps
their exact types (enums, Address, ByteSize, typed gaps) without a second
hand-written schema for each result, and it is an order of magnitude faster
to load than JSON rebuilt into those types. Pickle can run code while it
loads, so an entry is trusted only as far as this: the folder is the user's
own (whoever can write there can already change the user's shell start-up),
a SHA-256 of the payload must match (damage, a cut-short write), the
payload names its own key (a file copied under another entry's name), and
the unpickler resolves only DumpScope's own classes and a few plain
builtins. Anything else is ignored, deleted and recomputed, never an error
for the user.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import io
import logging
import os
import pickle
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence

from analysis.analyses import Analysis
from analysis.managed.client import ErrorCode
from analysis.managed.engines import ENGINE, ENGINE_OUT
from analysis.model.outcome import Done, Outcome, Unavailable

log = logging.getLogger(__name__)

# Bumped when the file layout changes (the code version covers the contents).
FORMAT = b"DumpScope results 1\n"
EXTENSION = ".results"
HEADER_BYTES = 64 * 1024
DEFAULT_MAX_BYTES = 1 << 30
# A temporary file older than this was left by a process that died writing it.
STALE_TEMPORARY_SECONDS = 3600.0
ANALYSIS_ROOT = Path(__file__).resolve().parent
# "Not available" for a reason of the dump itself; any other engine reason
# (no DAC, no engine or Wine here, a DAC not trusted) may be gone next time.
LASTING_UNAVAILABLE_CODES = frozenset(
    {None, ErrorCode.NO_RUNTIME, ErrorCode.NO_HEAP_MEMORY}
)
# The classes a cached outcome may be made of, besides DumpScope's own.
PLAIN_BUILTINS = frozenset({"frozenset", "set", "complex", "bytearray", "slice"})


def cache_folder() -> Path:
    folder = os.environ.get("DUMPSCOPE_RESULTS")
    if folder:
        return Path(folder).expanduser()
    root = os.environ.get("DUMPSCOPE_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "dumpscope"
    return base / "results"


def cache_cap() -> int:
    try:
        cap = int(os.environ.get("DUMPSCOPE_RESULTS_MAX_BYTES", ""))
    except ValueError:
        return DEFAULT_MAX_BYTES
    return cap if cap >= 0 else DEFAULT_MAX_BYTES


@dataclass(frozen=True)
class DumpIdentity:
    """What makes a dump file the same dump as last time."""

    path: str
    size: int
    mtime_ns: int
    header_sha256: str

    @staticmethod
    def of(path: str | Path) -> "DumpIdentity":
        resolved = Path(path).resolve()
        with open(resolved, "rb") as dump:
            status = os.fstat(dump.fileno())
            header = dump.read(HEADER_BYTES)
        return DumpIdentity(
            str(resolved),
            status.st_size,
            status.st_mtime_ns,
            hashlib.sha256(header).hexdigest(),
        )


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """A hash of every analysis/ source and of the built engines (their
    size and modification time: a rebuild changes both), so that results
    of older code are never shown."""
    digest = hashlib.sha256()
    for source in sorted(ANALYSIS_ROOT.rglob("*.py")):
        digest.update(str(source.relative_to(ANALYSIS_ROOT)).encode() + b"\0")
        digest.update(source.read_bytes() + b"\0")
    engines = [ENGINE] + sorted(ENGINE_OUT.glob("*/DumpScope.Engine.exe"))
    for engine in engines:
        try:
            status = engine.stat()
        except OSError:
            continue
        name = engine.relative_to(ENGINE_OUT)
        digest.update(f"{name}\0{status.st_size}\0{status.st_mtime_ns}\0".encode())
    return digest.hexdigest()


def entry_key(identity: DumpIdentity, options: str) -> str:
    """The name of a dump's entry: its identity, the code version and how
    the engine reads it (options: a stable text of those settings)."""
    text = "\n".join(
        (
            FORMAT.decode().strip(),
            code_version(),
            identity.path,
            str(identity.size),
            str(identity.mtime_ns),
            identity.header_sha256,
            options,
        )
    )
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def cacheable(
    analyses: Sequence[Analysis[object]],
    outcomes: Mapping[Analysis[object], Outcome[object]],
) -> dict[str, Outcome[object]]:
    """The outcomes worth keeping, by analysis id: done, or not available
    for a reason of the dump itself; and only when everything the analysis
    needs and uses was kept too, since an outcome computed beside a failure
    or a missing DAC would be different next time. Failed and cancelled
    ones are retried next time. `analyses` in declared order (each after
    what it needs and uses)."""
    kept: dict[str, Outcome[object]] = {}
    for analysis in analyses:
        outcome = outcomes.get(analysis)
        lasting = isinstance(outcome, Done) or (
            isinstance(outcome, Unavailable)
            and outcome.code in LASTING_UNAVAILABLE_CODES
        )
        before = analysis.needs + analysis.uses
        if lasting and outcome is not None and all(b.id in kept for b in before):
            kept[analysis.id] = outcome
    return kept


class _EnumsByValue(pickle.Pickler):
    """Saves an enum member as its class called with its value, rather than
    as getattr(class, name): the loader then needs to call classes only."""

    def reducer_override(self, obj: object) -> object:
        if isinstance(obj, enum.Enum):
            return type(obj), (obj.value,)
        return NotImplemented


class _OwnClassesOnly(pickle.Unpickler):
    """Resolves classes only (a function named in a damaged or planted
    payload would be called): DumpScope's own and a few plain builtins."""

    def find_class(self, module: str, name: str) -> object:
        own = module == "analysis" or module.startswith("analysis.")
        plain = module == "builtins" and name in PLAIN_BUILTINS
        if (own or plain) and "." not in name:
            found = super().find_class(module, name)
            if isinstance(found, type):
                return found
        raise pickle.UnpicklingError(f"{module}.{name} is not a result type")


class ResultsCache:
    """One folder of entries, each the cacheable outcomes of one dump (by
    analysis id)."""

    def __init__(self, folder: Optional[Path] = None, max_bytes: Optional[int] = None):
        self.folder = folder if folder is not None else cache_folder()
        self.max_bytes = max_bytes if max_bytes is not None else cache_cap()

    def path_of(self, key: str) -> Path:
        return self.folder / (key + EXTENSION)

    def load(self, key: str) -> Optional[dict[str, Outcome[object]]]:
        """The saved outcomes of this entry; None when there is none or it
        cannot be trusted (then it is deleted, and recomputed by the
        caller)."""
        path = self.path_of(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as error:
            log.info("results cache: cannot read %s (%s); recomputing", path, error)
            return None
        outcomes = self._decode(data, key)
        if outcomes is None:
            log.info("results cache: %s is damaged or stale; recomputing", path)
            self._delete(path)
            return None
        try:
            # Marks the entry as recently used, for the eviction order.
            os.utime(path)
        except OSError:
            pass
        return outcomes

    @staticmethod
    def _decode(data: bytes, key: str) -> Optional[dict[str, Outcome[object]]]:
        size = len(FORMAT) + hashlib.sha256().digest_size
        if len(data) < size or not data.startswith(FORMAT):
            return None
        checksum, payload = data[len(FORMAT) : size], data[size:]
        if hashlib.sha256(payload).digest() != checksum:
            return None
        try:
            saved = _OwnClassesOnly(io.BytesIO(payload)).load()
        except Exception:  # a payload that passed its checksum but not ours
            return None
        if (
            not isinstance(saved, tuple)
            or len(saved) != 2
            or saved[0] != key
            or not isinstance(saved[1], dict)
        ):
            return None
        outcomes: dict[str, Outcome[object]] = saved[1]
        if not all(
            isinstance(k, str) and isinstance(v, (Done, Unavailable))
            for k, v in outcomes.items()
        ):
            return None
        return outcomes

    def save(self, key: str, outcomes: Mapping[str, Outcome[object]]) -> None:
        """Writes the entry through a temporary file renamed over the real
        name: a reader sees the old entry or the new one, never half of
        one, and two processes saving the same dump each write a whole
        file (the last rename wins). Then evicts down to the cap. A failure
        costs only the next open's time."""
        path = self.path_of(key)
        buffer = io.BytesIO()
        try:
            _EnumsByValue(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(
                (key, dict(outcomes))
            )
        except Exception as error:  # a result that cannot be saved: not kept
            log.warning("results cache: cannot save %s: %s", path, error)
            return
        payload = buffer.getvalue()
        data = FORMAT + hashlib.sha256(payload).digest() + payload
        if len(data) > self.max_bytes:
            return
        temporary: Optional[str] = None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(
                dir=self.folder, prefix=key + ".", suffix=".tmp"
            )
            with os.fdopen(handle, "wb") as out:
                out.write(data)
            os.replace(temporary, path)
            temporary = None
            self.evict(keep=path)
        except OSError as error:
            log.warning("results cache: could not save %s: %s", path, error)
        finally:
            if temporary is not None:
                self._delete(Path(temporary))

    def evict(self, keep: Optional[Path] = None) -> None:
        """Deletes the least recently used entries until the folder is
        under its cap (never `keep`, the entry just written), and the
        temporary files of writers that died."""
        entries: list[tuple[float, int, Path]] = []
        now = time.time()
        try:
            names = list(self.folder.iterdir())
        except OSError:
            return
        for path in names:
            try:
                status = path.stat()
            except OSError:
                continue  # another process evicted it
            if path.name.endswith(".tmp"):
                if now - status.st_mtime > STALE_TEMPORARY_SECONDS:
                    self._delete(path)
                continue
            if path.suffix == EXTENSION:
                entries.append((status.st_mtime, status.st_size, path))
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries):
            if total <= self.max_bytes:
                break
            if path == keep:
                continue
            self._delete(path)
            total -= size

    @staticmethod
    def _delete(path: Path) -> None:
        try:
            path.unlink()
        except OSError:
            pass


__all__ = [
    "DumpIdentity",
    "ResultsCache",
    "cache_cap",
    "cache_folder",
    "cacheable",
    "code_version",
    "entry_key",
]
