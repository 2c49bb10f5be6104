"""Threads with their COM apartment, role, locks and stacks (`!t`, `~*k`).

The finalizer thread is highlighted red when it is blocked, STA threads amber:
the two ends of the print-service story.
"""

from __future__ import annotations

from typing import Any, Optional

from qtpy import QtWidgets
from qtpy.QtCore import Qt

from views.base import CRITICAL, INFO, WARNING, ResultView
from views.table_model import Column, FilterTable, RowStyle


def role(thread: Any) -> str:
    roles = [
        label
        for label, flag in (
            ("Finalizer", thread.is_finalizer),
            ("GC", thread.is_gc),
            ("Threadpool", thread.is_threadpool),
        )
        if flag
    ]
    return ", ".join(roles)


def waits_text(thread: Any, names: Optional[dict[int, str]] = None) -> str:
    if thread.in_com_call:
        return "COM call into another apartment"
    if thread.waits_on_task:
        return "a task, synchronously (Task.Wait / .Result)"
    waits = thread.waits_for
    if waits is None:
        return ""
    if not waits.blocked:
        return f"Monitor.Wait on {waits.type or '?'} for a pulse"
    owner = ""
    if waits.owner_os_id:
        name = (names or {}).get(waits.owner_os_id)
        who = f"'{name}' " if name else ""
        owner = f" held by {who}{waits.owner_os_id} (0x{waits.owner_os_id:x})"
    return f"monitor on {waits.type or '?'}{owner}"


def apartment_text(thread: Any) -> str:
    if thread.apartment_disagrees:
        return f"{thread.apartment} (CLR: {thread.apartment_clr})"
    return thread.apartment


THREAD_COLUMNS = [
    Column("OSID", lambda t: t.os_id, "int", "operating-system thread id"),
    Column("OSID (hex)", lambda t: f"{t.os_id:x}"),
    Column("ID", lambda t: t.managed_id, "int", "managed thread id"),
    Column("Name", lambda t: t.name),
    Column(
        "Apt",
        apartment_text,
        tooltip="COM apartment: from the TEB where the dump has one, else from the CLR",
    ),
    Column("Role", role),
    Column("Locks", lambda t: t.lock_count, "int"),
    Column("TEB", lambda t: t.teb, "address"),
    Column("Exception", lambda t: t.exception),
]


def owner_text(monitor: Any, names: dict[int, str]) -> str:
    if not monitor.owner_os_id:
        return ""
    name = names.get(monitor.owner_os_id)
    return f"'{name}' {monitor.owner_os_id}" if name else str(monitor.owner_os_id)


def waiters_text(monitor: Any) -> str:
    ids = ", ".join(str(i) for i in monitor.waiting_os_ids)
    count = monitor.waiter_count or len(monitor.waiting_os_ids)
    return f"{count}: {ids}" if ids else str(count or "")


def thread_style(thread: Any) -> Optional[RowStyle]:
    if thread.is_finalizer and thread.blocked:
        return RowStyle(CRITICAL, bold=True, tooltip="the finalizer thread is blocked")
    if thread.apartment == "STA":
        return RowStyle(WARNING, bold=True, tooltip="single-threaded apartment")
    if thread.blocked:
        return RowStyle(
            INFO, tooltip="blocked: on a monitor another thread holds, or a task"
        )
    return None


def frame_line(frame: Any) -> str:
    if isinstance(frame, str):
        return frame
    address = getattr(frame, "address", None) or getattr(
        frame, "instruction_pointer", None
    )
    name = getattr(frame, "name", None) or getattr(frame, "method", None) or ""
    how = getattr(frame, "how", None) or getattr(frame, "kind", None)
    text = f"0x{int(address):016x}  {name}" if address is not None else str(name)
    return f"{text}   [{how}]" if how else text


class ThreadsView(ResultView):
    title = "Threads"

    def __init__(self, parent: Optional[QtWidgets.QWidget] = None) -> None:
        super().__init__(parent)
        self.legend = QtWidgets.QLabel(
            f"<span style='background:{CRITICAL}'>&nbsp;blocked finalizer&nbsp;</span> "
            f"<span style='background:{WARNING}'>&nbsp;STA thread&nbsp;</span> "
            f"<span style='background:{INFO}'>&nbsp;blocked on a monitor or a task&nbsp;</span>",
            self,
        )
        self._names: dict[int, str] = {}
        columns = THREAD_COLUMNS + [
            Column("Waits for", lambda t: waits_text(t, self._names))
        ]
        self.threads = FilterTable(columns, thread_style, "Filter threads", self)
        self.managed_stack = QtWidgets.QListWidget(self)
        self.native_stack = QtWidgets.QListWidget(self)
        mono = self.native_stack.font()
        mono.setFamily("monospace")
        self.native_stack.setFont(mono)
        self.managed_stack.setFont(mono)
        stacks = QtWidgets.QTabWidget(self)
        stacks.addTab(self.managed_stack, "Managed stack")
        stacks.addTab(self.native_stack, "Native stack")
        self.locks = FilterTable(
            [
                Column("Object", lambda m: m.object, "address"),
                Column("Type", lambda m: m.type),
                Column("Owner", lambda m: owner_text(m, self._names)),
                Column("Recursion", lambda m: m.recursion, "int"),
                Column("Waiters", waiters_text),
                Column("Kind", lambda m: m.source),
            ],
            lambda m: RowStyle(INFO, tooltip="threads wait for it")
            if waiters_text(m)
            else None,
            "Filter locks",
            self,
        )
        stacks.addTab(self.locks, "Locks (syncblk)")
        self.locks.sig_record_selected.connect(self._select_owner)
        self.stacks = stacks
        split = QtWidgets.QSplitter(Qt.Orientation.Vertical, self)
        split.addWidget(self.threads)
        split.addWidget(stacks)
        split.setSizes([400, 250])
        self.pool_label = QtWidgets.QLabel(self)
        header = QtWidgets.QHBoxLayout()
        header.addWidget(self.legend)
        header.addStretch(1)
        header.addWidget(self.pool_label)
        self.body.addLayout(header)
        self.body.addWidget(split, 1)
        self.threads.sig_record_selected.connect(self._show_stacks)

    def set_thread_pool(self, pool: Any) -> None:
        """The thread pool's counts (`threadpool`) beside the legend."""
        if pool is None or not pool.started:
            text = "Thread pool: not started"
        else:
            text = (
                f"Thread pool: {pool.workers_total} workers, {pool.workers_running} running, "
                f"{pool.workers_idle} idle (min {pool.min_workers}, max {pool.max_workers})"
            )
        self.pool_label.setText(text)

    def set_threads(self, threads: Any) -> None:
        self._names = {t.os_id: t.name for t in threads if t.name}
        self.threads.set_records(threads)
        self.threads.view.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        # Open on the thread the story is about: a blocked finalizer if any.
        if not self.threads.select_where(
            lambda t: thread_style(t) is not None and t.is_finalizer
        ):
            self.threads.select_where(lambda t: True)

    def set_monitors(self, monitors: Any) -> None:
        """The held monitors (sync blocks and thin locks), like `syncblk`."""
        held = [m for m in monitors if m.is_held or m.waiting_os_ids]
        self.locks.set_records(held)
        self.stacks.setTabText(2, f"Locks (syncblk): {len(held)}")

    def _select_owner(self, monitor: Any) -> None:
        if monitor is not None and monitor.owner_os_id:
            current = self.stacks.currentIndex()
            self.select_key(monitor.owner_os_id)
            self.stacks.setCurrentIndex(current)

    def _show_stacks(self, thread: Any) -> None:
        if thread is None:
            return
        self.managed_stack.clear()
        self.native_stack.clear()
        self.managed_stack.addItems(
            [frame_line(f) for f in thread.frames] or ["(no managed frames)"]
        )
        self.native_stack.addItems(
            [frame_line(f) for f in thread.native_frames] or ["(no native frames)"]
        )
        if not thread.frames and thread.native_frames:
            self.stacks.setCurrentIndex(1)

    def select_key(self, key: Any) -> bool:
        return self.threads.select_where(lambda t: t.os_id == key)
