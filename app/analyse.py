"""The order in which the GUI asks a session for its results.

Cheap native results come first so tabs fill in at once; the engine's walk of
the managed heap comes after; results that combine both come last.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from analysis.session import Cancelled, DumpSession
from app.jobs import JobCancelled

STEPS = (
    ("modules", "reading modules"),
    ("native_heaps", "walking native heaps"),
    ("native_threads", "reading threads and native stacks"),
    ("managed", "analysing the managed heap (engine)"),
    ("address_summary", "summarising the address space"),
    ("threads", "merging thread views"),
    ("findings", "running the diagnosis rules"),
)


@dataclass(frozen=True)
class StepFailed:
    """An analysis that raised: the tab it feeds says why; the others go on."""

    reason: str


def analyse(
    session: DumpSession, report: Any, cancelled: threading.Event
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for i, (key, label) in enumerate(STEPS):
        if cancelled.is_set():
            raise JobCancelled()
        report(label, i / len(STEPS), None)
        start = i / len(STEPS)

        def engine_progress(message: str, fraction: float) -> None:
            report(message, start + fraction / len(STEPS), None)

        try:
            if key == "managed":
                value = session.managed(engine_progress, cancelled)
            elif key == "findings":
                value = session.findings(cancelled)
            else:
                value = getattr(session, key)()
        except Cancelled:
            raise JobCancelled()
        except Exception as error:  # one failing analysis leaves the others
            value = StepFailed(f"{label} failed: {type(error).__name__}: {error}")
        results[key] = value
        report(label, (i + 1) / len(STEPS), (key, value))
    return results
