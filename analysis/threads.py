"""Joins the OS's thread list (TEB, OS apartment, native stack) with the
CLR's (names, roles, locks, managed stack) by OS thread id."""

from __future__ import annotations

from typing import Optional

from analysis.managed.results import ExceptionInfo, ManagedThread
from analysis.model.native import AddressOrGap, NativeThread
from analysis.model.threads import ThreadView, WaitTarget
from analysis.model.vocab import Apartment, WaitKind
from analysis.values import Address

_COM_APARTMENTS = (Apartment.STA, Apartment.MTA)


def merge_threads(
    native: tuple[NativeThread, ...], managed: tuple[ManagedThread, ...]
) -> tuple[ThreadView, ...]:
    """Every native thread, with its CLR view where the CLR knows it, then
    the CLR threads the dump's thread list lacks."""
    by_os_id = {t.os_id: t for t in managed if t.os_id}
    rows = [_thread_view(n, by_os_id.get(n.os_id)) for n in native]
    seen = {n.os_id for n in native}
    rows += [_thread_view(None, m) for m in by_os_id.values() if m.os_id not in seen]
    return tuple(rows)


def _thread_view(n: Optional[NativeThread], m: Optional[ManagedThread]) -> ThreadView:
    apartment_os = n.apartment_os if n is not None else Apartment.UNKNOWN
    apartment_clr = m.apartment if m is not None else None
    if apartment_os != Apartment.UNKNOWN:
        apartment = apartment_os
    else:
        apartment = apartment_clr or Apartment.UNKNOWN
    disagrees = (
        apartment_os in _COM_APARTMENTS
        and apartment_clr in _COM_APARTMENTS
        and apartment_os != apartment_clr
    )
    os_id = n.os_id if n is not None else (m.os_id if m is not None else None)
    assert os_id is not None, "a thread row needs an OS id from one side"
    waits = m.waits_for if m is not None else None
    return ThreadView(
        os_id=os_id,
        managed_id=m.managed_id if m is not None else None,
        name=(m.name if m is not None else None) or (n.name if n is not None else None),
        teb=_known(n.teb if n else None, m.teb if m else None),
        stack_base=_known(n.stack_base if n else None, m.stack_base if m else None),
        stack_limit=_known(n.stack_limit if n else None, m.stack_limit if m else None),
        apartment_os=apartment_os,
        apartment_clr=apartment_clr,
        apartment=apartment,
        apartment_disagrees=disagrees,
        is_finalizer=bool(m and m.is_finalizer),
        is_gc=bool(m and m.is_gc),
        is_threadpool=bool(m and m.is_threadpool),
        # The engine counts monitors from the lock table; the runtime's own
        # counter (SOS's, -1 on .NET Core) only stands in for an older engine.
        lock_count=(
            m.monitors_held
            if m is not None and m.monitors_held is not None
            else (
                m.lock_count
                if m is not None and m.lock_count is not None and m.lock_count >= 0
                else None
            )
        ),
        exception=_exception_text(m.exception if m is not None else None),
        waits_for=(
            WaitTarget(
                object=waits.object,
                type=waits.type,
                owner_os_id=waits.owner_os_id,
                kind=waits.kind or WaitKind.ENTER,
            )
            if waits is not None
            else None
        ),
        in_com_call=bool(n and n.in_com_call),
        frames=m.frames if m is not None else (),
        native_frames=n.native_frames if n is not None else (),
    )


def _known(*values: Optional[AddressOrGap]) -> Optional[Address]:
    """The first value that is a known, non-zero address."""
    return next((v for v in values if isinstance(v, Address) and v), None)


def _exception_text(exception: Optional[ExceptionInfo]) -> Optional[str]:
    if exception is None:
        return None
    text = f"{exception.type or ''}: {exception.message or ''}".strip(": ")
    return text or None
