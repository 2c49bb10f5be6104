"""Fuzzing `main.py report` with damaged real dumps: seeded truncations and
corruptions of scenario cores (real .NET processes) and of the shared
Windows minidumps, each run the way a user runs it, as a subprocess.

Every case asserts what a user is owed on a bad day:
- no hang: the report ends within its time bound;
- no traceback: exit 0 with a well-formed JSON report, or exit 3 with one
  line on stderr saying why;
- the input is unchanged (its hash before and after);
- a report that differs from the undamaged dump's (counts of threads,
  modules, managed types and objects, the findings) says why in `problems`.

The normal run takes a few dozen cases; DUMPSCOPE_FUZZ=long runs the
campaign's size (120 truncations, 300 corruptions); DUMPSCOPE_FUZZ_SEED
changes the seed. Reports are computed up front, a few at a time, and each
case then checks its own.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from tests.analysis.corrupt import PHDR, program_headers
from tests.paths import MINIDUMPS

ROOT = Path(__file__).resolve().parents[2]
LONG = os.environ.get("DUMPSCOPE_FUZZ") == "long"
SEED = int(os.environ.get("DUMPSCOPE_FUZZ_SEED", "11"))
REPORT_TIMEOUT = 240.0
WORKERS = max(1, min(3, (os.cpu_count() or 2)))

# Cores of real .NET processes (heap dumps, as users take them) and the
# shared minidumps; the long run uses every scenario.
CORE_SEEDS = (
    ("deadlock", "event-leak", "loh-fragmentation", "healthy", "blocked-finalizer")
    if LONG
    else ("deadlock", "event-leak")
)
MINIDUMP_SEEDS = (
    sorted(p.name for p in MINIDUMPS.glob("*.dmp"))
    if LONG
    else ["minidump2.dmp", "linux_raise_sigabrt.dmp", "tiny-exe-with-cet-xsave.dmp"]
)

# Cases per damage class and seed kind: (cores, minidumps).
PER_CLASS = {
    "truncate": (72, 48) if LONG else (3, 2),
    "zero-page": (50, 25) if LONG else (2, 2),
    "zero-pointer": (50, 25) if LONG else (3, 2),
    "flip-bytes": (50, 25) if LONG else (2, 2),
    "header-field": (50, 25) if LONG else (3, 3),
}


# --- damage ---------------------------------------------------------------------


def truncate(data: bytearray, rng: random.Random) -> str:
    # Half the cuts land in the first 64 KB, where headers, notes and
    # directories are; the rest anywhere.
    limit = min(len(data) - 1, 0x10000) if rng.random() < 0.5 else len(data) - 1
    cut = rng.randrange(1, limit)
    del data[cut:]
    return f"cut at {cut}"


def zero_page(data: bytearray, rng: random.Random) -> str:
    at = rng.randrange(0, max(len(data) // 4096, 1)) * 4096
    data[at : at + 4096] = bytes(len(data[at : at + 4096]))
    return f"4 KB zeroed at {at:#x}"


def zero_pointer(data: bytearray, rng: random.Random) -> str:
    at = rng.randrange(0, max(len(data) // 8, 1)) * 8
    data[at : at + 8] = bytes(len(data[at : at + 8]))
    return f"8 bytes zeroed at {at:#x}"


def flip_bytes(data: bytearray, rng: random.Random) -> str:
    spots = sorted(rng.randrange(len(data)) for _ in range(16))
    for at in spots:
        data[at] ^= 1 << rng.randrange(8)
    return f"16 bits flipped from {spots[0]:#x} to {spots[-1]:#x}"


def header_field(data: bytearray, rng: random.Random) -> str:
    """One size, count or offset field of the file's own structure set to a
    random value: a program header field of a core, a stream directory
    entry or the stream count of a minidump."""
    value = rng.choice([0, 0xFFFFFFFF, 1 << 40, rng.getrandbits(64)])
    if data[:4] == b"\x7fELF":
        header = rng.choice(program_headers(bytes(data[:0x100000])))
        field = rng.choice(["p_offset", "p_vaddr", "p_filesz", "p_memsz"])
        at = (
            header.at
            + {"p_offset": 8, "p_vaddr": 16, "p_filesz": 32, "p_memsz": 40}[field]
        )
        struct.pack_into("<Q", data, at, value)
        assert PHDR.size == 56
        return f"program header {header.index} {field} = {value:#x}"
    count, directory = struct.unpack_from("<II", data, 8)
    value &= 0xFFFFFFFF
    if count == 0 or rng.random() < 0.2:
        struct.pack_into("<I", data, 8, value)
        return f"stream count = {value:#x}"
    index = rng.randrange(min(count, 64))
    field = rng.choice(["DataSize", "Rva"])
    at = directory + 12 * index + (4 if field == "DataSize" else 8)
    if at + 4 > len(data):
        struct.pack_into("<I", data, 8, value)
        return f"stream count = {value:#x}"
    struct.pack_into("<I", data, at, value)
    return f"stream {index} {field} = {value:#x}"


DAMAGE: dict[str, Callable[[bytearray, random.Random], str]] = {
    "truncate": truncate,
    "zero-page": zero_page,
    "zero-pointer": zero_pointer,
    "flip-bytes": flip_bytes,
    "header-field": header_field,
}


# --- cases ----------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    seed: str  # "core:<scenario>" or "minidump:<file>"
    damage: str
    number: int

    @property
    def rng(self) -> random.Random:
        return random.Random(f"{SEED}:{self.id}")


def cases() -> list[Case]:
    found = []
    for damage, (per_core, per_minidump) in PER_CLASS.items():
        for kind, names, per in (
            ("core", CORE_SEEDS, per_core),
            ("minidump", MINIDUMP_SEEDS, per_minidump),
        ):
            for n in range(per):
                seed = f"{kind}:{names[n % len(names)]}"
                found.append(Case(f"{damage}-{seed}-{n}", seed, damage, n))
    return found


CASES = cases()


def seed_path(seed: str) -> Path:
    kind, name = seed.split(":", 1)
    if kind == "minidump":
        return MINIDUMPS / name
    from scenarios.dumps import ensure_dump

    return ensure_dump(name, "net10", "heap").path


@dataclass(frozen=True)
class Run:
    returncode: Optional[int]  # None: it did not end within the time bound
    stdout: str
    stderr: str
    seconds: float
    hash_before: str = ""
    hash_after: str = ""
    damage: str = ""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run_report(dump: Path) -> Run:
    started = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, str(ROOT / "main.py"), "report", str(dump)],
            capture_output=True,
            text=True,
            timeout=REPORT_TIMEOUT,
            cwd=ROOT,
        )
    except subprocess.TimeoutExpired as e:
        return Run(None, "", str(e.stderr or ""), time.monotonic() - started)
    return Run(done.returncode, done.stdout, done.stderr, time.monotonic() - started)


def run_case(case: Case, folder: Path) -> Run:
    data = bytearray(seed_path(case.seed).read_bytes())
    what = DAMAGE[case.damage](data, case.rng)
    dump = folder / f"{case.id}.{'core' if case.seed.startswith('core') else 'dmp'}"
    dump.write_bytes(bytes(data))
    del data
    before = sha256(dump)
    run = run_report(dump)
    after = sha256(dump)
    dump.unlink()
    return Run(run.returncode, run.stdout, run.stderr, run.seconds, before, after, what)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, concurrent.futures.Future[Run]]:
    """Each case's run, started a few at a time; a case that cannot even be
    made fails alone, in its own test."""
    folder = tmp_path_factory.mktemp("fuzz")
    with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
        futures = {c.id: pool.submit(run_case, c, folder) for c in CASES}
        concurrent.futures.wait(futures.values())
    return futures


@pytest.fixture(scope="module")
def baselines(tmp_path_factory) -> dict[str, dict[str, Any]]:
    """The undamaged dumps' reports, run on copies (never on the cache)."""
    folder = tmp_path_factory.mktemp("fuzz-baseline")
    seeds = sorted({c.seed for c in CASES})

    def one(seed: str) -> dict[str, Any]:
        copy = folder / seed.replace(":", "-")
        shutil.copyfile(seed_path(seed), copy)
        run = run_report(copy)
        assert run.returncode == 0, f"{seed}: {run.stderr}"
        return parse(run.stdout)

    with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
        return dict(zip(seeds, pool.map(one, seeds)))


def parse(text: str) -> dict[str, Any]:
    """The report as strict JSON: NaN and Infinity are not JSON."""

    def refuse(name: str) -> Any:
        raise ValueError(f"{name} in the report")

    report = json.loads(text, parse_constant=refuse)
    assert isinstance(report, dict)
    for key in ("dump", "modules", "threads", "managed", "findings", "problems"):
        assert key in report, f"no {key!r} in the report"
    assert all(isinstance(p, str) and p for p in report["problems"])
    return report


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """What a user reads off the report: its counts and its findings."""
    managed = report.get("managed") or {}
    heap = managed.get("heap") or {}
    return {
        "threads": len(report.get("threads") or []),
        "modules": len(report.get("modules") or []),
        "managed available": managed.get("available"),
        "managed types": len(heap.get("types") or []),
        "managed objects": heap.get("total_objects"),
        "managed bytes": heap.get("total_bytes"),
        "findings": sorted(f["title"] for f in report.get("findings") or []),
    }


NATIVE = ("threads", "modules")
ENGINE_SILENT = (
    "a managed result changes without a word: the heap walk, the graph and the "
    "native-pointer walk report the damage they walk around, and read-only module "
    "pages are checked against their files, but damage in writable memory outside "
    "the GC heap (the runtime's data, its loader heaps) is not detected"
)
MANAGED_NOT_IN_PROBLEMS = (
    "the managed analysis failed and its reason is in `managed.reason` but not "
    "in `problems`: every failure listed in `problems` is the registry "
    "redesign of issue 11"
)


# --- the cases --------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_damaged_dump_is_reported_or_refused_and_never_silently_wrong(
    case, runs, baselines
):
    kind, text = verdict(runs[case.id].result(), baselines[case.seed])
    if kind == "fail":
        pytest.fail(text)
    if kind == "xfail":
        pytest.xfail(text)


def verdict(run: Run, baseline: dict[str, Any]) -> tuple[str, str]:
    """("pass" | "fail" | "xfail", why) for one damaged dump's run."""
    where = run.damage
    if run.returncode is None:
        return "fail", f"{where}: no report in {REPORT_TIMEOUT:g} s"
    if "Traceback" in run.stderr:
        return "fail", f"{where}: {run.stderr}"
    if run.hash_before != run.hash_after:
        return "fail", f"{where}: the input changed"
    if run.returncode not in (0, 3):
        return "fail", f"{where}: exit {run.returncode}: {run.stderr}"
    if run.returncode == 3:
        lines = run.stderr.strip().splitlines()
        if len(lines) == 1 and "cannot read" in lines[0]:
            return "pass", "refused with one line"
        return "fail", f"{where}: exit 3 with {lines}"
    try:
        report = parse(run.stdout)
    except (ValueError, AssertionError) as e:
        return "fail", f"{where}: the report is not well formed: {e}"
    before, after = summary(baseline), summary(report)
    changed = [key for key in before if before[key] != after[key]]
    said = set(report["problems"]) - set(baseline["problems"])
    if not changed:
        return "pass", "report unchanged"
    if said:
        return "pass", "report changed, problems say why"
    detail = (
        f"{where}: {', '.join(f'{k} {before[k]!r} -> {after[k]!r}' for k in changed)}"
    )
    if any(key in NATIVE for key in changed):
        return "fail", f"native result changed silently: {detail}"
    if after["managed available"] is False and before["managed available"]:
        return "xfail", f"{MANAGED_NOT_IN_PROBLEMS} ({detail})"
    return "xfail", f"{ENGINE_SILENT} ({detail})"


def test_the_fuzz_run_covers_every_class_and_both_kinds_of_dump():
    kinds = {(c.damage, c.seed.split(":")[0]) for c in CASES}
    assert kinds == {(d, k) for d in DAMAGE for k in ("core", "minidump")}
    assert len(CASES) >= (400 if LONG else 20)
