"""`main.py report`: the headless report a user scripts against."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest
from scenarios.dumps import ensure_dump, ensure_stages
from tests.paths import MINIDUMPS

ROOT = Path(__file__).resolve().parents[2]
EXPECTED = {e["file"]: e for e in json.loads((MINIDUMPS / "expected.json").read_text())}


def report(
    *args: str, env: Optional[dict[str, str]] = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "report", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env=env,
    )


def test_windows_minidump_report_has_the_documented_sections():
    run = report(str(MINIDUMPS / "tiny-exe-with-cet-xsave.dmp"))
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    assert data["dump"]["format"] == "minidump"
    assert data["dump"]["os"] == "windows"
    assert data["dump"]["arch"] == "x64"
    assert data["dump"]["pointer_size"] == 8
    expected = EXPECTED["tiny-exe-with-cet-xsave.dmp"]
    assert [(m["base"], m["size"]) for m in data["modules"]] == [
        (m["base"], m["size"]) for m in expected["modules"]
    ]
    assert [t["os_id"] for t in data["threads"]] == [
        t["tid"] for t in expected["threads"]
    ]
    assert [t["teb"] for t in data["threads"]] == [
        t["teb"] for t in expected["threads"]
    ]
    assert data["managed"]["available"] is False
    assert "No .NET runtime" in data["managed"]["reason"]
    for key in ("memory", "native_heaps", "findings", "problems"):
        assert key in data


def test_text_report_names_the_dump_and_its_threads():
    run = report(str(MINIDUMPS / "tiny-exe-with-cet-xsave.dmp"), "--format", "text")
    assert run.returncode == 0, run.stderr
    assert "minidump of a windows x64 process" in run.stdout
    assert "Managed heap not available: No .NET runtime in this dump" in run.stdout
    # It could not look at the managed half, so it never says "no problem".
    assert "none in what could be examined" in run.stdout
    assert "no problem" not in run.stdout.lower()
    threads = run.stdout.split("\nThreads\n", 1)[1]
    for t in EXPECTED["tiny-exe-with-cet-xsave.dmp"]["threads"]:
        assert f"\n  {t['tid']}  {t['tid']:x}" in threads


def test_text_report_says_where_a_section_is_missing_and_why():
    """A minidump without TEBs: the native heaps cannot be found, and there
    is no .NET runtime; each section says so in its place, not only in the
    list of problems at the end."""
    run = report(str(MINIDUMPS / "null_write_av.dmp"), "--format", "text")
    assert run.returncode == 0, run.stderr
    body = run.stdout.split("\nCould not be read or analysed\n", 1)[0]
    assert "\nNative heaps not available: the dump does not say where" in body
    assert "\nFinalizer queue not available: No .NET runtime" in body
    assert "\nMemory usage\n" in body


@pytest.mark.parametrize("fmt", ["text", "html"])
def test_report_opens_with_the_key_facts_the_diagnosis_tab_shows(fmt):
    """The heap whose header is not in the dump is "none could be read", not
    0 bytes committed, as on the Diagnosis tab."""
    run = report(str(MINIDUMPS / "tiny-exe-with-cet-xsave.dmp"), "--format", fmt)
    assert run.returncode == 0, run.stderr
    head = run.stdout.split("Findings", 1)[0]
    assert (
        "Native heaps: 1, none could be read "
        "(the heap header at 0x2a658530000 is not in the dump)" in head
    )
    assert "Threads: 1, of which STA: 0" in head
    assert "committed 0 bytes" not in run.stdout


def test_a_native_heap_not_read_is_named_among_what_was_not_examined():
    """No large-block finding for a heap whose header is not in the dump
    is not "no problem" there: the diagnosis says it could not look."""
    run = report(str(MINIDUMPS / "tiny-exe-with-cet-xsave.dmp"))
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    gaps = {n["what"]: n["reason"] for n in result["not_examined"]}
    assert gaps["the native heap at 0x2a658530000 (header not read)"] == (
        "the heap header at 0x2a658530000 is not in the dump"
    )


def test_a_native_heap_not_read_has_unknown_blocks_in_json_not_none():
    run = report(str(MINIDUMPS / "tiny-exe-with-cet-xsave.dmp"))
    assert run.returncode == 0, run.stderr
    (heap,) = json.loads(run.stdout)["native_heaps"]
    assert heap["kind"] == "unknown"
    # null: never walked; [] would read as "a heap with no large blocks".
    assert heap["large_blocks"] is None and heap["segments"] is None
    assert heap["committed"] is None


def test_report_to_a_file(tmp_path):
    out = tmp_path / "r.json"
    run = report(str(MINIDUMPS / "minidump2.dmp"), "--out", str(out))
    assert run.returncode == 0, run.stderr
    assert run.stdout == ""
    assert json.loads(out.read_text())["dump"]["arch"] == "x86"


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda d: d / "missing.dmp", "No such file or directory"),
        (
            lambda d: (d / "text.dmp").write_text("hello, not a dump")
            and d / "text.dmp",
            "not a minidump or ELF core dump",
        ),
        (lambda d: (d / "empty.dmp").write_bytes(b"") or d / "empty.dmp", "empty"),
    ],
    ids=["missing", "not-a-dump", "empty"],
)
def test_unreadable_dump_exits_3_with_one_line_reason(tmp_path, make, reason):
    path = make(tmp_path)
    run = report(str(path))
    assert run.returncode == 3
    assert run.stdout == ""
    assert len(run.stderr.strip().splitlines()) == 1
    # The file named once, then the reason in words (no errno, no repr).
    assert run.stderr.startswith(f"dumpscope: cannot read {path}: ")
    assert run.stderr.count(path.name) == 1, run.stderr
    assert reason in run.stderr
    assert "Errno" not in run.stderr


def test_bad_arguments_exit_2():
    assert report().returncode == 2
    assert report(str(MINIDUMPS / "minidump2.dmp"), "--format", "xml").returncode == 2


def test_corrupt_dump_reports_what_it_can_and_says_what_it_cannot():
    run = report(str(MINIDUMPS / "invalid-record-count.dmp"))
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    assert data["dump"]["format"] == "minidump"
    assert any("stream" in p for p in data["problems"]), data["problems"]


def test_dac_folder_option_reaches_the_engine():
    dump = ensure_dump("deadlock", runtime="net8")
    run = report(str(dump.path), "--dac-folder", str(dump.runtime_dir))
    assert run.returncode == 0, run.stderr
    runtime = json.loads(run.stdout)["managed"]["runtime"]
    assert runtime["dac_path"] == str(dump.runtime_dir / "libmscordaccore.so")
    assert runtime["dac_explicit"] is True


def test_report_with_a_baseline_gives_the_growth_of_each_type(tmp_path):
    smaller = ensure_dump("big-heap", "net10", objects=400_000)
    bigger = ensure_dump("big-heap", "net10", objects=800_000)
    env = {**os.environ, "DUMPSCOPE_INDEX": str(tmp_path / "index")}
    run = report(str(bigger.path), "--baseline", str(smaller.path), env=env)
    assert run.returncode == 0, run.stderr
    growth = json.loads(run.stdout)["growth"]
    assert growth["baseline"] == str(smaller.path)
    by_name = {t["name"]: t for t in growth["types"]}
    order = by_name["DumpScope.Scenarios.Model.Order"]
    assert (order["count_before"], order["count_after"]) == (50_000, 100_000)
    assert order["count_delta"] == 50_000 and order["retained_delta"] > 0
    # Largest growth first: the planted model leads, nothing shrank ahead of it.
    assert growth["types"][0]["retained_delta"] >= order["retained_delta"]
    text = report(
        str(bigger.path), "--baseline", str(smaller.path), "--format", "text", env=env
    )
    assert f"Growth since {smaller.path}" in text.stdout
    assert "+50,000" in text.stdout


def test_report_with_a_baseline_of_the_same_process_gives_the_planted_changes(
    tmp_path,
):
    before, after = ensure_stages("growth")
    env = {**os.environ, "DUMPSCOPE_INDEX": str(tmp_path / "index")}
    run = report(
        str(after.path), "--baseline", str(before.path), "--format", "json", env=env
    )
    assert run.returncode == 0, run.stderr
    growth = json.loads(run.stdout)["growth"]
    assert growth["baseline"] == str(before.path)
    by_name = {t["name"]: t for t in growth["types"]}
    for name, count in before.facts["counts"].items():
        planted = by_name[name]
        assert planted["count_before"] == count
        assert planted["count_after"] == after.facts["counts"][name]
        assert planted["count_delta"] == after.facts["counts"][name] - count
        assert planted["retained_delta"] == planted["size_delta"]
    assert by_name["DumpScope.Scenarios.Voucher"]["count_delta"] == -1500
    assert by_name["DumpScope.Scenarios.Refund"]["count_before"] == 0
    # Largest growth first: the array of the list that gained 12,000 items.
    assert growth["types"][0]["name"] == "DumpScope.Scenarios.BasketItem[]"
    retained = [t["retained_delta"] for t in growth["types"]]
    assert retained == sorted(retained, reverse=True)
    page = report(
        str(after.path), "--baseline", str(before.path), "--format", "html", env=env
    ).stdout
    assert f"Growth since {before.path}" in page
    assert "<td>+12,000</td>" in page.replace(' class="num"', "")


def test_report_with_a_baseline_of_another_kind_of_process_says_why(tmp_path):
    _before, after = ensure_stages("growth")
    baseline = MINIDUMPS / "minidump2.dmp"
    env = {**os.environ, "DUMPSCOPE_INDEX": str(tmp_path / "index")}
    run = report(str(after.path), "--baseline", str(baseline), env=env)
    assert run.returncode == 0, run.stderr
    growth = json.loads(run.stdout)["growth"]
    assert growth["types"] is None
    assert "not the same process" in growth["reason"]
    assert "windows" in growth["reason"] and "linux" in growth["reason"]


def test_a_diagnosis_that_did_not_run_leaves_both_its_places_null(monkeypatch):
    """Not `not_examined: []`, which says the rules looked everywhere."""
    import analysis.diagnosis
    from analysis.report import build_report
    from analysis.session import DumpSession

    def broken(_facts):
        raise RuntimeError("a defect in a rule")

    monkeypatch.setattr(analysis.diagnosis, "diagnose", broken)
    dump = str(MINIDUMPS / "tiny-exe-with-cet-xsave.dmp")
    with DumpSession(dump, index=False) as session:
        result = build_report(session)
    assert result["analyses"]["diagnosis"]["state"] == "failed"
    assert result["findings"] is None
    assert result["not_examined"] is None
    assert any("a defect in a rule" in p for p in result["problems"])
