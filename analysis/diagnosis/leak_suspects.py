"""Leak suspects from the dominator tree.

A large live heap is not a leak by itself: a program may well hold a big
working set. What a leak looks like in the dominator tree is an
accumulation point: one object (a dictionary's entry array, an event's
invocation list, a list's array) under which thousands of small objects of
one type pile up, together retaining a large share of the live heap; or
thousands of objects of one type each held on its own by the same kind of
root (one GC handle each). The engine groups each type's instances by the
object that holds them (`holders`); this rule reads those groups and states
each suspect with the chain from its root to the accumulated objects.

The caller asks the engine for the graph summary and the retained size per
type, picks the types `leak_candidates` names, asks for their holders, and
passes all of it to `leak_suspects`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Optional

from analysis.managed.results import (
    ChainLink,
    HolderGroup,
    InstanceHolders,
    RootRef,
    TypeRetained,
)
from analysis.model.diagnosis import Evidence, Finding
from analysis.model.vocab import RootKind, RowKind, Severity
from analysis.values import human_size

# An accumulation: at least this many objects of one type under one holder...
LEAK_MIN_OBJECTS = 1000
# ...retaining at least this share of the live managed heap...
LEAK_MIN_SHARE = 0.20
# ...and at least this many bytes (a tiny heap's 20% is no leak).
LEAK_MIN_BYTES = 1024 * 1024
# Namespaces of the runtime's own classes: a root there is named as such.
RUNTIME_NAMESPACES = ("System.", "Microsoft.", "Internal.")


def leak_candidates(
    types: Iterable[TypeRetained], reachable_bytes: int
) -> tuple[TypeRetained, ...]:
    """The types whose holders the rule needs: enough reachable instances and
    a retained size (all instances together) of at least the share a
    suspect must have; no group of a type can retain more than the type."""
    need = max(LEAK_MIN_BYTES, LEAK_MIN_SHARE * reachable_bytes)
    return tuple(
        t
        for t in types
        if (t.reachable_count or 0) >= LEAK_MIN_OBJECTS and (t.retained or 0) >= need
    )


def _is_runtime_type(name: Optional[str]) -> bool:
    return (name or "").startswith(RUNTIME_NAMESPACES)


def _short(name: Optional[str]) -> str:
    """A type name without its namespace (generic arguments kept)."""
    text = name or "?"
    head = text.split("<", 1)[0]
    cut = head.rfind(".")
    return text[cut + 1 :] if cut >= 0 else text


def _link_text(link: ChainLink) -> str:
    repeat = link.repeat or 1
    text = _short(link.type)
    return f"{repeat:,} × {text}" if repeat > 1 else text


def describe_root(root: Optional[RootRef]) -> str:
    """A root as a sentence's subject: "the static field X.Y", "a strong GC handle"."""
    if root is None:
        return "a GC root"
    kind = root.kind
    if kind == RootKind.STATIC:
        if root.name is None:
            return "the runtime's table of static fields"
        where = (
            " (inside the runtime's own classes)" if _is_runtime_type(root.name) else ""
        )
        return f"the static field {root.name}{where}"
    if kind == RootKind.THREAD_STATIC:
        return "a thread-static field"
    if kind == RootKind.STACK:
        thread = f" of thread {root.thread_os_id}" if root.thread_os_id else ""
        return f"a local variable{thread}"
    if kind in (
        RootKind.STRONG_HANDLE,
        RootKind.REF_COUNTED_HANDLE,
        RootKind.SIZED_REF_HANDLE,
    ):
        return "a strong GC handle (GCHandle.Alloc, or the runtime's own)"
    if kind in (RootKind.PINNED_HANDLE, RootKind.ASYNC_PINNED_HANDLE):
        return "a pinned GC handle"
    if kind == RootKind.FINALIZER_QUEUE:
        return "the finalizer queue (objects waiting for their finalizer)"
    return "a GC root"


def _suspect_groups(
    holders: Iterable[InstanceHolders], reachable_bytes: int
) -> list[tuple[InstanceHolders, HolderGroup]]:
    found = []
    for result in holders:
        for group in result.groups:
            retained = int(group.retained or 0)
            if (
                (group.count or 0) >= LEAK_MIN_OBJECTS
                and retained >= LEAK_MIN_BYTES
                and retained >= LEAK_MIN_SHARE * reachable_bytes
            ):
                found.append((result, group))
    return found


def leak_suspects(
    reachable_bytes: int, holders: Sequence[InstanceHolders]
) -> tuple[Finding, ...]:
    """One finding per holder under which objects accumulate (or per kind of
    root holding thousands of objects one by one). reachable_bytes is the
    live managed heap (GraphSummary.reachable_bytes); holders the engine's
    answer for each of `leak_candidates`. Several types piled up under one
    holder (an entry and the array it owns) make one finding, named after
    the program's own type when there is one."""
    if reachable_bytes <= 0:
        return ()
    by_holder: dict[object, list[tuple[InstanceHolders, HolderGroup]]] = {}
    for result, group in _suspect_groups(holders, reachable_bytes):
        key: object = (
            group.holder
            if group.holder is not None
            else ("roots", group.roots[0].kind if group.roots else None)
        )
        by_holder.setdefault(key, []).append((result, group))

    findings = []
    for piles in by_holder.values():
        # The program's own type first, then the one retaining most.
        piles.sort(
            key=lambda p: (_is_runtime_type(p[0].name), -int(p[1].retained or 0))
        )
        result, group = piles[0]
        findings.append(_finding(result, group, piles[1:], reachable_bytes))
    findings.sort(key=lambda f: f.title)
    return tuple(findings)


def _finding(
    result: InstanceHolders,
    group: HolderGroup,
    others: list[tuple[InstanceHolders, HolderGroup]],
    reachable_bytes: int,
) -> Finding:
    # An entry type and the array each entry owns pile up under one holder;
    # together they retain what the largest pile retains.
    retained = max(int(g.retained or 0) for _, g in [(result, group), *others])
    share = retained / reachable_bytes
    count = int(group.count or 0)
    name = result.name or "?"
    root = group.roots[0] if group.roots else None
    also = "".join(
        f", with {int(g.count or 0):,} {r.name}" for r, g in others if r.name != name
    )
    amount = (
        f"{human_size(retained)}, {share:.0%} of the live managed heap "
        f"({human_size(reachable_bytes)})"
    )
    evidence: tuple[Evidence, ...]
    if group.holder is None:
        title = f"{count:,} {_short(name)} objects each held by a root of their own"
        statement = (
            f"{count:,} {name} objects{also} are each kept alive on their own by "
            f"{describe_root(root)}: {amount}. Each root must be released (a handle "
            "freed, a reference cleared) for its object to go."
        )
        evidence = (
            Evidence(
                RowKind.HEAP_TYPE, name, f"{count:,} {name}: {human_size(retained)}"
            ),
        )
    else:
        chain = " → ".join(_link_text(link) for link in group.chain)
        holder = _short(group.holder_type)
        title = f"{count:,} {_short(name)} objects accumulate in one {holder}"
        subject = describe_root(root)
        statement = (
            f"{subject[:1].upper()}{subject[1:]} holds {chain}, which holds "
            f"{count:,} {name} objects{also}: {amount}. Nothing removes them: "
            "as long as that root holds the chain, every one of them stays alive."
        )
        evidence = (
            Evidence(
                RowKind.HEAP_TYPE, name, f"{count:,} {name}: {human_size(retained)}"
            ),
            Evidence(
                RowKind.HEAP_TYPE,
                group.holder_type or "?",
                f"the holder {group.holder_type} at 0x{int(group.holder):x} "
                f"retains {human_size(int(group.holder_retained or 0))}",
            ),
        )
    return Finding(
        rule="leak-suspect",
        severity=Severity.WARNING,
        title=title,
        statement=statement,
        evidence=evidence,
    )
