"""The headless report: the same results the GUI shows, as JSON, text or one
self-contained HTML page (styles and charts inline, nothing fetched).

Each declared analysis (analysis/analyses.py) has its place (`report`); one
that did not end with a result leaves its place null, and says why under
`problems` and in `analyses`. A damaged dump still reports what can be read.
The JSON layout is documented in docs/REPORT.md.
"""

from __future__ import annotations

import html
import json
from typing import Any, Callable, Optional, Sequence, TypeVar

from analysis.analyses import (
    ADDRESS_SUMMARY,
    ANALYSES,
    DIAGNOSIS,
    FINALIZER_QUEUE,
    HEAP_GRAPH,
    HEAP_STATS,
    MODULES,
    MONITORS,
    NATIVE_HEAPS,
    NATIVE_OWNERS,
    RETAINED_BY_TYPE,
    RUNTIME,
    THREADS,
    Analysis,
    graph_damage_text,
)
from analysis.key_facts import summary_facts
from analysis.managed.compare import HeapComparison, compare_sessions
from analysis.model.columns import (
    BLOCK_COLUMNS,
    HEAP_COLUMNS,
    MODULE_COLUMNS,
    MONITOR_COLUMNS,
    THREAD_COLUMNS,
    USAGE_COLUMNS,
    Column,
    ColumnKind,
    finalizer_type_columns,
    managed_type_columns,
    table_text,
    waits_text,
)
from analysis.managed.results import TypeCount, TypeStat
from analysis.model.diagnosis import Diagnosis
from analysis.model.native import DumpInfo, NativeHeap
from analysis.model.outcome import Done, Outcome, Unavailable, gaps_by_reason
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
    problems = all_problems(info, outcomes)
    report: dict[str, Any] = {"report_version": REPORT_VERSION}
    report["dump"] = to_jsonable(info)
    for analysis in ANALYSES:
        outcome = outcomes[analysis]
        if analysis.report is None:
            continue
        value = outcome.value if isinstance(outcome, Done) else None
        if isinstance(value, Diagnosis) or analysis is DIAGNOSIS:
            findings = value.findings if isinstance(value, Diagnosis) else None
            # A diagnosis that did not run examined nothing: null, like the
            # findings, not the empty list that means "looked everywhere".
            gaps = value.not_examined if isinstance(value, Diagnosis) else None
            _place(report, "findings", to_jsonable(findings))
            _place(report, "not_examined", to_jsonable(gaps))
        elif isinstance(value, tuple) and analysis is NATIVE_HEAPS:
            heaps = [_heap_json(h) for h in value if isinstance(h, NativeHeap)]
            _place(report, analysis.report, heaps)
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


def _heap_json(heap: NativeHeap) -> dict[str, Any]:
    """A heap whose header could not be read was never walked: its segments
    and large blocks are unknown (null), not none ([]), as the GUI's
    "unknown" cells say."""
    row: dict[str, Any] = to_jsonable(heap)
    if not heap.was_read:
        row["segments"] = row["large_blocks"] = None
    return row


def all_problems(
    info: DumpInfo, outcomes: dict[Analysis[object], Outcome[object]]
) -> list[str]:
    """What could not be read or analysed, one line per reason: the dump's
    own gaps, the analyses that did not end done, and what the done ones
    say they could not read."""
    return (
        [f"dump: {p}" for p in info.problems]
        + gaps_by_reason(
            [(a.title, o) for a, o in outcomes.items() if not isinstance(o, Done)]
        )
        + result_problems(outcomes)
    )


def result_problems(outcomes: dict[Analysis[object], Outcome[object]]) -> list[str]:
    """What the analyses that ended with a result say they could not read."""
    return [
        f"{analysis.title}: {problem}"
        for analysis, outcome in outcomes.items()
        if isinstance(outcome, Done)
        for problem in analysis.problems(outcome.value)
    ]


def placed(analysis: Analysis[Any]) -> Optional[str]:
    """Where the report shows an analysis: its own key, or that of the
    analysis that includes it."""
    if analysis.report is not None:
        return analysis.report
    owner = next((a for a in ANALYSES if analysis in a.includes), None)
    return owner.report if owner is not None else None


def render_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2)


def _type_columns(
    session: DumpSession,
) -> tuple[tuple[Column[TypeStat], ...], tuple[Column[TypeCount], ...]]:
    """The Managed types and finalizer tables' columns as the GUI has them:
    retained and native owned bytes beside the sizes, lower bounds where the
    GC heap walk met damage."""

    def value(analysis: Analysis[T]) -> Optional[T]:
        outcome = session.peek(analysis)
        return outcome.value if isinstance(outcome, Done) else None

    graph, page, ownership = (
        value(HEAP_GRAPH),
        value(RETAINED_BY_TYPE),
        value(NATIVE_OWNERS),
    )
    retained = {
        int(t.method_table): int(t.retained or 0)
        for t in (page.items if page is not None else ())
        if t.method_table is not None
    }
    owned = {t.type: int(t.bytes) for t in ownership.by_type} if ownership else {}
    damage = graph_damage_text(graph) if graph is not None else ""
    owned_damage = ownership.heap_damage if ownership is not None else ""
    return managed_type_columns(
        lambda: retained, lambda: owned, lambda: damage, lambda: owned_damage
    ), finalizer_type_columns(lambda: owned, lambda: owned_damage)


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
    out.extend(f"  {line}" for line in summary_facts(session))

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
        if f.remedy:
            out.append(f"    What to do: {f.remedy}")
    if diagnosis is not None and diagnosis.not_examined:
        out.append("  Not examined:")
        out.extend(f"    - {n.what}: {n.reason}" for n in diagnosis.not_examined)

    # A section whose analysis did not end says so where it would be, as
    # the GUI's tab does: a reader of one section need not find the list
    # of problems to learn that it is missing, not empty.
    summary = value(ADDRESS_SUMMARY)
    out.append("")
    if summary is None:
        out.append(f"Memory usage {outcomes[ADDRESS_SUMMARY].text}")
    else:
        out += ["Memory usage"] + _indent(table_text(USAGE_COLUMNS, summary.usage))
    heaps = value(NATIVE_HEAPS)
    out.append("")
    if heaps is None:
        out.append(f"Native heaps {outcomes[NATIVE_HEAPS].text}")
    elif not heaps:
        out.append("Native heaps: none was found in this dump")
    else:
        out += ["Native heaps"] + _indent(table_text(HEAP_COLUMNS, heaps))

    out.append("")
    heap = value(HEAP_STATS)
    if heap is None:
        out.append(f"Managed heap {outcomes[HEAP_STATS].text}")
    else:
        out.append(
            f"Managed heap: {heap.total_objects or 0:,} objects, "
            f"{human_size(heap.total_bytes or 0)} (the 25 largest types)"
        )
        runtime = value(RUNTIME)
        if runtime is not None and runtime.engine:
            out.append(f"  read by the {runtime.engine}")
        types = sorted(heap.types, key=lambda t: t.size or 0, reverse=True)[:25]
        out += _indent(table_text(_type_columns(session)[0], types))
    queue = value(FINALIZER_QUEUE)
    out.append("")
    if queue is None:
        out.append(f"Finalizer queue {outcomes[FINALIZER_QUEUE].text}")
    else:
        out.append(f"Ready for finalization: {queue.ready_count or 0:,} objects")
        ready = sorted(queue.ready, key=lambda t: t.count or 0, reverse=True)[:10]
        out += _indent(table_text(_type_columns(session)[1], ready))

    threads = value(THREADS)
    if threads is None:
        out += ["", f"Threads {outcomes[THREADS].text}"]
    else:
        names = {t.os_id: t.name for t in threads if t.name}
        waits: tuple[Column[ThreadView], ...] = (
            Column("Waits for", lambda t: waits_text(t, names)),
        )
        out += ["", "Threads"] + _indent(table_text(THREAD_COLUMNS + waits, threads))

    problems = all_problems(info, outcomes)
    if problems:
        out += ["", "Could not be read or analysed"] + [f"  - {p}" for p in problems]
    return "\n".join(out) + "\n"


def _indent(lines: list[str]) -> list[str]:
    return ["  " + line for line in lines]


# -- HTML ---------------------------------------------------------------------

HTML_ROWS = 500  # rows per table; the rest is counted, not dropped silently
CHART_BARS = 12
SEVERITY_COLOURS = {"critical": "#f8d0cc", "warning": "#fbe7b5", "info": "#d9e8fb"}
STYLE = """
body { font-family: sans-serif; margin: 24px; color: #1d1d1d; background: #fff; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 28px; }
.finding { border-radius: 4px; padding: 8px 12px; margin: 8px 0; }
.finding h3 { margin: 2px 0 6px; font-size: 15px; }
table { border-collapse: collapse; margin: 6px 0; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: left; }
th { background: #eee; } td.num { text-align: right; }
td.addr { text-align: right; font-family: monospace; }
td.gap { color: #777; font-style: italic; }
.note { color: #555; } .chart { margin: 8px 0; }
@media (prefers-color-scheme: dark) {
  body { color: #e4e4e4; background: #1e1e1e; } th { background: #333; }
  th, td { border-color: #555; } .finding { color: #1d1d1d; }
  .note, td.gap { color: #aaa; } svg text { fill: #e4e4e4; }
}
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


_CELL_CLASS = {
    kind: ' class="addr"' if kind is ColumnKind.ADDRESS else ' class="num"'
    for kind in ColumnKind
    if kind.numeric
} | {ColumnKind.TEXT: ""}


def html_table(
    columns: Sequence[Column[Any]], records: Sequence[Any], limit: int = HTML_ROWS
) -> str:
    """A table through the declared columns: the same text as the GUI, a gap
    in grey with its reason as tooltip; past `limit` rows, how many more."""
    head = "".join(
        f'<th title="{_e(c.tooltip)}">{_e(c.title)}</th>'
        if c.tooltip
        else f"<th>{_e(c.title)}</th>"
        for c in columns
    )
    rows = []
    for record in records[:limit]:
        cells = []
        for c in columns:
            gap = c.gap_reason(record)
            if gap is not None:
                cells.append(
                    f'<td class="gap" title="{_e(gap)}">{_e(c.text(record))}</td>'
                )
            else:
                cells.append(f"<td{_CELL_CLASS[c.kind]}>{_e(c.text(record))}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    more = ""
    if len(records) > limit:
        more = f'<p class="note">… and {len(records) - limit:,} more rows.</p>'
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>{more}"


def svg_bars(title: str, bars: Sequence[tuple[str, int]]) -> str:
    """A horizontal bar chart of sizes as inline SVG (no script, no font
    file): label and size on each bar, the largest bar full width."""
    shown = list(bars)[:CHART_BARS]
    if not shown:
        return ""
    width, bar_h, gap, label_w = 760, 20, 6, 300
    height = len(shown) * (bar_h + gap) + 24
    largest = max(size for _, size in shown) or 1
    parts = [
        f'<svg class="chart" width="{width}" height="{height}" role="img" '
        f'aria-label="{_e(title)}">',
        f'<text x="0" y="14" font-size="13" font-weight="bold">{_e(title)}</text>',
    ]
    for i, (label, size) in enumerate(shown):
        y = 24 + i * (bar_h + gap)
        w = max(1, int((width - label_w - 90) * size / largest))
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 14}" font-size="12" '
            f'text-anchor="end">{_e(label)}</text>'
            f'<rect x="{label_w}" y="{y}" width="{w}" height="{bar_h}" '
            f'fill="#4a7ab5"><title>{_e(label)}: {_e(human_size(size))}</title></rect>'
            f'<text x="{label_w + w + 6}" y="{y + 14}" font-size="12">'
            f"{_e(human_size(size))}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def render_html(session: DumpSession, growth: Optional[dict[str, Any]] = None) -> str:
    """The report as one HTML page that reads offline: the findings with
    their evidence and what was not examined, the tables through the
    declared columns, the charts as inline SVG; with `growth` (a
    growth_section), each type's change since the baseline."""
    info = session.info()
    outcomes = session.run_all()

    def value(analysis: Analysis[T]) -> Optional[T]:
        outcome = session.peek(analysis)
        return outcome.value if isinstance(outcome, Done) else None

    def missing(analysis: Analysis[Any]) -> str:
        return f'<p class="note">{_e(analysis.title)} {_e(outcomes[analysis].text)}</p>'

    out: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>DumpScope report: {_e(info.path)}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>DumpScope report: {_e(info.path)}</h1>",
        '<p class="note">'
        + "<br>".join(_e(line) for line in summary_facts(session))
        + "</p>",
        '<h2 id="findings">Findings</h2>',
    ]
    diagnosis = value(DIAGNOSIS)
    if diagnosis is None:
        out.append(f"<p>The diagnosis {_e(outcomes[DIAGNOSIS].text)}</p>")
    elif not diagnosis.findings:
        out.append(
            "<p>None in what could be examined.</p>"
            if diagnosis.not_examined
            else "<p>None: the rules found no problem.</p>"
        )
    for f in diagnosis.findings if diagnosis else ():
        colour = SEVERITY_COLOURS.get(str(f.severity), "#eee")
        evidence = "".join(f"<li>{_e(e.text)}</li>" for e in f.evidence)
        out.append(
            f'<div class="finding" style="background: {colour}">'
            f"<h3>{_e(str(f.severity).upper())}: {_e(f.title)}</h3>"
            f"<p>{_e(f.statement)}</p>"
            + (f"<p>Evidence:</p><ul>{evidence}</ul>" if evidence else "")
            + (f"<p><b>What to do:</b> {_e(f.remedy)}</p>" if f.remedy else "")
            + "</div>"
        )
    if diagnosis is not None and diagnosis.not_examined:
        out.append("<h3>Not examined</h3><ul>")
        out.extend(
            f"<li>{_e(n.what)}: {_e(n.reason)}</li>" for n in diagnosis.not_examined
        )
        out.append("</ul>")

    out.append('<h2 id="memory">Memory usage</h2>')
    summary = value(ADDRESS_SUMMARY)
    if summary is None:
        out.append(missing(ADDRESS_SUMMARY))
    else:
        busy = [r for r in summary.usage if str(r.usage) != "Free"]
        busy.sort(key=lambda r: int(r.bytes), reverse=True)
        out.append(
            svg_bars(
                "Busy memory by usage", [(str(r.usage), int(r.bytes)) for r in busy]
            )
        )
        out.append(html_table(USAGE_COLUMNS, summary.usage))

    out.append('<h2 id="native-heaps">Native heaps</h2>')
    heaps = value(NATIVE_HEAPS)
    if heaps is None:
        out.append(missing(NATIVE_HEAPS))
    elif not heaps:
        out.append('<p class="note">None was found in this dump.</p>')
    else:
        out.append(html_table(HEAP_COLUMNS, heaps))
        for heap in heaps:
            if heap.large_blocks:
                out.append(
                    f"<h3>Large blocks of heap 0x{int(heap.address):x}: "
                    f"{len(heap.large_blocks):,}</h3>"
                )
                blocks = sorted(heap.large_blocks, key=lambda b: -int(b.size))
                out.append(html_table(BLOCK_COLUMNS, blocks))

    out.append('<h2 id="managed-types">Managed types</h2>')
    managed = value(HEAP_STATS)
    if managed is None:
        out.append(missing(HEAP_STATS))
    else:
        types = sorted(managed.types, key=lambda t: int(t.size or 0), reverse=True)
        out.append(
            f"<p>{int(managed.total_objects or 0):,} objects, "
            f"{_e(human_size(managed.total_bytes or 0))} in {len(types):,} types, "
            "largest first</p>"
        )
        out.append(
            svg_bars(
                "Largest managed types",
                [(t.name or "?", int(t.size or 0)) for t in types],
            )
        )
        out.append(html_table(_type_columns(session)[0], types))

    out.append('<h2 id="finalizer">Finalizer queue</h2>')
    queue = value(FINALIZER_QUEUE)
    if queue is None:
        out.append(missing(FINALIZER_QUEUE))
    else:
        out.append(
            f"<p>Ready for finalization: {int(queue.ready_count or 0):,} objects</p>"
        )
        ready = sorted(queue.ready, key=lambda t: t.count or 0, reverse=True)
        out.append(html_table(_type_columns(session)[1], ready))
        out.append("<h3>All registered finalizable objects</h3>")
        finalizable = sorted(
            queue.finalizable, key=lambda t: t.count or 0, reverse=True
        )
        out.append(html_table(_type_columns(session)[1], finalizable))

    out.append('<h2 id="threads">Threads</h2>')
    threads = value(THREADS)
    if threads is None:
        out.append(missing(THREADS))
    else:
        names = {t.os_id: t.name for t in threads if t.name}
        waits: tuple[Column[ThreadView], ...] = (
            Column("Waits for", lambda t: waits_text(t, names)),
        )
        out.append(html_table(THREAD_COLUMNS + waits, threads))
    monitors = value(MONITORS)
    if monitors:
        out.append("<h3>Locks (syncblk)</h3>")
        held = [m for m in monitors if m.is_held or m.waiting_os_ids]
        out.append(html_table(MONITOR_COLUMNS, held))

    out.append('<h2 id="modules">Modules</h2>')
    modules = value(MODULES)
    out.append(
        missing(MODULES) if modules is None else html_table(MODULE_COLUMNS, modules)
    )

    if growth is not None:
        out.append(f'<h2 id="growth">Growth since {_e(growth["baseline"])}</h2>')
        changes = growth.get("types")
        out.append(
            f'<p class="note">Not compared: {_e(growth.get("reason"))}</p>'
            if changes is None
            else html_table(GROWTH_COLUMNS, changes)
        )

    problems = all_problems(info, outcomes)
    if problems:
        out.append('<h2 id="problems">Could not be read or analysed</h2><ul>')
        out.extend(f"<li>{_e(p)}</li>" for p in problems)
        out.append("</ul>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


# The rows of a growth section, in exact numbers, as the text report has them.
GROWTH_COLUMNS: tuple[Column[dict[str, Any]], ...] = (
    Column("Δ Count", lambda t: t["count_delta"], ColumnKind.INT_CHANGE),
    Column("Δ Bytes", lambda t: t["size_delta"], ColumnKind.INT_CHANGE),
    Column("Δ Retained bytes", lambda t: t["retained_delta"], ColumnKind.INT_CHANGE),
    Column("Class Name", lambda t: t["name"]),
)


def growth_section(session: DumpSession, baseline: DumpSession) -> dict[str, Any]:
    """Per-type growth from an earlier dump of the same process to this one
    (count, shallow size, retained size), largest growth first; `types` is
    null, with the reason, when the two cannot be compared (not the same
    kind of process, retained sizes missing on either side)."""
    compared = compare_sessions(session, baseline)
    if isinstance(compared, Done):
        return growth_of(compared.value)
    return {
        "baseline": baseline.path,
        "types": None,
        "reason": (
            compared.reason if isinstance(compared, Unavailable) else compared.text
        ),
    }


def growth_of(comparison: HeapComparison) -> dict[str, Any]:
    """The growth section of a comparison already made (the GUI's)."""
    return {
        "baseline": comparison.baseline,
        "types": [
            {
                "name": d.name,
                "count_before": d.count_before,
                "count_after": d.count_after,
                "count_delta": d.count_delta,
                "size_before": int(d.size_before),
                "size_after": int(d.size_after),
                "size_delta": d.size_delta,
                "retained_before": to_jsonable(d.retained_before),
                "retained_after": to_jsonable(d.retained_after),
                "retained_delta": d.retained_delta,
            }
            for d in comparison.deltas
        ],
    }


def growth_text(section: dict[str, Any], limit: int = 25) -> str:
    out = ["", f"Growth since {section['baseline']}"]
    types = section.get("types")
    if types is None:
        out.append(f"  not compared: {section.get('reason')}")
        return "\n".join(out) + "\n"
    out.append(f"  {'Count':>12}{'Size':>14}{'Retained':>14}  Class Name")
    for t in types[:limit]:
        retained = t["retained_delta"]
        out.append(
            f"  {t['count_delta']:>+12,}{t['size_delta']:>+14,}"
            f"{'' if retained is None else f'{retained:+,}':>14}  {t['name']}"
        )
    return "\n".join(out) + "\n"
