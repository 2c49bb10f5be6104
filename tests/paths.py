"""Where the tests find what lives outside the repository.

The shared test data sits beside the clone (`../shared`, as laid out for
developers and CI); DUMPSCOPE_SHARED points elsewhere. createdump comes with
the newest .NET runtime installed.
"""

import os
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DUMPSCOPE_SHARED", ROOT.parent / "shared"))
MINIDUMPS = SHARED / "data" / "minidumps"


def _find_createdump() -> Path:
    dotnet = shutil.which("dotnet")
    runtimes = (
        Path(dotnet).resolve().parent / "shared" / "Microsoft.NETCore.App"
        if dotnet
        else None
    )
    if runtimes is not None and runtimes.is_dir():
        versions = sorted(
            (p for p in runtimes.iterdir() if (p / "createdump").is_file()),
            key=lambda p: [int(x) if x.isdigit() else 0 for x in p.name.split(".")],
        )
        if versions:
            return versions[-1] / "createdump"
    # A path that does not exist: tests that need createdump skip on it.
    return Path("createdump-not-installed")


CREATEDUMP = _find_createdump()
