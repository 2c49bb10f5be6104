"""A .NET Framework dump's DAC: named, looked for, and trusted only when told.

A synthetic Windows minidump whose module list holds clr.dll 4.8.4515.0
(x64) is opened by the win-x64 engine under Wine, the engine a user gets
for it on this host. No real mscordacwks.dll is needed: the lookup is
tested by what it names and where it looks, the symbol store is a local
folder with the store's layout, and a file there that is not a signed DAC
shows the signature check and the one-file trust.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

from analysis.managed.client import EngineClient, EngineError, ErrorCode
from analysis.managed.engines import WINE64, EngineLaunch, engine_for_dump, engine_path
from tests.analysis.synthetic import MinidumpBuilder

pytestmark = [
    pytest.mark.skipif(
        not os.access(WINE64, os.X_OK),
        reason="the Windows engine runs under Wine here: install wine64",
    ),
    pytest.mark.skipif(
        not engine_path("win-x64").is_file(),
        reason="the win-x64 engine is not built: run engine/build.sh",
    ),
]

CLR = r"C:\Windows\Microsoft.NET\Framework64\v4.0.30319\clr.dll"
VERSION = (4, 8, 4515, 0)
TIMESTAMP, IMAGE_SIZE = 0x5C9A2E1B, 0x9F0000
# What ClrMD and a symbol server call this build's DAC, and its index key.
LONG_NAME = "mscordacwks_amd64_amd64_4.8.4515.00.dll"
INDEX = f"{TIMESTAMP:08X}{IMAGE_SIZE:x}"


@pytest.fixture(scope="module")
def dump(tmp_path_factory: pytest.TempPathFactory) -> Path:
    builder = MinidumpBuilder("x64")
    builder.add_module(
        CLR, 0x7FFA10000000, IMAGE_SIZE, version=VERSION, timestamp=TIMESTAMP
    )
    path = tmp_path_factory.mktemp("framework") / "framework-app.dmp"
    path.write_bytes(builder.build())
    return path


@pytest.fixture(scope="module")
def client() -> Iterator[EngineClient]:
    launch = engine_for_dump("windows", 8)
    assert isinstance(launch, EngineLaunch), launch
    with EngineClient(launch=launch) as engine:
        yield engine


def symbol_store_with_a_dac(root: Path) -> Path:
    """A folder laid out as a symbol store, holding a file where the DAC
    goes: not a DAC Microsoft signed (nor a DLL at all)."""
    dac = root / LONG_NAME / INDEX / LONG_NAME
    dac.parent.mkdir(parents=True)
    dac.write_bytes(b"MZ" + bytes(1022))
    return dac


def test_dac_not_found_names_the_file_the_version_and_every_place_tried(
    client: EngineClient, dump: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "dacs"
    folder.mkdir()
    with pytest.raises(EngineError) as e:
        client.open(str(dump), dac_folder=str(folder))
    error = e.value
    assert error.code == ErrorCode.DAC_NOT_FOUND
    assert "mscordacwks.dll version 4.8.4515.0" in error.message
    assert ".NET Framework" in error.message
    assert f"{LONG_NAME} {INDEX}" in error.message
    tried = error.data["tried"]
    assert str(folder / "mscordacwks.dll") in tried
    assert str(folder / LONG_NAME) in tried
    # Beside the clr.dll the dump names (a C: path: the Wine prefix's drive).
    assert any(t.endswith("Framework64/v4.0.30319/mscordacwks.dll") for t in tried)
    assert "beside the runtime recorded in the dump" in error.message
    assert "symbol server (off" in error.message


def test_a_symbol_store_is_asked_only_when_given_and_its_dac_is_signature_checked(
    client: EngineClient, dump: Path, tmp_path: Path
) -> None:
    dac = symbol_store_with_a_dac(tmp_path / "store")
    with pytest.raises(EngineError) as e:
        client.open(str(dump))
    assert e.value.code == ErrorCode.DAC_NOT_FOUND
    assert str(dac) not in e.value.data["tried"]

    with pytest.raises(EngineError) as e:
        client.open(str(dump), symbol_server=str(tmp_path / "store"))
    error = e.value
    assert error.code == ErrorCode.DAC_NOT_TRUSTED
    assert error.data["dac"] == str(dac)
    assert str(dac) in error.message
    assert "--trust-dac" in error.message


def test_trusting_that_one_dac_loads_it_without_the_signature_check(
    client: EngineClient, dump: Path, tmp_path: Path
) -> None:
    dac = symbol_store_with_a_dac(tmp_path / "store")
    other = tmp_path / "other.dll"
    other.write_bytes(b"MZ" + bytes(1022))
    # Trusting another file leaves this one checked.
    with pytest.raises(EngineError) as e:
        client.open(
            str(dump), symbol_server=str(tmp_path / "store"), trust_dac=str(other)
        )
    assert e.value.code == ErrorCode.DAC_NOT_TRUSTED
    # Trusted, it gets as far as loading, which this junk file cannot pass.
    with pytest.raises(EngineError) as e:
        client.open(
            str(dump), symbol_server=str(tmp_path / "store"), trust_dac=str(dac)
        )
    assert e.value.code == ErrorCode.DAC_LOAD_FAILED
    assert str(dac) in e.value.message
