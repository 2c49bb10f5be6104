"""The client's results follow engine/PROTOCOL.md: every field is documented,
and every field may be absent or null without breaking the client."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from analysis.managed import results
from analysis.managed.client import PROTOCOL_VERSION

PROTOCOL = (Path(__file__).resolve().parents[2] / "engine" / "PROTOCOL.md").read_text()
RESULT_TYPES = [
    cls
    for cls in vars(results).values()
    if isinstance(cls, type)
    and dataclasses.is_dataclass(cls)
    and cls.__module__ == results.__name__
]
DOCUMENTED = set(re.findall(r"`([a-z_]+)`", PROTOCOL)) | set(
    re.findall(r"\b([a-z]+(?:_[a-z]+)+)\b", PROTOCOL)
)


def test_the_document_is_for_the_clients_protocol_version() -> None:
    assert f"# DumpScope engine protocol, version {PROTOCOL_VERSION}" in PROTOCOL


@pytest.mark.parametrize("cls", RESULT_TYPES, ids=lambda c: c.__name__)
def test_every_result_field_is_documented(cls: type) -> None:
    missing = [
        f.name
        for f in dataclasses.fields(cls)
        if f.name not in DOCUMENTED and not re.search(rf"\b{f.name}\b", PROTOCOL)
    ]
    assert missing == []


@pytest.mark.parametrize("cls", RESULT_TYPES, ids=lambda c: c.__name__)
def test_a_result_with_every_field_absent_reads_as_unknown(cls: type) -> None:
    empty = results.from_json(cls, {})
    for f in dataclasses.fields(cls):
        value = getattr(empty, f.name)
        assert value is None or value == (), f.name
    nulls = results.from_json(cls, {f.name: None for f in dataclasses.fields(cls)})
    assert nulls == empty


def test_addresses_and_sizes_keep_their_semantic_types() -> None:
    stats = results.from_json(
        results.HeapStats,
        {
            "types": [
                {"name": "Free", "method_table": 2**63 + 8, "count": 3, "size": 72}
            ],
            "total_objects": 3,
            "total_bytes": 72,
            "unknown_future_field": [1, 2],
        },
    )
    (free,) = stats.types
    assert str(free.method_table) == "0x8000000000000008"
    assert str(free.size) == "72 bytes"
    assert int(stats.total_bytes) == 72
