"""The HTML report: one file that reads offline, with the findings, their
evidence, what was not examined, the tables and the charts."""

import html
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from analysis.analyses import DIAGNOSIS, HEAP_STATS
from analysis.report import render_html
from analysis.session import DumpSession
from scenarios.dumps import ensure_dump
from tests.paths import MINIDUMPS

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"


def report_html(dump: Path, out: Path) -> str:
    run = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "report", str(dump)]
        + ["--format", "html", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr
    return out.read_text(encoding="utf-8")


def assert_self_contained(page: str) -> None:
    """Nothing is fetched: no script, no stylesheet link, no remote image."""
    assert "<script" not in page
    assert "<link" not in page
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:|#)""", page)
    assert "http://" not in page and "https://" not in page


def test_html_report_of_a_native_dump_says_what_it_could_not_examine(tmp_path):
    page = report_html(MINIDUMPS / "tiny-exe-with-cet-xsave.dmp", tmp_path / "r.html")
    assert page.startswith("<!DOCTYPE html>")
    assert_self_contained(page)
    assert "minidump of a windows x64 process" in page
    # No managed half: never "no problem", and the reason is given.
    assert "None in what could be examined." in page
    assert "<h3>Not examined</h3>" in page
    assert "no problem" not in page.lower()
    # The declared columns' titles head the tables.
    assert "<th>Usage</th><th>Regions</th><th>Size</th>" in page
    assert "<th>Base</th><th>Size</th><th>Name</th>" in page  # modules
    assert '<svg class="chart"' in page and "Busy memory by usage" in page


def test_html_report_of_the_blocked_finalizer_carries_the_finding_and_its_evidence(
    tmp_path,
):
    dump = ensure_dump("blocked-finalizer")
    facts = dump.facts
    with DumpSession(dump.path) as session:
        page = render_html(session)
        findings = session.result(DIAGNOSIS).findings
        types = session.result(HEAP_STATS).types
    assert_self_contained(page)
    first = findings[0]
    assert f"CRITICAL: {html.escape(first.title)}" in page
    assert html.escape(first.statement) in page
    for evidence in first.evidence:
        assert f"<li>{html.escape(evidence.text)}</li>" in page
    assert f"<p><b>What to do:</b> {html.escape(first.remedy)}</p>" in page
    assert "The lock holder, thread" in first.remedy
    # The buffers' type in the managed-types table, with its count as shown.
    buffer = next(t for t in types if t.name == facts["buffer_type"])
    assert (
        f'<td class="num">{buffer.count:,}</td>' in page
        and html.escape(facts["buffer_type"]) in page
    )
    holder = facts["lock_holder"]["os_thread_id"]
    assert html.escape(f"held by 'LockHolder' {holder} (0x{holder:x})") in page
    (tmp_path / "blocked.html").write_text(page, encoding="utf-8")


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


@pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="chromium is not installed (DUMPSCOPE_GUI_TOOLS=1 scripts/setup.sh)",
)
def test_html_report_renders_offline_in_headless_chromium(tmp_path):
    dump = ensure_dump("blocked-finalizer")
    with DumpSession(dump.path) as session:
        page = render_html(session)
    html_path = tmp_path / "report.html"
    html_path.write_text(page, encoding="utf-8")
    shot = Path(os.environ.get("DUMPSCOPE_REPORT_SHOT", tmp_path / "report.png"))
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    try:
        run = subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                f"--user-data-dir={profile}",
                f"--screenshot={shot}",
                "--window-size=1280,2000",
                html_path.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert run.returncode == 0, run.stderr
    assert png_size(shot) == (1280, 2000)
    # A page that failed to render is one colour; a report is not.
    from qtpy import QtGui

    image = QtGui.QImage(str(shot))
    colours = {
        image.pixel(x, y) for x in range(0, 1280, 16) for y in range(0, 2000, 16)
    }
    assert len(colours) > 8
