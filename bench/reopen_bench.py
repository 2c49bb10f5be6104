"""Times DumpScope from opening a dump to its full diagnosis, cold and
reopened with a warm index, against SOS `dumpheap -stat` on the same dump.

    /usr/bin/python3 -m bench.reopen_bench [--objects 10000000]
        [--runtime net10] [--write docs/PERFORMANCE.md]

On the big-heap scenario dump, in one run, each a fresh process:

1. SOS: `dotnet dotnet-dump analyze DUMP -c "dumpheap -stat" -c exit`
   (after one untimed run that puts the dump in the page cache);
2. cold: `/usr/bin/python3 main.py report DUMP --format json` with an empty
   results cache and an empty engine graph index (both in a temporary
   folder, through $DUMPSCOPE_RESULTS and $DUMPSCOPE_INDEX); timed to the
   whole report on its standard output and to the end of the process
   (which waits for its engine to finish saving the graph index);
3. warm: the same command again, both caches now filled by 2; its JSON
   must equal the cold one;
4. the in-process breakdown: the caches emptied, then this script's
   `--child` (the same steps as `report --format json`: DumpSession,
   every analysis in order, the JSON report) timing each analysis, cold
   and then warm, for where the time goes and for the time from
   DumpSession() to the diagnosis without Python's start-up.

Wall time is around each process (and, for the report, also up to the
moment its whole JSON has come out); peak RSS is the largest resident set of
any process of its tree (wait4: ours is Python plus the engine it starts);
peak anonymous RSS is the tree's sum, polled every 20 ms. This is a
script, not a test: it takes minutes and a half-gigabyte dump.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.heap_stats_bench import (
    ENV,
    REPO,
    AnonymousPeak,
    Run,
    _cpu,
    mib,
    sos_run,
    timed,
)
from scenarios.dumps import ensure_dump

HEADING = "# Performance: open to diagnosis, cold and reopened"
# DumpSession.ExitSaveGrace in the engine (the report ends with the engine).
SAVE_GRACE = 20.0
PYTHON = "/usr/bin/python3"


@dataclass(frozen=True)
class ReportRun:
    run: Run
    # From the start to the moment the whole report had come out: the
    # process goes on after it while its engine saves the graph index.
    output_seconds: float


def report_run(dump: Path, caches: Path) -> ReportRun:
    """As heap_stats_bench.timed, also noting when the output is whole."""
    argv = [PYTHON, str(REPO / "main.py"), "report", str(dump), "--format", "json"]
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        cwd=REPO,
        env=_env(caches),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    output = b""
    output_at = None
    with AnonymousPeak(proc.pid) as peak:
        while chunk := proc.stdout.read1(1 << 16):
            output += chunk
            if output_at is None and output.rstrip().endswith(b"}"):
                try:
                    json.loads(output)
                except ValueError:
                    continue
                output_at = time.perf_counter() - started
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0 or output_at is None:
        raise SystemExit(f"{' '.join(argv)} failed with status {status}")
    run = Run(
        seconds,
        usage.ru_maxrss * 1024,
        peak.bytes,
        output,
        usage.ru_utime + usage.ru_stime,
    )
    return ReportRun(run, output_at)


def child_run(dump: Path, caches: Path) -> tuple[Run, dict]:
    run = timed(
        [PYTHON, "-m", "bench.reopen_bench", "--child", str(dump)], env=_env(caches)
    )
    return run, json.loads(run.output)


def _env(caches: Path) -> dict[str, str]:
    # Python keeps compiled modules (as an installed DumpScope does), in a
    # folder of this run rather than beside the sources: without them each
    # process compiles every module again (a third of a second of CPU).
    env = {key: value for key, value in ENV.items() if key != "PYTHONDONTWRITEBYTECODE"}
    return {
        **env,
        "PYTHONPYCACHEPREFIX": str(caches.parent / "pycache"),
        "DUMPSCOPE_RESULTS": str(caches / "results"),
        "DUMPSCOPE_INDEX": str(caches / "index"),
    }


def _empty(caches: Path) -> None:
    shutil.rmtree(caches, ignore_errors=True)
    caches.mkdir()


def child(dump: str) -> int:
    """What `report DUMP --format json` does, timed step by step; prints the
    timings as JSON."""
    started = time.perf_counter()
    # As main.py: the engine a core needs starts before the imports.
    from analysis.managed.prestart import start_for

    start_for(dump)
    from analysis.analyses import ANALYSES, DIAGNOSIS
    from analysis.report import build_report, render_json
    from analysis.session import DumpSession

    imported = time.perf_counter()
    cpu_imported = time.process_time()
    steps: dict[str, float] = {}
    with DumpSession(dump) as session:
        opened = time.perf_counter()
        for analysis in ANALYSES:
            before = time.perf_counter()
            session.outcome(analysis)
            steps[analysis.id] = time.perf_counter() - before
        diagnosed = time.perf_counter()
        cpu_diagnosed = time.process_time()
        render_json(build_report(session))
        reported = time.perf_counter()
        cached = sum(session.from_cache(a) for a in ANALYSES)
        engine = session.engine_version() is not None
    assert DIAGNOSIS.id in steps
    json.dump(
        {
            "imports": imported - started,
            "open": opened - imported,
            "to_diagnosis": diagnosed - imported,
            # This process only: the engine's CPU is not in it.
            "cpu_to_diagnosis": cpu_diagnosed - cpu_imported,
            "report": reported - diagnosed,
            "steps": steps,
            "from_cache": cached,
            "analyses": len(ANALYSES),
            "engine_started": engine,
        },
        sys.stdout,
    )
    return 0


def share(timings: dict, *names: str) -> str:
    part = sum(timings["steps"][n] for n in names)
    return f"{part:.1f} s ({part / timings['to_diagnosis']:.0%})"


def extra(label: str, cold: float, warm: float) -> str:
    return f"| {label} | {cold:.2f} s | {warm * 1000:.1f} ms |"


def row(label: str, run: Run) -> str:
    return (
        f"| {label} | {run.seconds:.2f} s | {run.cpu_seconds:.2f} s "
        f"| {mib(run.peak_rss_bytes)} | {mib(run.peak_anon_bytes)} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench.reopen_bench")
    parser.add_argument("--objects", type=int, default=10_000_000)
    parser.add_argument("--runtime", choices=("net10",), default="net10")
    parser.add_argument(
        "--write",
        type=Path,
        help="put the results in this Markdown file, replacing its section "
        f"('{HEADING}') or adding it before the heap-graph section",
    )
    parser.add_argument("--child", metavar="DUMP", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.child:
        return child(options.child)

    # Only the Linux engine runs here.
    subprocess.run([str(REPO / "engine" / "build.sh"), "--linux-only"], check=True)
    dump = ensure_dump("big-heap", options.runtime, objects=options.objects).path
    print(f"dump {dump} ({mib(dump.stat().st_size)})", file=sys.stderr)
    load_before = os.getloadavg()
    sos_run(dump)  # warms the page cache
    sos = sos_run(dump)
    print(f"SOS {sos.seconds:.2f} s", file=sys.stderr)
    python = timed([PYTHON, "-c", "pass"])
    print(f"python3 -c pass {python.seconds:.2f} s", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="dumpscope-bench-reopen-") as folder:
        caches = Path(folder) / "caches"
        _empty(caches)
        cold_report = report_run(dump, caches)
        cold = cold_report.run
        print(
            f"cold report {cold_report.output_seconds:.2f} s to its output, "
            f"{cold.seconds:.2f} s to its end",
            file=sys.stderr,
        )
        results_bytes = sum(f.stat().st_size for f in (caches / "results").iterdir())
        index_files = sorted((caches / "index").glob("*.graph"))
        warm_report = report_run(dump, caches)
        warm = warm_report.run
        print(f"warm report {warm.seconds:.2f} s", file=sys.stderr)
        if json.loads(cold.output) != json.loads(warm.output):
            raise SystemExit("the warm report differs from the cold one: not timing")
        _empty(caches)
        cold_child, cold_steps = child_run(dump, caches)
        print(f"cold breakdown {cold_child.seconds:.2f} s", file=sys.stderr)
        warm_child, warm_steps = child_run(dump, caches)
        print(f"warm breakdown {warm_child.seconds:.2f} s", file=sys.stderr)
    load_after = os.getloadavg()
    if warm_steps["from_cache"] != warm_steps["analyses"]:
        raise SystemExit("the warm breakdown was not served from the cache")

    steps = "\n".join(
        f"| {name} | {seconds:.2f} s | {warm_steps['steps'][name] * 1000:.1f} ms |"
        for name, seconds in cold_steps["steps"].items()
    )
    command = f"/usr/bin/python3 -m bench.reopen_bench --objects {options.objects}" + (
        f" --write {options.write}" if options.write else ""
    )
    output_row = (
        "| the same cold run, up to its whole report on standard output "
        f"| {cold_report.output_seconds:.2f} s | | | |"
    )
    report = f"""{HEADING}

Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.node()}:
{os.cpu_count()} CPUs ({_cpu()}), Linux {platform.release()}; load average
{load_before[0]:.1f} / {load_before[1]:.1f} / {load_before[2]:.1f} (1 / 5 / 15 min)
before, {load_after[0]:.1f} / {load_after[1]:.1f} / {load_after[2]:.1f} after:
a shared, busy machine, so the CPU column is the steadier comparison.

Dump: the `big-heap` scenario, {options.runtime}, {options.objects:,} planted
objects, core file {mib(dump.stat().st_size)}. One run of each, in this
order, each a fresh process (SOS after one untimed run that puts the dump
in the page cache; Python keeping its compiled modules, written by the cold
run, as an installed DumpScope does). Wall time is around the process, CPU its user + system
time; peak RSS is the largest resident set of one process of its tree
(wait4: ours is Python plus the engine it starts), peak anonymous RSS the
tree's sum polled every 20 ms (the dump's mapped pages are file-backed).

| process | wall | CPU | peak RSS | peak anonymous |
|---|---|---|---|---|
{row('SOS `dotnet-dump analyze DUMP -c "dumpheap -stat"`', sos)}
{row('`main.py report DUMP --format json`, cold (empty results cache and graph index)', cold)}
{output_row}
{row('the same, warm (both filled by the cold run)', warm)}
{row('`python3 -c pass` (the start-up of any Python process)', python)}

- Cold, open to the full diagnosis: **{cold_report.output_seconds / sos.seconds:.1f}x**
  SOS's `dumpheap -stat` time to the whole report on standard output
  ({cold_report.output_seconds:.2f} s), **{cold.seconds / sos.seconds:.1f}x** to the
  end of the process ({cold.seconds:.2f} s: after its output, the report
  waits for its engine to finish saving the heap graph's index in the
  background, at most {SAVE_GRACE:.0f} s more; the index was
  {"saved" if index_files else "NOT saved (abandoned)"}). Goal: at most 1x.
- Warm, open to the full diagnosis: **{warm.seconds:.2f} s** for the whole
  process, Python's start-up and imports included (goal: under 0.5 s);
  {warm.seconds / sos.seconds:.2f}x SOS. In the process, from `DumpSession()`
  to the diagnosis: **{warm_steps['to_diagnosis']:.3f} s**
  ({warm_steps['cpu_to_diagnosis']:.3f} s of CPU; the imports took
  {warm_steps['imports']:.2f} s, the JSON report after it
  {warm_steps['report']:.2f} s); the session asked no engine (the
  engine the program starts ahead for a core, before its imports, was
  stopped unused at exit: analysis/managed/prestart.py).
  The whole warm process used {warm.cpu_seconds:.2f} s of CPU, most of it
  Python's start-up and imports (`python3 -c pass` alone took
  {python.seconds:.2f} s wall here); its wall time is that CPU plus waiting
  for a core on this busy machine (an idle one was not measured).
- Cold, where the time goes: the heap graph (the engine's walk,
  references, dominators and retained sizes; see the heap-graph section) is
  {share(cold_steps, "heap_graph")} of the in-process time (what is left of
  its build after the walk: the rest runs in the engine's background);
  the one walk of the heap (`heap_stats`, which the graph and the native
  owners share) and the native owners answered from it,
  {share(cold_steps, "heap_stats", "native_owners")}; starting the engine
  and loading the DAC (`runtime`) {share(cold_steps, "runtime")}. The
  runtime, the heap statistics and the engine's short calls (GC heap,
  finalizer queue, threads, monitors, thread pool) run on a thread of their
  own from the first question, beside the native analyses: their steps
  here are what was left of them when the report asked. The heap graph's
  step ends when the graph is built; its index is saved in the background
  after it. The results cache does not make a first open faster, only
  every later one.
- The results cache entry: {results_bytes / 1024:,.0f} KiB; the engine's
  graph index beside it is measured in the heap-graph section.
- What a cold open still does that SOS's `dumpheap -stat` does not: it
  records every object's references in its walk of the heap (the
  statistics are answered when the walk ends, the native owners from the
  pointer fields it noted), resolves them, computes dominators and
  retained sizes (the graph's rest, in the engine's background), and
  writes the index for the next open; the engine runs on two cores of a machine SOS shares the same
  way, and the Python analyses run beside the engine only while it starts
  and walks the heap for its statistics.

Where the time goes (`--child`: the same steps as `report --format json`
in one process, timed per analysis; cold {cold_child.seconds:.2f} s and warm
{warm_child.seconds:.2f} s whole process):

| analysis | cold | warm |
|---|---|---|
{steps}
{extra("(opening: the dump's headers)", cold_steps["open"], warm_steps["open"])}
{extra("(the JSON report, after it)", cold_steps["report"], warm_steps["report"])}

Reproduce (from the repository root; makes the dump on first use):

    {command}
"""
    print(report)
    if options.write:
        _write_section(options.write, report)
    return 0


def _write_section(path: Path, section: str) -> None:
    """Replaces this benchmark's section, or puts it before the heap-graph
    section (whose benchmark rewrites the file from its heading on)."""
    text = path.read_text() if path.exists() else ""
    if HEADING in text:
        before, rest = text.split(HEADING, 1)
        after = rest.split("\n# Performance:", 1)
        tail = "# Performance:" + after[1] if len(after) > 1 else ""
    elif "# Performance: the heap graph" in text:
        before, rest = text.split("# Performance: the heap graph", 1)
        tail = "# Performance: the heap graph" + rest
    else:
        before, tail = text, ""
    parts = [before.rstrip(), section.rstrip(), tail.rstrip()]
    path.write_text("\n\n".join(p for p in parts if p) + "\n")


if __name__ == "__main__":
    sys.exit(main())
