"""Times the engine's heap graph (objects, references, dominators, retained
sizes) against its own heap statistics, and reopening with a warm index.

    /usr/bin/python3 -m bench.graph_bench [--objects 10000000 ...]
        [--runtime net10] [--repeat 3] [--write docs/PERFORMANCE-GRAPH.md]

For each object count, on the big-heap scenario dump, each a fresh engine
process (`engine/out/DumpScope.Engine`, Native AOT) fed one script of
requests on stdin:

1. `open`, `heap_stats`: the baseline (after one untimed warm-up run, so
   the dump is in the page cache);
2. `open {index: false}`, `graph`: the graph built, no index involved;
   1 and 2 alternate `--repeat` times (default 3) and the run of median
   engine time of each is kept: on a shared machine one pair of runs can
   be far off either way;
3. `open`, `graph` with an empty index folder: built and saved;
4. `open`, `graph`, `retained_by_type`, then `holders` of every type the
   leak rule would look at: reopened from the warm index, up to what the
   leak-suspect rule needs.

Each process's wall time, CPU time (user + system), peak RSS (wait4) and
peak anonymous RSS (polled from /proc every 20 ms; the dump is memory-mapped,
its pages are file-backed) are recorded, with the engine's own timing of
the walk and of the graph build. Two more, untimed, processes give the
engine's log: the time of each build step, and of loading the index. This
is a script, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from analysis.diagnosis.leak_suspects import leak_candidates
from analysis.managed.results import TypeRetainedPage, from_json
from bench.heap_stats_bench import ENGINE, ENV, REPO, Run, _cpu, mib, timed
from scenarios.dumps import ensure_dump


HEADING = "# Performance: the heap graph"

# What the numbers come from, and what is left: true of the engine's design,
# not of one run.
NOTES = """## How the build spends its memory and time, and what is left

- The finished graph takes about 31 bytes per object at two references per
  object: address 4 (its offset within its segment in units of the
  segment's alignment, 8 bytes on 64-bit: 32 bits cover any segment below
  32 GiB; a bigger one is refused with a clear error), type 2 (4 beyond
  65,536 types), size 4, row start 4, references 2 x 4, immediate
  dominator 4, retained size 4 (4 GiB and more kept aside, per object),
  plus under 1 for the address buckets (one per 256 bytes of heap).
- The build's peak is at the dominators (the engine logs each step's
  anonymous memory and page faults): the graph's 25 bytes per object, plus
  the postorder 4, which the depth-first search's stack shares, the
  dominators by postorder number 4, and the dominators by object 4, which
  hold the postorder numbers until the dominators are known. The walk
  stays below it: each reference is a 32-bit code (its chunk of the heap's
  segments and its offset there in pointer-sized units; a value no code
  names is kept whole beside, and a heap whose segments' chunks pass
  32 GiB keeps 64 bits), resolved to an index in place; each run's 64-bit
  addresses become 32-bit offsets written over themselves as soon as it is
  walked. Every temporary, and every column of 2 MiB and more, lives
  outside the GC heap in whole huge pages (in a VM a page fault costs
  microseconds, and fresh memory is the build's largest cost), so its
  memory goes back the moment it is freed. The join and the steps after
  it stay below the peak.
- Anonymous and file-backed: with the index on, the graph is answered as
  soon as it is built and saved in the background; the dominator tree's
  rows (8 bytes per object), which the first questions and the save both
  need, are made in a scratch file mapped beside the index (file-backed
  pages: in the peak RSS column, not in the anonymous one). Once saved, the
  graph is answered from the mapped index file and the built arrays are
  given back. With the index off
  (`open {index: false}`) nothing is file-backed: the rows are made in
  anonymous memory when a question first needs them (after the build:
  8 bytes per object more then). The warm reopen maps the file read-only
  and checks each section's checksum (in parallel, at memory speed) instead
  of reading and copying it: its anonymous memory is about 1 byte per
  object.
- Time: the roots are enumerated beside the resolution and the join, the
  runs are resolved and joined in parallel (in one pass per run instead,
  straight into the graph's array, they took a fifth more CPU: measured
  and left out). The dominators iterate over postorder numbers (a walk
  up the tree reads one array, "which is higher" needs no lookup); after
  the first pass only the nodes whose chain of dominators changed fold
  again (big-heap: a few dozen of 10 million), so a second pass costs a
  scan of one bit per node; while the depth-first search runs on one
  core, the other backs with memory the two arrays the dominators write
  whole (Linux: `MADV_POPULATE_WRITE`), and the retained sizes take the
  place of one of them; the retained sizes are one loop over the size
  column and one up the postorder. The engine is compiled ahead of time
  (Native AOT): both processes time the same machine code, with no JIT
  and no tiering. Both walks (`heap_stats` and the
  graph's) read a Linux core in place through a read-only mapping of their
  own, the pages of the heap's segments mapped ahead of the walk. What is
  left is mostly the walk, which reads every object and its references and
  writes them down in fresh memory (about twice the `heap_stats` walk, in
  the stage log above), then the resolution (an address lookup per
  reference) and the depth-first search and first pass of the dominators
  (single-threaded, bound by memory latency: each edge looks up its
  target's number and dominator).
"""


def requests(*calls: tuple[str, dict]) -> bytes:
    lines = [
        {"jsonrpc": "2.0", "id": i + 1, "method": method, "params": params}
        for i, (method, params) in enumerate(calls)
    ]
    lines.append({"jsonrpc": "2.0", "id": len(lines) + 1, "method": "shutdown"})
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def answers(run: Run) -> dict[int, dict]:
    found = {}
    for line in run.output.splitlines():
        message = json.loads(line)
        if "id" in message and message.get("method") is None:
            if "error" in message:
                raise SystemExit(f"engine error: {message['error']}")
            found[message["id"]] = message.get("result")
    return found


def engine(stdin: bytes, index: Path) -> Run:
    return timed([str(ENGINE)], stdin, {**ENV, "DUMPSCOPE_INDEX": str(index)})


def engine_log(stdin: bytes, index: Path, prefix: str) -> str:
    """One more (untimed) engine process: its log line starting with prefix
    (the engine logs each build step's time, and the index's load time)."""
    done = subprocess.run(
        [str(ENGINE)],
        input=stdin,
        capture_output=True,
        env={**ENV, "DUMPSCOPE_INDEX": str(index)},
        cwd=REPO,
        check=True,
    )
    lines = [
        line.removeprefix(prefix)
        for line in done.stderr.decode(errors="replace").splitlines()
        if line.startswith(prefix)
    ]
    return lines[-1] if lines else "(not logged)"


def median(runs: list[Run]) -> tuple[Run, list[float]]:
    """The run whose engine time (of its second request) is the median, and
    every run's engine time in the order they ran."""
    seconds = [answers(run)[2]["elapsed_seconds"] for run in runs]
    middle = sorted(range(len(runs)), key=lambda i: seconds[i])[len(runs) // 2]
    return runs[middle], seconds


def measure(objects: int, runtime: str, index: Path, repeat: int) -> dict:
    dump = ensure_dump("big-heap", runtime, objects=objects)
    opened = {"dump": str(dump.path)}
    if runtime == "net8":
        opened["dac"] = str(dump.runtime_dir / "libmscordaccore.so")
    stats_script = requests(("open", opened), ("heap_stats", {}))
    engine(stats_script, index)  # warms the page cache
    unindexed = requests(("open", {**opened, "index": False}), ("graph", {}))
    stats_runs, built_runs, loads = [], [], []
    for _ in range(repeat):
        loads.append(os.getloadavg()[0])
        stats_runs.append(engine(stats_script, index))
        built_runs.append(engine(unindexed, index))
    stats, stats_all = median(stats_runs)
    built, built_all = median(built_runs)
    steps = engine_log(unindexed, index, "engine: heap graph of ")
    for old in index.glob("*"):
        old.unlink()
    saved = engine(requests(("open", opened), ("graph", {})), index)
    index_bytes = sum(f.stat().st_size for f in index.glob("*.graph"))

    # The leak rule's questions: which types it needs holders for comes from
    # retained_by_type, so ask that first (one process), then everything
    # in one timed process as the application would.
    probe = answers(
        engine(
            requests(
                ("open", opened), ("graph", {}), ("retained_by_type", {"limit": 100000})
            ),
            index,
        )
    )
    page = from_json(TypeRetainedPage, probe[3])
    reachable = int(probe[2]["reachable_bytes"])
    candidates = leak_candidates(page.items, reachable)
    loaded = engine_log(
        requests(("open", opened), ("graph", {})), index, "engine: index "
    )
    reopened = engine(
        requests(
            ("open", opened),
            ("graph", {}),
            ("retained_by_type", {"limit": 100000}),
            *(("holders", {"method_table": int(t.method_table)}) for t in candidates),
        ),
        index,
    )

    stats_answer = answers(stats)[2]
    built_answer = answers(built)[2]
    reopened_answer = answers(reopened)[2]
    assert reopened_answer["from_index"] is True
    assert built_answer["reachable_bytes"] == reopened_answer["reachable_bytes"]
    return {
        "objects": objects,
        "dump": dump.path,
        "dump_bytes": dump.path.stat().st_size,
        "graph_objects": built_answer["objects"],
        "references": built_answer["references"],
        "stats": stats,
        "stats_all": stats_all,
        "built_all": built_all,
        "loads": loads,
        "built_peak_anon": max(run.peak_anon_bytes for run in built_runs),
        "stats_walk_seconds": stats_answer["elapsed_seconds"],
        "built": built,
        "graph_seconds": built_answer["elapsed_seconds"],
        "saved": saved,
        "index_bytes": index_bytes,
        "reopened": reopened,
        "candidates": len(candidates),
        "steps": steps,
        "logged": logged_steps(steps),
        "loaded": loaded.split(" loaded in ")[-1],
    }


def logged_steps(steps: str) -> tuple[float, float, float] | None:
    """The resolution's, the depth-first search's and the dominators'
    passes' wall times in the build's log."""
    found = [
        re.search(pattern, steps)
        for pattern in (
            r"resolve ([0-9.]+) s",
            r"depth-first search ([0-9.]+) s",
            r"dominators \([0-9]+ pass(?:es)?\) ([0-9.]+) s",
        )
    ]
    if any(f is None for f in found):
        return None
    resolve, search, passes = (float(f.group(1)) for f in found if f is not None)
    return resolve, search, passes


def floor(m: dict) -> str:
    """What the present design cannot go below, from this run's numbers."""
    if m["logged"] is None:
        return ""
    resolve, search, passes = m["logged"]
    walk = m["stats_walk_seconds"]
    least = walk + resolve + search + passes
    return f"""- The steps every build of the graph takes, at their present speed, one
  after the other (each needs the last one's whole result): a walk that
  reads every object as `heap_stats` does, and more ({walk:.2f} s at
  best); every reference turned into an object's number (resolve,
  {resolve:.2f} s on both cores, in the logged build); the depth-first
  search ({search:.2f} s) and the dominators' passes ({passes:.2f} s), on
  one core. Those alone come to {least:.2f} s, **{least / walk:.1f}x**
  `heap_stats`, before the graph's arrays are joined, its memory
  backed or the retained sizes summed.
"""


def row(label: str, run: Run, objects: int) -> str:
    return (
        f"| {label} | {run.seconds:.2f} s | {run.cpu_seconds:.2f} s "
        f"| {mib(run.peak_rss_bytes)} | {mib(run.peak_anon_bytes)} "
        f"| {run.peak_anon_bytes / objects:.0f} |"
    )


def section(m: dict) -> str:
    n = m["graph_objects"]
    ratio = m["graph_seconds"] / m["stats_walk_seconds"]
    process_ratio = m["built"].seconds / m["stats"].seconds
    cpu_ratio = m["built"].cpu_seconds / m["stats"].cpu_seconds
    reopen_label = (
        f"`open` + `graph` + `retained_by_type` + `holders` x{m['candidates']}"
        " (warm index)"
    )
    return f"""## {m['objects']:,} planted objects

Dump {mib(m['dump_bytes'])}; the graph holds {n:,} objects (free space
left out) and {m['references']:,} references.

| engine process | wall | CPU | peak RSS | peak anonymous | anonymous bytes per graph object |
|---|---|---|---|---|---|
{row('`open` + `heap_stats`', m['stats'], n)}
{row('`open {index: false}` + `graph` (built)', m['built'], n)}
{row('`open` + `graph` (built and saved to the index)', m['saved'], n)}
{row(reopen_label, m['reopened'], n)}

- Graph + dominators + retained sizes, as the engine times them:
  {m['graph_seconds']:.2f} s, against {m['stats_walk_seconds']:.2f} s for the
  `heap_stats` walk: **{ratio:.1f}x** (goal: at most 2x), medians of
  {len(m['built_all'])} alternated runs each (`heap_stats` {seconds(m['stats_all'])};
  `graph` {seconds(m['built_all'])}; load average {loads(m['loads'])} before
  each pair). Whole processes (the median runs): {process_ratio:.1f}x wall,
  {cpu_ratio:.1f}x CPU.
{floor(m)}- Peak anonymous memory of the building engine, the highest of its runs:
  **{m['built_peak_anon'] / n:.0f} bytes per object** (goal: at most 40).
- Where the build's time goes (the engine's log of one more, untimed,
  build: wall, then the process's CPU time over the step): {m['steps']}.
- Index file: {mib(m['index_bytes'])}, **{m['index_bytes'] / n:.0f} bytes per
  object**; loading it (mapping it and checking every section's checksum),
  as the engine logs it: **{m['loaded']}**.
- Reopen with a warm index, to every answer the leak-suspect rule needs:
  **{m['reopened'].seconds:.2f} s** for the whole process (start, open, load).
"""


def seconds(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values) + " s"


def loads(values: list[float]) -> str:
    return ", ".join(f"{v:.1f}" for v in values)


def growth(results: list[dict]) -> str:
    """How the largest point compares with the smallest: per object, time
    and memory should stay about the same if the build grows linearly."""
    if len(results) < 2:
        return ""
    small, big = results[0], results[-1]
    rows = []
    for m in (small, big):
        n = m["graph_objects"]
        rows.append(
            f"| {n:,} | {m['graph_seconds'] / n * 1e6:.2f} s "
            f"| {m['built'].cpu_seconds / n * 1e6:.2f} s "
            f"| {m['built_peak_anon'] / n:.1f} "
            f"| {m['saved'].peak_anon_bytes / n:.1f} "
            f"| {m['index_bytes'] / n:.1f} |"
        )
    header = (
        "| objects | build (engine's timing) | build process CPU "
        "| peak anonymous, built | peak anonymous, built and saved | index file |"
    )
    return f"""## Growth: {small['graph_objects']:,} to {big['graph_objects']:,} objects

Per million graph objects (time) and per object (bytes), from the rows above:

{header}
|---|---|---|---|---|---|
{chr(10).join(rows)}

"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench.graph_bench")
    parser.add_argument(
        "--objects", type=int, action="append", help="default: 10000000"
    )
    parser.add_argument("--runtime", choices=("net10", "net8"), default="net10")
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="alternated heap_stats and graph runs per dump (default 3)",
    )
    parser.add_argument(
        "--write",
        type=Path,
        help="put the results in this Markdown file, replacing its heap-graph "
        "section (from its '# Performance: the heap graph' heading on)",
    )
    options = parser.parse_args(argv)
    counts = options.objects or [10_000_000]

    subprocess.run([str(REPO / "engine" / "build.sh")], check=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="dumpscope-bench-index-") as folder:
        for objects in counts:
            results.append(
                measure(objects, options.runtime, Path(folder), options.repeat)
            )
            print(section(results[-1]), file=sys.stderr)

    command = (
        "/usr/bin/python3 -m bench.graph_bench "
        + " ".join(f"--objects {c}" for c in counts)
        + f" --runtime {options.runtime}"
        + (f" --repeat {options.repeat}" if options.repeat != 3 else "")
        + (f" --write {options.write}" if options.write else "")
    )
    load = os.getloadavg()
    report = f"""{HEADING}

Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.node()}:
{os.cpu_count()} CPUs ({_cpu()}), Linux {platform.release()}, ClrMD 4.2.750101;
load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min) while it
ran: on a shared machine the CPU column is the steadier comparison.

Dumps: the `big-heap` scenario, {options.runtime}. Every row is one fresh
engine process given one script of requests, after a warm-up run of
`heap_stats` that puts the dump in the page cache; the first two rows are
the runs of median engine time of {options.repeat} alternated runs each, the
others one run. Wall time is around
the process; CPU is its user + system time (wait4); peak RSS is the
kernel's maximum resident set; peak anonymous RSS is polled from
`/proc/PID/status` every 20 ms (the dump is memory-mapped read-only: its
pages are file-backed, the engine's own memory is the anonymous part).

{''.join(section(m) + chr(10) for m in results)}{growth(results)}{NOTES}
Reproduce (from the repository root; makes the dumps on first use):

    {command}
"""
    print(report)
    if options.write:
        text = options.write.read_text() if options.write.exists() else ""
        kept, _, rest = text.partition(HEADING)
        # A section after this one (its own top-level heading) stays.
        after = rest.split("\n# ", 1)
        tail = "# " + after[1].rstrip() + "\n" if len(after) > 1 else ""
        parts = [kept.rstrip(), report.rstrip() + "\n", tail]
        options.write.write_text("\n\n".join(p for p in parts if p))
    return 0


if __name__ == "__main__":
    sys.exit(main())
