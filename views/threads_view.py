"""Threads with their COM apartment, role, locks and stacks (`!t`, `~*k`).

The finalizer thread is highlighted red when it is blocked, STA threads amber:
the two ends of the print-service story.
"""

from __future__ import annotations

from typing import Any, Optional

from qtpy import QtWidgets
from qtpy.QtCore import Qt

from analysis.managed.results import Monitor, ThreadPoolInfo
from analysis.model.columns import (
    MONITOR_COLUMNS,
    THREAD_COLUMNS,
    Column,
    thread_name,
    waits_text,
)
from analysis.model.native import NativeFrame
from analysis.model.threads import Frame, ThreadView
from analysis.model.vocab import Apartment, ManagedFrameKind, RowKind
from views.base import CRITICAL, INFO, WARNING, ResultView
from views.table_model import FilterTable, RowStyle


def owner_text(monitor: Monitor, names: dict[int, str]) -> str:
    return thread_name(monitor.owner_os_id, names) if monitor.owner_os_id else ""


def thread_style(thread: ThreadView) -> Optional[RowStyle]:
    if thread.is_finalizer and thread.blocked:
        return RowStyle(CRITICAL, bold=True, tooltip="the finalizer thread is blocked")
    if thread.apartment == Apartment.STA:
        return RowStyle(WARNING, bold=True, tooltip="single-threaded apartment")
    if thread.blocked:
        return RowStyle(
            INFO, tooltip="blocked: on a monitor another thread holds, or a task"
        )
    return None


def frame_line(frame: Frame) -> str:
    if isinstance(frame, NativeFrame):
        address: Optional[int] = frame.address
        how: Optional[str] = frame.how
    else:
        # A runtime frame says so; a JIT-compiled method is the norm.
        address = frame.instruction_pointer
        how = frame.kind if frame.kind != ManagedFrameKind.MANAGED else None
    name = frame.name or ""
    text = f"0x{int(address):016x}  {name}" if address is not None else name
    return f"{text}   [{how}]" if how else text


class ThreadsView(ResultView):
    title = "Threads"
    selects = (RowKind.THREAD,)

    def __init__(self, parent: Optional[QtWidgets.QWidget] = None) -> None:
        super().__init__(parent)
        self.legend = QtWidgets.QLabel(
            f"<span style='background:{CRITICAL}'>&nbsp;blocked finalizer&nbsp;</span> "
            f"<span style='background:{WARNING}'>&nbsp;STA thread&nbsp;</span> "
            f"<span style='background:{INFO}'>&nbsp;blocked on a monitor or a task&nbsp;</span>",
            self,
        )
        self._names: dict[int, str] = {}
        columns = THREAD_COLUMNS + (
            Column("Waits for", lambda t: waits_text(t, self._names)),
        )
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
        owner = Column("Owner", lambda m: owner_text(m, self._names))
        self.locks = FilterTable(
            MONITOR_COLUMNS[:2] + (owner,) + MONITOR_COLUMNS[2:],
            lambda m: (
                RowStyle(INFO, tooltip="threads wait for it")
                if m.waiting_os_ids or m.waiter_count
                else None
            ),
            "Filter locks",
            self,
        )
        self.locks_state = QtWidgets.QLabel(self)
        self.locks_state.setWordWrap(True)
        self.locks_state.hide()
        locks_box = QtWidgets.QWidget(self)
        locks_layout = QtWidgets.QVBoxLayout(locks_box)
        locks_layout.setContentsMargins(0, 0, 0, 0)
        locks_layout.addWidget(self.locks_state)
        locks_layout.addWidget(self.locks, 1)
        stacks.addTab(locks_box, "Locks (syncblk)")
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

    def reset(self) -> None:
        super().reset()
        self._names = {}
        self.threads.clear()
        self.locks.clear()
        self.managed_stack.clear()
        self.native_stack.clear()
        self.pool_label.setText("")
        self.show_locks_state("")
        self.stacks.setTabText(2, "Locks (syncblk)")

    def show_locks_state(self, text: str) -> None:
        """Why the lock table is empty (the monitors analysis did not run)."""
        self.locks_state.setText(text)
        self.locks_state.setVisible(bool(text))
        self.locks.setVisible(not text)

    def set_thread_pool(self, pool: ThreadPoolInfo) -> None:
        """The thread pool's counts (`threadpool`) beside the legend."""
        if not pool.started:
            text = "Thread pool: not started"
        else:
            text = (
                f"Thread pool: {pool.workers_total} workers, {pool.workers_running} running, "
                f"{pool.workers_idle} idle (min {pool.min_workers}, max {pool.max_workers})"
            )
        self.pool_label.setText(text)

    def set_threads(self, threads: tuple[ThreadView, ...]) -> None:
        self._names = {t.os_id: t.name for t in threads if t.name}
        self.threads.set_records(threads)
        self.threads.view.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        # Open on the thread the story is about: a blocked finalizer if any.
        if not self.threads.select_where(
            lambda t: thread_style(t) is not None and t.is_finalizer
        ):
            self.threads.select_where(lambda t: True)

    def set_monitors(self, monitors: tuple[Monitor, ...]) -> None:
        """The held monitors (sync blocks and thin locks), like `syncblk`."""
        self.show_locks_state("")
        held = [m for m in monitors if m.is_held or m.waiting_os_ids]
        self.locks.set_records(held)
        self.stacks.setTabText(2, f"Locks (syncblk): {len(held)}")

    def _select_owner(self, monitor: Optional[Monitor]) -> None:
        if monitor is not None and monitor.owner_os_id:
            current = self.stacks.currentIndex()
            self.select(RowKind.THREAD, (monitor.owner_os_id,))
            self.stacks.setCurrentIndex(current)

    def _show_stacks(self, thread: Optional[ThreadView]) -> None:
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

    def select(self, row: RowKind, keys: tuple[Any, ...]) -> bool:
        return bool(self.threads.select_all_where(lambda t: t.os_id in keys))
