"""The engine that matches the dump: every (host, dump OS, bitness) pair."""

from __future__ import annotations

import pytest

from analysis.managed.engines import (
    NATIVE,
    WINE,
    EngineChoice,
    EngineLaunch,
    EngineUnavailable,
    Host,
    choose_engine,
    wine_to_unix,
)

W64 = "/usr/lib/wine/wine64"
W32 = "/usr/lib/wine/wine"

HOSTS = {
    # This project's machines: wine64 installed, no 32-bit code runs.
    "linux+wine64": Host("linux", wine64=W64, runs_32bit=False),
    "linux": Host("linux"),
    "linux+wine64+wine32": Host("linux", wine64=W64, wine32=W32, runs_32bit=True),
    "linux+32bit, no wine": Host("linux", runs_32bit=True),
    "windows": Host("windows", runs_32bit=True),
    "windows without WoW64": Host("windows", runs_32bit=False),
    "macos": Host("macos"),
}

# (host, dump OS, pointer size) -> (target, how, wine) or the words the
# "unavailable" reason must contain (what is missing and how to get it).
EXPECTED: dict[tuple[str, str, int], tuple[str, str, str | None] | tuple[str, ...]] = {
    ("linux+wine64", "linux", 8): ("linux-x64", NATIVE, None),
    ("linux+wine64", "linux", 4): ("32-bit Linux",),
    ("linux+wine64", "windows", 8): ("win-x64", WINE, W64),
    ("linux+wine64", "windows", 4): ("win-x86", "cannot run 32-bit", "on Windows"),
    ("linux", "linux", 8): ("linux-x64", NATIVE, None),
    ("linux", "linux", 4): ("32-bit Linux",),
    ("linux", "windows", 8): ("install wine64",),
    ("linux", "windows", 4): ("win-x86", "cannot run 32-bit"),
    ("linux+wine64+wine32", "linux", 8): ("linux-x64", NATIVE, None),
    ("linux+wine64+wine32", "linux", 4): ("32-bit Linux",),
    ("linux+wine64+wine32", "windows", 8): ("win-x64", WINE, W64),
    ("linux+wine64+wine32", "windows", 4): ("win-x86", WINE, W32),
    ("linux+32bit, no wine", "linux", 8): ("linux-x64", NATIVE, None),
    ("linux+32bit, no wine", "linux", 4): ("32-bit Linux",),
    ("linux+32bit, no wine", "windows", 8): ("install wine64",),
    ("linux+32bit, no wine", "windows", 4): ("install wine32",),
    ("windows", "linux", 8): ("Linux host",),
    ("windows", "linux", 4): ("32-bit Linux",),
    ("windows", "windows", 8): ("win-x64", NATIVE, None),
    ("windows", "windows", 4): ("win-x86", NATIVE, None),
    ("windows without WoW64", "linux", 8): ("Linux host",),
    ("windows without WoW64", "linux", 4): ("32-bit Linux",),
    ("windows without WoW64", "windows", 8): ("win-x64", NATIVE, None),
    ("windows without WoW64", "windows", 4): ("cannot run 32-bit",),
    ("macos", "linux", 8): ("Linux host",),
    ("macos", "linux", 4): ("32-bit Linux",),
    ("macos", "windows", 8): ("win-x64", "Windows or under Wine"),
    ("macos", "windows", 4): ("win-x86", "Windows or under Wine"),
}


def test_every_pair_is_covered() -> None:
    pairs = {(h, o, p) for h in HOSTS for o in ("linux", "windows") for p in (4, 8)}
    assert set(EXPECTED) == pairs


@pytest.mark.parametrize("host,dump_os,pointer_size", sorted(EXPECTED))
def test_engine_for(host: str, dump_os: str, pointer_size: int) -> None:
    expected = EXPECTED[(host, dump_os, pointer_size)]
    chosen = choose_engine(HOSTS[host], dump_os, pointer_size)
    if len(expected) == 3 and expected[1] in (NATIVE, WINE):
        assert chosen == EngineChoice(*expected)  # type: ignore[arg-type]
    else:
        assert isinstance(chosen, EngineUnavailable)
        for words in expected:
            assert words in chosen.reason  # type: ignore[operator]


def test_a_dump_of_another_os_or_pointer_size_has_no_engine() -> None:
    host = HOSTS["linux+wine64"]
    assert isinstance(choose_engine(host, "macos", 8), EngineUnavailable)
    assert isinstance(choose_engine(host, "windows", 2), EngineUnavailable)


def test_wine_paths_in_answers_read_as_unix_paths() -> None:
    prefix = "/home/u/.cache/dumpscope/wine"
    assert wine_to_unix(r"Z:\home\u\dumps\app.dmp", prefix) == "/home/u/dumps/app.dmp"
    assert (
        wine_to_unix(r"C:\windows\system32\dbghelp.dll", prefix)
        == prefix + "/drive_c/windows/system32/dbghelp.dll"
    )
    assert wine_to_unix("/already/unix", prefix) == "/already/unix"
    assert wine_to_unix("mscordaccore.dll", prefix) == "mscordaccore.dll"
    launch = EngineLaunch(
        EngineChoice("win-x64", WINE, W64), (W64, "e.exe"), {}, prefix
    )
    assert launch.host_path(r"Z:\tmp\x.dll") == "/tmp/x.dll"
    native = EngineLaunch(EngineChoice("win-x64", NATIVE), ("e.exe",), {})
    assert native.host_path(r"Z:\tmp\x.dll") == r"Z:\tmp\x.dll"
