"""The headless report: the same results the GUI shows, as JSON or text.

Each declared analysis (analysis/analyses.py) has its place (`report`); one
that did not end with a result leaves its place null, and says why under
`problems` and in `analyses`. A damaged dump still reports what can be read.
The JSON layout is documented in docs/REPORT.md.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Optional, TypeVar

from analysis.analyses import (
    ADDRESS_SUMMARY,
    ANALYSES,
    DIAGNOSIS,
    FINALIZER_QUEUE,
    HEAP_STATS,
    NATIVE_HEAPS,
    RUNTIME,
    THREADS,
    Analysis,
)
from analysis.model.columns import (
    HEAP_COLUMNS,
    THREAD_COLUMNS,
    TYPE_COLUMNS,
    TYPE_COUNT_COLUMNS,
    USAGE_COLUMNS,
    Column,
    table_text,
    waits_text,
)
from analysis.model.diagnosis import Diagnosis
from analysis.model.outcome import Done, Outcome, gaps_by_reason
from analysis.model.threads import ThreadView
from analysis.session import DumpSession
from analysis.values import human_size, to_jsonable

REPORT_VERSION = 2
T = TypeVar("T")
Progress = Callable[[str, float], None]


def _state(outcome: Outcome[Any]) -> dict[str, Any]:
    if isinstance(outcome, Done):
        return {"state": "done"}
    state = type(outcome).__name__.lower()
    reason = getattr(outcome, "reason", None) or getattr(outcome, "error", None)
    return {"state": state, "reason": reason}


def _place(report: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    node = report
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value


def build_report(session: DumpSession) -> dict[str, Any]:
    info = session.info()
    outcomes = session.run_all()
    problems: list[str] = [f"dump: {p}" for p in info.problems]
    report: dict[str, Any] = {"report_version": REPORT_VERSION}
    report["dump"] = to_jsonable(info)
    problems += gaps_by_reason(
        [(a.title, o) for a, o in outcomes.items() if not isinstance(o, Done)]
    )
    for analysis in ANALYSES:
        outcome = outcomes[analysis]
        if analysis.report is None:
            continue
        value = outcome.value if isinstance(outcome, Done) else None
        if isinstance(value, Diagnosis) or analysis is DIAGNOSIS:
            findings = value.findings if isinstance(value, Diagnosis) else None
            gaps = value.not_examined if isinstance(value, Diagnosis) else ()
            _place(report, "findings", to_jsonable(findings))
            _place(report, "not_examined", to_jsonable(gaps))
        else:
            _place(report, analysis.report, to_jsonable(value))
    runtime = outcomes[RUNTIME]
    managed = report.setdefault("managed", {})
    managed["available"] = isinstance(runtime, Done)
    if not isinstance(runtime, Done):
        managed["reason"] = runtime.text
        managed["code"] = getattr(runtime, "code", None)
    report["analyses"] = {a.id: _state(outcomes[a]) for a in ANALYSES}
    report["problems"] = problems
    return report


def placed(analysis: Analysis[Any]) -> Optional[str]:
    """Where the report shows an analysis: its own key, or that of the
    analysis that includes it."""
    if analysis.report is not None:
        return analysis.report
    owner = next((a for a in ANALYSES if analysis in a.includes), None)
    return owner.report if owner is not None else None


def render_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2)


def render_text(session: DumpSession) -> str:
    """The report for people, from the same results through the same
    columns as the GUI's tables."""
    info = session.info()
    outcomes = session.run_all()

    def value(analysis: Analysis[T]) -> Optional[T]:
        outcome = session.peek(analysis)
        return outcome.value if isinstance(outcome, Done) else None

    out: list[str] = []
    out.append(f"DumpScope report: {info.path}")
    out.append(
        f"  {info.format} of a {info.os} {info.arch} process, {human_size(info.size)}"
    )

    diagnosis = value(DIAGNOSIS)
    out.append("")
    out.append("Findings")
    if diagnosis is None:
        out.append(f"  the diagnosis {outcomes[DIAGNOSIS].text}")
    elif not diagnosis.findings:
        out.append(
            "  none in what could be examined"
            if diagnosis.not_examined
            else "  none: the rules found no problem"
        )
    for f in diagnosis.findings if diagnosis else ():
        out.append(f"  [{f.severity}] {f.title}")
        out.append(f"    {f.statement}")
        out.extend(f"      - {e.text}" for e in f.evidence)
    if diagnosis is not None and diagnosis.not_examined:
        out.append("  Not examined:")
        out.extend(f"    - {n.what}: {n.reason}" for n in diagnosis.not_examined)

    summary = value(ADDRESS_SUMMARY)
    if summary is not None:
        out += ["", "Memory usage"] + _indent(table_text(USAGE_COLUMNS, summary.usage))
    heaps = value(NATIVE_HEAPS)
    if heaps:
        out += ["", "Native heaps"] + _indent(table_text(HEAP_COLUMNS, heaps))

    out.append("")
    heap = value(HEAP_STATS)
    if heap is None:
        out.append(f"Managed heap {outcomes[HEAP_STATS].text}")
    else:
        out.append(
            f"Managed heap: {heap.total_objects or 0:,} objects, "
            f"{human_size(heap.total_bytes or 0)} (the 25 largest types)"
        )
        types = sorted(heap.types, key=lambda t: t.size or 0, reverse=True)[:25]
        out += _indent(table_text(TYPE_COLUMNS, types))
    queue = value(FINALIZER_QUEUE)
    if queue is not None:
        out.append("")
        out.append(f"Ready for finalization: {queue.ready_count or 0:,} objects")
        ready = sorted(queue.ready, key=lambda t: t.count or 0, reverse=True)[:10]
        out += _indent(table_text(TYPE_COUNT_COLUMNS, ready))

    threads = value(THREADS)
    if threads:
        names = {t.os_id: t.name for t in threads if t.name}
        waits: tuple[Column[ThreadView], ...] = (
            Column("Waits for", lambda t: waits_text(t, names)),
        )
        out += ["", "Threads"] + _indent(table_text(THREAD_COLUMNS + waits, threads))

    problems = [f"dump: {p}" for p in info.problems] + gaps_by_reason(
        [(a.title, o) for a, o in outcomes.items() if not isinstance(o, Done)]
    )
    if problems:
        out += ["", "Could not be read or analysed"] + [f"  - {p}" for p in problems]
    return "\n".join(out) + "\n"


def _indent(lines: list[str]) -> list[str]:
    return ["  " + line for line in lines]
