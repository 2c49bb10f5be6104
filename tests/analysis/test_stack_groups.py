"""Stack grouping on hand-made threads: order, and stacks as deep as the
engine sends (1000 frames) without recursion limits."""

from __future__ import annotations

from analysis.managed.results import StackFrame
from analysis.managed.locks_and_stacks import identical_stacks, stack_tree
from tests.builders import managed_thread


def thread(os_id, *names, runtime=()):
    frames = tuple(StackFrame("runtime", None, None, n, None) for n in runtime)
    frames += tuple(StackFrame("managed", None, None, n, "app.dll") for n in names)
    return managed_thread(os_id, frames)


def test_runtime_frames_do_not_split_a_group():
    threads = [
        thread(1, "Wait", "Work", "Start", runtime=("[InlinedCallFrame]",)),
        thread(2, "Wait", "Work", "Start"),
        thread(3, "Sleep", "Main"),
        thread(4),
    ]
    groups = identical_stacks(threads)
    assert [(g.frames, g.os_ids) for g in groups] == [
        (("Wait", "Work", "Start"), (1, 2)),
        (("Sleep", "Main"), (3,)),
        ((), (4,)),
    ]


def test_a_tree_of_1000_frame_stacks_is_built():
    deep = [f"Recurse{i}" for i in range(1000)]
    threads = [thread(1, *deep), thread(2, "Leaf", *deep)]
    (root,) = stack_tree(threads)
    assert root.frame == "Recurse999" and root.os_ids == (1, 2)
    (end,) = root.find("Recurse0")
    assert end.os_ids == (1, 2) and end.os_ids_here == (1,)
    (leaf,) = end.children
    assert leaf.frame == "Leaf" and leaf.os_ids_here == (2,)
