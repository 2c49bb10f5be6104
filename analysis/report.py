"""The headless report: the same results the GUI shows, as JSON or text.

One failing analysis never sinks the report: its section is null and the
reason is listed under `problems`, so a damaged dump still reports what can
be read. The JSON layout is documented in docs/REPORT.md.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from analysis.session import DumpSession, ManagedAnalysis, ManagedUnavailable
from analysis.values import human_size, to_jsonable

REPORT_VERSION = 1


def build_report(session: DumpSession) -> dict[str, Any]:
    problems: list[str] = [f"dump: {p}" for p in session.info().problems]

    def section(name: str, compute: Callable[[], Any]) -> Any:
        try:
            return to_jsonable(compute())
        except Exception as error:  # one analysis failing must not sink the report
            problems.append(f"{name}: {type(error).__name__}: {error}")
            return None

    report: dict[str, Any] = {"report_version": REPORT_VERSION}
    report["dump"] = section("dump", session.info)
    report["memory"] = section("memory", _memory(session))
    report["modules"] = section("modules", session.modules)
    report["native_heaps"] = section("native_heaps", session.native_heaps)
    report["threads"] = section("threads", session.threads)
    report["managed"] = section("managed", _managed(session))
    report["findings"] = section("findings", session.findings)
    report["problems"] = problems
    return report


def _memory(session: DumpSession) -> Callable[[], Any]:
    def compute() -> Any:
        summary = session.address_summary()
        return {
            "usage": summary.usage,
            "state": summary.state,
            "type": summary.type,
            "protect": summary.protect,
        }

    return compute


def _managed(session: DumpSession) -> Callable[[], Any]:
    def compute() -> Any:
        managed = session.managed()
        if isinstance(managed, ManagedUnavailable):
            return {"available": False, "reason": managed.reason, "code": managed.code}
        assert isinstance(managed, ManagedAnalysis)
        return {
            "available": True,
            "runtime": managed.runtime,
            "types": managed.heap.types,
            "total_objects": managed.heap.total_objects,
            "total_bytes": managed.heap.total_bytes,
            "gc": managed.gc,
            "finalizer": managed.finalizer,
            "monitors": managed.monitors,
            "thread_pool": managed.thread_pool,
        }

    return compute


def render_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2)


def render_text(report: dict[str, Any]) -> str:
    out: list[str] = []
    dump = report.get("dump") or {}
    out.append(f"DumpScope report: {dump.get('path')}")
    out.append(
        f"  {dump.get('format')} of a {dump.get('os')} {dump.get('arch')} process, "
        f"{human_size(dump.get('size') or 0)}"
    )

    findings = report.get("findings") or []
    out.append("")
    out.append("Findings")
    if not findings:
        out.append("  none")
    for f in findings:
        out.append(f"  [{f['severity']}] {f['title']}")
        out.append(f"    {f['statement']}")
        for e in f["evidence"]:
            out.append(f"      - {e['text']}")

    memory = report.get("memory")
    if memory:
        out.append("")
        out.append(
            f"{'Usage':<16}{'Regions':>9}{'Size':>14}{'% busy':>9}{'% total':>9}"
        )
        for row in memory["usage"]:
            busy = row.get("percent_busy")
            out.append(
                f"{row['usage']:<16}{row['regions']:>9}{human_size(row['bytes']):>14}"
                f"{'' if busy is None else f'{busy:.2f}':>9}{row['percent_total']:>9.2f}"
            )

    heaps = report.get("native_heaps")
    if heaps:
        out.append("")
        out.append("Native heaps")
        for h in heaps:
            blocks = h.get("large_blocks") or []
            out.append(
                f"  0x{h['address']:x} {h['kind']:<12} "
                f"reserved {human_size(h.get('reserved') or 0)}, "
                f"committed {human_size(h.get('committed') or 0)}, "
                f"{len(h.get('segments') or [])} segments, {len(blocks)} large blocks "
                f"({human_size(sum(b['size'] for b in blocks))})"
            )

    managed = report.get("managed") or {}
    out.append("")
    if not managed.get("available"):
        out.append(
            f"Managed heap: not analysed: {managed.get('reason', 'unknown reason')}"
        )
    else:
        out.append(
            f"Managed heap: {managed['total_objects']:,} objects, "
            f"{human_size(managed['total_bytes'])}"
        )
        out.append(f"  {'Count':>12}{'TotalSize':>16}  Class Name")
        for t in sorted(managed["types"], key=lambda t: t["size"], reverse=True)[:25]:
            out.append(f"  {t['count']:>12,}{t['size']:>16,}  {t['name']}")
        fin = managed.get("finalizer") or {}
        out.append("")
        out.append(f"Ready for finalization: {fin.get('ready_count', 0):,} objects")
        for t in sorted(fin.get("ready") or [], key=lambda t: t["count"], reverse=True)[
            :10
        ]:
            out.append(f"  {t['count']:>12,}{t['size']:>16,}  {t['name']}")

    threads = report.get("threads") or []
    if threads:
        out.append("")
        out.append(
            f"{'OSID':>8} {'ID':>4} {'Apt':<7} {'Role':<12} {'Locks':>5}  Name / waits for"
        )
        for t in threads:
            role = (
                "finalizer"
                if t["is_finalizer"]
                else "GC"
                if t["is_gc"]
                else "threadpool"
                if t["is_threadpool"]
                else ""
            )
            waits = t.get("waits_for")
            wait = (
                f"  waits for {waits['type']} held by {waits['owner_os_id']}"
                if waits
                else ""
            )
            out.append(
                f"{t['os_id']:>8} {t.get('managed_id') or '':>4} {t['apartment']:<7} {role:<12} "
                f"{'' if t.get('lock_count') is None else t['lock_count']:>5}  "
                f"{t.get('name') or ''}{wait}"
            )

    problems = report.get("problems") or []
    if problems:
        out.append("")
        out.append("Could not be read")
        out.extend(f"  - {p}" for p in problems)
    return "\n".join(out) + "\n"
