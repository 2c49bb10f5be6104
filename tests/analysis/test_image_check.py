"""Module images checked against their files (`!chkimg`) on real dumps:
no false alarm on healthy scenario dumps (Linux cores, Windows dumps made
under Wine, where images are relocated), a planted zeroed page of managed
code named with its module and section, and the case the fuzz campaign
found: a zeroed page of System.Private.CoreLib after which the finalizer's
wait, and the blocked-finalizer finding, silently went away."""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

import pytest

from analysis.analyses import DIAGNOSIS, IMAGE_CHECK, STACK_WALKS, THREADS
from analysis.dumpfile import open_dump
from analysis.managed.client import engine_available
from analysis.managed.results import ManagedThread, StackFrame
from analysis.managed.stack_walks import cut_short_walks
from analysis.managed.engines import WINE64
from analysis.diagnosis import diagnose
from analysis.diagnosis.rules import Facts
from analysis.model.images import (
    DamagedPages,
    ImageCheck,
    ImageChecks,
    ImageKind,
    ImageState,
)
from analysis.model.threads import WaitTarget
from analysis.model.vocab import ManagedFrameKind, RowKind
from analysis.native.image_check import AFFECTS, UNDETECTABLE, check_images
from analysis.values import Address, ByteSize
from analysis.report import all_problems
from analysis.session import DumpSession
from scenarios.dumps import ScenarioDump, ensure_dump
from tests.analysis.metadata import method_def_rows, string_offset
from tests.builders import finalizer_queue, managed_thread, thread_view, type_count
from tests.analysis.test_fuzz_dumps import Run, parse, run_report, verdict

PAGE = 0x1000
CORELIB = "System.Private.CoreLib.dll"
LINUX_DUMPS = [
    ("healthy", "net10", "heap"),
    ("healthy", "net8", "heap"),
    ("blocked-finalizer", "net10", "heap"),
    ("deadlock", "net8", "heap"),
]
WINDOWS_DUMPS = [
    ("healthy", "win-net10", "full"),
    ("blocked-finalizer", "win-net8", "full"),
]
# The pages of System.Private.CoreLib whose zeroing in the blocked-finalizer
# core leaves the finalizer's Monitor frames unnamed, so its wait on the
# monitor is not seen and the blocked-finalizer finding goes: found by
# zeroing the image pages the core holds, in halves (the fuzz campaign met
# the same class). They hold Monitor.Enter_Slowpath's MethodDef row and the
# "System.Threading" namespace string.
SILENCING = {
    "MethodDef row of Monitor.Enter_Slowpath": lambda data: method_def_rows(
        data, "Enter_Slowpath"
    )[0],
    "#Strings page of System.Threading": lambda data: string_offset(
        data, "System.Threading"
    ),
}
# Those after which the walk cannot name the frames at all.
UNNAMED_FRAMES = {"MethodDef row of Monitor.Enter_Slowpath"}


def checks_of(dump: ScenarioDump) -> ImageChecks:
    with open_dump(str(dump.path)) as reader:
        return check_images(reader)


def assert_no_false_alarm(checks: ImageChecks, runtime_file: str) -> None:
    assert not checks.damaged, [(m.module, m.damaged[:3]) for m in checks.damaged]
    by_name = {}
    for m in checks.modules:
        if m.state is ImageState.CHECKED:
            by_name.setdefault(m.module, m)
        else:
            assert m.reason, m
    # The two the DAC reads most were compared, not skipped.
    assert by_name[runtime_file].kind is ImageKind.RUNTIME
    assert by_name[runtime_file].compared > 0
    assert by_name[CORELIB].kind is ImageKind.MANAGED
    assert by_name[CORELIB].compared > 0


@pytest.mark.parametrize("name,runtime,kind", LINUX_DUMPS)
def test_healthy_linux_cores_have_no_damaged_image(name, runtime, kind):
    checks = checks_of(ensure_dump(name, runtime, kind))
    assert_no_false_alarm(checks, "libcoreclr.so")
    # Every ELF and managed module of a core comes from the host's runtime
    # and libraries, so each is checked.
    assert all(m.state is ImageState.CHECKED for m in checks.modules), [
        (m.module, m.reason) for m in checks.modules if m.state != "checked"
    ]


@pytest.mark.skipif(
    not os.access(WINE64, os.X_OK),
    reason="the Windows scenarios run under Wine: install wine64",
)
@pytest.mark.parametrize("name,runtime,kind", WINDOWS_DUMPS)
def test_relocated_windows_images_have_no_false_alarm(name, runtime, kind):
    dump = ensure_dump(name, runtime, kind)
    checks = checks_of(dump)
    assert_no_false_alarm(checks, "coreclr.dll")
    coreclr = next(m for m in checks.modules if m.module == "coreclr.dll")
    # Loaded far from its preferred base: the relocations were applied, and
    # left out of the comparison.
    with open(coreclr.file, "rb") as f:
        header = f.read(PAGE)
    pe = struct.unpack_from("<I", header, 0x3C)[0]
    assert struct.unpack_from("<Q", header, pe + 24 + 24)[0] != int(coreclr.base)
    # Wine's own DLLs are named in the dump by C:\windows paths, not here.
    ntdll = next(m for m in checks.modules if m.module == "ntdll.dll")
    assert ntdll.state is ImageState.NOT_CHECKED
    assert "not at hand" in ntdll.reason


def held_corelib_page(path: Path, writable: bool) -> tuple[int, int]:
    """(address, core file offset) of a page of CoreLib's loaded image the
    core holds, in its code (executable, read-only) or in a writable
    mapping, whose file bytes are not mostly zero."""
    with open_dump(str(path)) as reader:
        mappings = [m for m in reader.file_mappings() if m.path.endswith(CORELIB)]
        with open(mappings[0].path, "rb") as f:
            image = f.read()
        for s in reader.segments():
            kind = 0x2 if writable else 0x1
            if not s.flags & kind or not s.filesz:
                continue
            for m in mappings:
                start, end = max(m.start, s.vaddr), min(m.end, s.vaddr + s.filesz)
                for page in range(start, end, PAGE):
                    at = m.offset + page - m.start
                    # Past the first page: that one holds the headers.
                    if at >= PAGE and image[at : at + PAGE].count(0) < PAGE // 2:
                        return page, s.offset + page - s.vaddr
    raise LookupError("the core holds no such page of CoreLib")


def zeroed_copy(source: Path, tmp: Path, offsets: tuple[int, ...]) -> Path:
    copy = tmp / source.name
    shutil.copyfile(source, copy)
    with copy.open("r+b") as f:
        for at in offsets:
            f.seek(at)
            f.write(bytes(PAGE))
    return copy


def test_a_zeroed_page_of_corelib_is_named_with_its_section(tmp_path):
    dump = ensure_dump("blocked-finalizer", "net10", "heap")
    page, at = held_corelib_page(dump.path, writable=False)
    with open_dump(str(zeroed_copy(dump.path, tmp_path, (at,)))) as reader:
        checks = check_images(reader)
    (damaged,) = checks.damaged
    assert damaged.module == CORELIB
    assert damaged.kind is ImageKind.MANAGED
    (pages,) = damaged.damaged
    assert (int(pages.address), int(pages.size)) == (page, PAGE)
    assert pages.part == ".text"
    assert "stack walks" in damaged.affects


def test_a_zeroed_header_is_named_not_taken_for_another_build(tmp_path):
    dump = ensure_dump("blocked-finalizer", "net10", "heap")
    with open_dump(str(dump.path)) as reader:
        module = next(m for m in reader.modules() if m.name == CORELIB)
        segment = next(
            s for s in reader.segments() if s.vaddr <= module.base < s.vaddr + s.filesz
        )
    at = segment.offset + int(module.base) - segment.vaddr
    with open_dump(str(zeroed_copy(dump.path, tmp_path, (at,)))) as reader:
        checks = check_images(reader)
    (damaged,) = checks.damaged
    assert (damaged.module, int(damaged.base)) == (CORELIB, int(module.base))
    assert [(int(p.address), p.part) for p in damaged.damaged] == [
        (int(module.base), "headers")
    ]


def test_a_zeroed_writable_page_is_beyond_the_check_and_says_so(tmp_path):
    dump = ensure_dump("blocked-finalizer", "net10", "heap")
    _page, at = held_corelib_page(dump.path, writable=True)
    with open_dump(str(zeroed_copy(dump.path, tmp_path, (at,)))) as reader:
        checks = check_images(reader)
    assert not checks.damaged
    assert "Writable pages" in checks.undetectable


def silencing_copy(dump: ScenarioDump, tmp: Path, anchor: str) -> Path:
    """A copy of the core with the page of CoreLib's loaded image that
    holds `anchor` (a key of SILENCING) zeroed."""
    with open(dump.runtime_dir / CORELIB, "rb") as f:
        file_offset = SILENCING[anchor](f.read()) & ~(PAGE - 1)
    with open_dump(str(dump.path)) as reader:
        image = next(
            m
            for m in reader.file_mappings()
            if m.path.endswith(CORELIB)
            and m.offset <= file_offset < m.offset + (m.end - m.start)
            and any(
                s.vaddr <= m.start < s.vaddr + s.filesz and s.flags & 0x1
                for s in reader.segments()
            )
        )
        address = image.start + file_offset - image.offset
        segment = next(
            s for s in reader.segments() if s.vaddr <= address < s.vaddr + s.filesz
        )
    return zeroed_copy(dump.path, tmp, (segment.offset + address - segment.vaddr,))


@pytest.mark.skipif(not engine_available(), reason="engine not built")
@pytest.mark.parametrize("anchor", sorted(SILENCING))
def test_a_zeroed_corelib_page_that_hides_the_blocked_finalizer_is_named(
    tmp_path, anchor
):
    dump = ensure_dump("blocked-finalizer", "net10", "heap")
    damaged = silencing_copy(dump, tmp_path, anchor)
    with DumpSession(damaged, index=False) as session:
        outcomes = session.run_all()
        findings = session.result(DIAGNOSIS).findings
        problems = all_problems(session.info(), outcomes)
        checks = session.result(IMAGE_CHECK)
        finalizer = next(t for t in session.result(THREADS) if t.is_finalizer)
        walks = session.result(STACK_WALKS)
    rules = {f.rule for f in findings}
    # The damage this test is about: the finalizer's wait, and with it the
    # finding, are gone without an error...
    assert finalizer.waits_for is None
    assert "blocked-finalizer" not in rules
    # ...and the report says why: CoreLib's page, named in problems and in a
    # finding that says stacks may be cut short.
    (module,) = checks.damaged
    assert module.module == CORELIB
    (pages,) = module.damaged
    assert int(pages.size) == PAGE
    assert any(
        p.startswith(f"Module images: {CORELIB} at 0x{int(module.base):x}")
        and f"0x{int(pages.address):x}" in p
        for p in problems
    ), problems
    image = next(f for f in findings if f.rule == "image-damaged")
    assert "stack walk" in image.statement
    if anchor not in UNNAMED_FRAMES:
        # The frames are named (wrongly: their namespace is gone), so only
        # the image check can tell.
        assert walks == ()
        return
    # The walks themselves say they were cut short, thread by thread (the
    # finalizer's, and others' through the same methods).
    walk = next(w for w in walks if w.is_finalizer)
    assert walk.os_id == finalizer.os_id
    assert walk.modules == (CORELIB,) and walk.unresolved >= 1
    assert any(
        p.startswith("Managed stack walks: the finalizer thread") for p in problems
    ), problems


@pytest.mark.skipif(not engine_available(), reason="engine not built")
def test_the_fuzz_verdict_passes_the_silenced_finalizer_because_problems_say_why(
    tmp_path,
):
    dump = ensure_dump("blocked-finalizer", "net10", "heap")
    baseline_copy = tmp_path / "baseline" / dump.path.name
    baseline_copy.parent.mkdir()
    shutil.copyfile(dump.path, baseline_copy)
    baseline = run_report(baseline_copy)
    assert baseline.returncode == 0, baseline.stderr
    before = parse(baseline.stdout)
    assert "The finalizer thread is blocked" in str(before["findings"])
    assert not any(
        p.startswith(("Module images", "Managed stack walks"))
        for p in before["problems"]
    ), before["problems"]
    assert before["stack_walks"] == []
    damaged = silencing_copy(dump, tmp_path, sorted(SILENCING)[0])
    run = run_report(damaged)
    kind, why = verdict(Run(run.returncode, run.stdout, run.stderr, 0.0), before)
    assert (kind, why) == ("pass", "report changed, problems say why")


def damaged_image(module: str, kind: ImageKind) -> ImageCheck:
    return ImageCheck(
        module,
        f"/runtime/{module}",
        Address(0x7F0000000000),
        ImageState.DAMAGED,
        f"/runtime/{module}",
        ByteSize(64 * PAGE),
        (DamagedPages(Address(0x7F0000010000), ByteSize(PAGE), ".text", 3000),),
        AFFECTS[kind],
        kind=kind,
    )


def blocked_finalizer_facts(*damaged: ImageCheck) -> Facts:
    return Facts(
        threads=(
            thread_view(10, name="LockHolder"),
            thread_view(
                11, finalizer=True, waits=WaitTarget(0x7000, "System.Object", 10)
            ),
        ),
        finalizer=finalizer_queue((type_count("Font", 500, 500 * 40),)),
        heap=None,
        native_heaps=(),
        images=ImageChecks(damaged, UNDETECTABLE),
    )


def test_findings_from_stacks_are_marked_when_a_module_the_walk_reads_is_damaged():
    findings = diagnose(
        blocked_finalizer_facts(damaged_image(CORELIB, ImageKind.MANAGED))
    )
    by_rule = {f.rule: f for f in findings}
    assert (
        "Module images the stack walks read are damaged in this dump: "
        f"{CORELIB}." in by_rule["blocked-finalizer"].statement
    )
    image = by_rule["image-damaged"]
    assert image.severity == "warning"
    assert [(e.row, e.key) for e in image.evidence] == [(RowKind.MODULE, CORELIB)]
    assert "0x7f0000010000 in .text" in image.statement


def test_a_damaged_native_module_marks_no_stack_finding():
    findings = diagnose(
        blocked_finalizer_facts(damaged_image("libssl.so.3", ImageKind.NATIVE))
    )
    by_rule = {f.rule: f for f in findings}
    assert "Module images" not in by_rule["blocked-finalizer"].statement
    assert "libssl.so.3" in by_rule["image-damaged"].statement


def test_no_damage_no_image_finding():
    findings = diagnose(blocked_finalizer_facts())
    assert [f.rule for f in findings] == ["blocked-finalizer"]


def clr_thread(os_id: int, *names: str, finalizer: bool = False) -> ManagedThread:
    frames = tuple(
        StackFrame(
            ManagedFrameKind.RUNTIME if n.startswith("[") else ManagedFrameKind.MANAGED,
            Address(0x7F0000001000 + i),
            Address(0x7FFF00000000 + 0x100 * i),
            n,
            None if n.startswith(("[", "0x")) else CORELIB,
        )
        for i, n in enumerate(names)
    )
    return managed_thread(os_id, frames, os_id, finalizer, lock_count=-1)


def test_walks_with_unnamed_frames_are_named_thread_by_thread():
    healthy = clr_thread(
        5,
        "[InlinedCallFrame]",
        "System.Threading.Monitor.Enter_Slowpath(System.Object)",
        "System.GC.RunFinalizers()",
        finalizer=True,
    )
    cut = clr_thread(
        6,
        "[InlinedCallFrame]",
        f"{CORELIB}!Unknown",
        "0x7f0000001234",
        "Program.Main()",
    )
    (walk,) = cut_short_walks((healthy, cut))
    assert (walk.os_id, walk.unresolved, walk.first, walk.frames) == (6, 2, 1, 4)
    assert walk.modules == (CORELIB,)
    assert "could not name 2 of its 4 frames (the first at #1" in walk.text
