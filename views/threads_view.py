"""Threads with their COM apartment, role, locks and stacks (`!t`, `~*k`).

The finalizer thread is highlighted red when it is blocked, STA threads amber:
the two ends of the print-service story.
"""

from __future__ import annotations

from typing import Any, Optional

from qtpy import QtCore, QtGui, QtWidgets
from qtpy.QtCore import Qt

from analysis.managed.results import Monitor, ThreadPoolInfo
from analysis.managed.locks_and_stacks import StackGroup
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
from views.base import ResultView
from views.colours import Tone, paint, theme, tone
from views.table_model import RECORD_ROLE, FilterTable, RowStyle


def owner_text(monitor: Monitor, names: dict[int, str]) -> str:
    return thread_name(monitor.owner_os_id, names) if monitor.owner_os_id else ""


WAITS_FOR = "Waits for"
LOCKS_TAB = 2
STACKS_TAB = 3
# A group's stack in one cell: its innermost frames (the tooltip has all).
FRAMES_IN_CELL = 6
# Frames of these namespaces say how a thread waits, not what it does.
FRAMEWORK = ("System.", "Microsoft.")
STACK_GROUP_COLUMNS: tuple[Column[StackGroup], ...] = (
    Column("Threads", lambda g: g.count, "int", "threads with exactly this stack"),
    Column("OS ids", lambda g: ", ".join(str(i) for i in g.os_ids)),
    Column(
        "Own code",
        lambda g: next((f for f in g.frames if not f.startswith(FRAMEWORK)), ""),
        tooltip="the innermost frame outside System.* and Microsoft.*",
    ),
    Column(
        "Stack (innermost first)",
        lambda g: " ← ".join(g.frames[:FRAMES_IN_CELL])
        + (" ← …" if len(g.frames) > FRAMES_IN_CELL else "")
        or "(no managed frames)",
    ),
)
LEGEND = (
    (Tone.CRITICAL, "blocked finalizer"),
    (Tone.WARNING, "STA thread"),
    (Tone.INFO, "blocked on a monitor or a task"),
)


class HolderLinks(QtWidgets.QStyledItemDelegate):
    """A "Waits for" cell that names a lock holder reads as a link (Enter or
    double-click goes there)."""

    def initStyleOption(
        self, option: QtWidgets.QStyleOptionViewItem, index: QtCore.QModelIndex
    ) -> None:
        super().initStyleOption(option, index)
        thread = index.data(RECORD_ROLE)
        waits = thread.waits_for if thread is not None else None
        if waits is not None and waits.blocked and waits.owner_os_id:
            option.font.setUnderline(True)
            option.palette.setColor(
                QtGui.QPalette.ColorRole.Text, QtGui.QColor(theme().link)
            )


def thread_style(thread: ThreadView) -> Optional[RowStyle]:
    if thread.is_finalizer and thread.blocked:
        return RowStyle(
            Tone.CRITICAL, bold=True, tooltip="the finalizer thread is blocked"
        )
    if thread.apartment == Apartment.STA:
        return RowStyle(Tone.WARNING, bold=True, tooltip="single-threaded apartment")
    if thread.blocked:
        return RowStyle(
            Tone.INFO, tooltip="blocked: on a monitor another thread holds, or a task"
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
        # The row colours' meaning: one swatch per tone, in its colours.
        self.legend = QtWidgets.QWidget(self)
        swatches = QtWidgets.QHBoxLayout(self.legend)
        swatches.setContentsMargins(0, 0, 0, 0)
        self.legend_swatches: dict[Tone, QtWidgets.QLabel] = {}
        for which, meaning in LEGEND:
            swatch = QtWidgets.QLabel(meaning, self.legend)
            swatch.setMargin(2)
            swatches.addWidget(swatch)
            self.legend_swatches[which] = swatch
        swatches.addStretch(1)
        self._names: dict[int, str] = {}
        # The held or waited-for monitors; None until the lock table is read.
        self._monitors: Optional[tuple[Monitor, ...]] = None
        self._thread: Optional[ThreadView] = None
        # Why no thread's managed frames were read; "" when they were.
        self._managed_missing = ""
        columns = THREAD_COLUMNS + (
            Column(
                WAITS_FOR,
                lambda t: waits_text(t, self._names),
                tooltip="double-click or Enter: go to the thread that holds the lock",
            ),
        )
        self.waits_column = len(columns) - 1
        self.threads = FilterTable(columns, thread_style, "Filter threads", self)
        self.threads.view.activated.connect(self._on_activated)
        self.threads.view.setItemDelegateForColumn(
            self.waits_column, HolderLinks(self.threads.view)
        )
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
                RowStyle(Tone.INFO, tooltip="threads wait for it")
                if m.waiting_os_ids or m.waiter_count
                else None
            ),
            "Filter locks",
            self,
        )
        self.locks_state = QtWidgets.QLabel(self)
        self.locks_state.setWordWrap(True)
        self.locks_state.hide()
        self.locks_scope = QtWidgets.QLabel(self)
        self.all_locks = QtWidgets.QCheckBox("All locks in the process", self)
        self.all_locks.toggled.connect(lambda _on: self._show_locks())
        scope = QtWidgets.QHBoxLayout()
        scope.addWidget(self.locks_scope, 1)
        scope.addWidget(self.all_locks)
        locks_box = QtWidgets.QWidget(self)
        locks_layout = QtWidgets.QVBoxLayout(locks_box)
        locks_layout.setContentsMargins(0, 0, 0, 0)
        locks_layout.addWidget(self.locks_state)
        locks_layout.addLayout(scope)
        locks_layout.addWidget(self.locks, 1)
        stacks.addTab(locks_box, "Locks (syncblk)")
        self.locks.sig_record_selected.connect(self._select_owner)
        self.stack_groups = FilterTable(
            STACK_GROUP_COLUMNS,
            lambda g: RowStyle(tooltip="\n".join(g.frames) or "(no managed frames)"),
            "Filter stacks (a method, a thread id)",
            self,
        )
        self.stack_groups.sig_record_selected.connect(self._select_group)
        stacks.addTab(self.stack_groups, "Parallel stacks")
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
        self.paint_theme()

    def paint_theme(self) -> None:
        super().paint_theme()
        for which, swatch in self.legend_swatches.items():
            paint(swatch, tone(which))

    def reset(self) -> None:
        super().reset()
        self._names = {}
        self._monitors = None
        self._thread = None
        self._managed_missing = ""
        self.threads.clear()
        self.locks.clear()
        self.locks_scope.setText("")
        self.all_locks.setChecked(False)
        self.managed_stack.clear()
        self.native_stack.clear()
        self.pool_label.setText("")
        self.show_locks_state("")
        self.stacks.setTabText(LOCKS_TAB, "Locks (syncblk)")
        self.stack_groups.clear()
        self.stacks.setTabText(STACKS_TAB, "Parallel stacks")

    def set_stack_groups(self, groups: tuple[StackGroup, ...]) -> None:
        """Managed threads grouped by identical stack, the largest group first."""
        self.stack_groups.set_records(groups, sort_column=0)
        repeated = sum(1 for g in groups if g.count > 1)
        self.stacks.setTabText(
            STACKS_TAB, f"Parallel stacks: {len(groups)} ({repeated} shared)"
        )

    def _select_group(self, group: Optional[StackGroup]) -> None:
        """A group selects all its threads (the first one's stack shows)."""
        if group is not None:
            current = self.stacks.currentIndex()
            self._select_threads(tuple(group.os_ids))
            self.stacks.setCurrentIndex(current)

    def managed_missing(self, text: str) -> None:
        """The CLR's view of the threads was not read: no thread's managed
        stack is known, which the stack pane says instead of "no frames"."""
        self._managed_missing = text
        title, _, why = text.partition(": ")
        self.note(f"{title}:", why)
        self._show_stacks(self._thread)

    def show_locks_state(self, text: str) -> None:
        """Why the lock table is empty (the monitors analysis did not run)."""
        self.locks_state.setText(text)
        self.locks_state.setVisible(bool(text))
        self.locks.setVisible(not text)
        self.locks_scope.setVisible(not text)
        self.all_locks.setVisible(not text)

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
        """The held monitors (sync blocks and thin locks), like `syncblk`:
        those of the selected thread, or all of them."""
        self.show_locks_state("")
        self._monitors = tuple(m for m in monitors if m.is_held or m.waiting_os_ids)
        self._show_locks()

    def _show_locks(self) -> None:
        if self._monitors is None:
            return
        thread = self._thread
        if self.all_locks.isChecked() or thread is None:
            shown = self._monitors
            self.locks_scope.setText(f"{len(shown):,} locks held or waited for")
        else:
            waits = thread.waits_for
            shown = tuple(
                m
                for m in self._monitors
                if m.owner_os_id == thread.os_id
                or thread.os_id in m.waiting_os_ids
                or (waits is not None and m.object == waits.object)
            )
            owned = sum(1 for m in shown if m.owner_os_id == thread.os_id)
            self.locks_scope.setText(
                f"Thread {thread_name(thread.os_id, self._names)}: holds {owned}, "
                f"waits for {len(shown) - owned}"
            )
        self.locks.set_records(shown)
        self.stacks.setTabText(LOCKS_TAB, f"Locks (syncblk): {len(shown)}")

    def _select_owner(self, monitor: Optional[Monitor]) -> None:
        if monitor is not None and monitor.owner_os_id:
            current = self.stacks.currentIndex()
            self._select_threads((int(monitor.owner_os_id),))
            self.stacks.setCurrentIndex(current)

    def _on_activated(self, index: QtCore.QModelIndex) -> None:
        """Double-click or Enter on "Waits for" goes to the lock's holder."""
        if index.column() != self.waits_column:
            return
        thread = self.threads.record_at(index.row())
        waits = thread.waits_for if thread is not None else None
        if waits is not None and waits.owner_os_id:
            self._select_threads((int(waits.owner_os_id),))

    def _select_threads(self, os_ids: tuple[int, ...]) -> None:
        """Goes to threads even when the filter hides them."""
        if not self.select(RowKind.THREAD, os_ids):
            self.threads.filter.clear()
            self.select(RowKind.THREAD, os_ids)

    def _show_stacks(self, thread: Optional[ThreadView]) -> None:
        if thread is None:
            return
        self._thread = thread
        self._show_locks()
        self.managed_stack.clear()
        self.native_stack.clear()
        self.managed_stack.addItems(
            [frame_line(f) for f in thread.frames]
            or [
                (
                    f"(managed frames not read: {self._managed_missing})"
                    if self._managed_missing
                    else "(no managed frames)"
                )
            ]
        )
        self.native_stack.addItems(
            [frame_line(f) for f in thread.native_frames] or ["(no native frames)"]
        )
        if not thread.frames and thread.native_frames:
            self.stacks.setCurrentIndex(1)

    def select(self, row: RowKind, keys: tuple[Any, ...]) -> bool:
        return bool(self.threads.select_all_where(lambda t: t.os_id in keys))
