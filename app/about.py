"""What About says: the versions of everything that reads a dump."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any, Optional

import qtpy
from qtpy import QtCore

VERSION = "0.10.0"
ROOT = Path(__file__).resolve().parents[1]


def _commit() -> Optional[str]:
    """The checkout's commit, when running from a git checkout."""
    try:
        run = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return run.stdout.strip() or None if run.returncode == 0 else None


def binding_version() -> str:
    if qtpy.API_NAME == "PyQt6":
        return f"PyQt6 {QtCore.PYQT_VERSION_STR}"
    import PySide6

    return f"PySide6 {PySide6.__version__}"


def versions(engine: Optional[dict[str, Any]]) -> list[tuple[str, str]]:
    """(what, version) lines; engine: the running engine's `version` answer,
    None when none is running (About does not start one for this)."""
    commit = _commit()
    not_started = "not started (no dump with a .NET runtime is open)"
    return [
        ("DumpScope", VERSION + (f" ({commit})" if commit else "")),
        ("Engine", str(engine["engine_version"]) if engine else not_started),
        ("ClrMD", str(engine["clrmd_version"]) if engine else not_started),
        ("Qt binding", binding_version()),
        ("Qt", QtCore.qVersion()),
    ]


def about_html(engine: Optional[dict[str, Any]]) -> str:
    rows = "".join(
        f"<tr><td>{what}</td><td>&nbsp;{version}</td></tr>"
        for what, version in versions(engine)
    )
    return (
        "<p>DumpScope shows where the memory of a .NET process went, what its "
        "finalizer and COM apartments are doing, and the root cause.</p>"
        f"<table>{rows}</table>"
    )
