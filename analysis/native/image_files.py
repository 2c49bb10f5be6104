"""The module files an image check looked for, as they were: a kept check
(results cache) holds only while they are unchanged. Apart from the check
itself (and its numpy), so that a reopened dump asks this without importing
it."""

from __future__ import annotations

import os
import stat

from analysis.model.images import FileStamp, ImageChecks


def file_stamp(path: str) -> FileStamp:
    """The file at `path` as it is now (-1, -1: none, or not a regular file)."""
    try:
        status = os.stat(path)
    except (OSError, ValueError):
        return FileStamp(path, -1, -1)
    if not stat.S_ISREG(status.st_mode):
        return FileStamp(path, -1, -1)
    return FileStamp(path, status.st_size, status.st_mtime_ns)


def files_unchanged(checks: ImageChecks) -> bool:
    """Whether every file the check looked for is as it was then: a module
    file updated, removed or put in place since makes a kept check stale."""
    return all(file_stamp(seen.path) == seen for seen in checks.files)
