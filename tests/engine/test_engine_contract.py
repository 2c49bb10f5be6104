"""The engine's result records and the client's result types agree field by
field: wire name, JSON type and nullability.

The engine describes what it sends (`DumpScope.Engine.dll --schema`, from its
own types and serialiser options; see engine/PROTOCOL.md); this test reads
the dataclasses of analysis/managed/results.py the way `from_json` does and
compares. It iterates over whatever the schema lists, so a new method or
record is checked as soon as the engine serves it.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import json
import shutil
import subprocess
import types
import typing
from types import NoneType
from typing import Any, Optional, Union

import pytest

from analysis.managed import results
from analysis.managed.client import ENGINE, REPO_ROOT, EngineClient

# Engine record name -> Python class name, where they differ. Pure renames:
# the wire never carries a record's name.
PYTHON_NAME = {
    "Frame": "StackFrame",
    "MonitorInfo": "Monitor",
}

# Engine records with no Python type, and why.
NOT_IN_PYTHON = {
    "VersionInfo": "the client reads the `version` handshake as plain JSON "
    "before it trusts any type, so an engine of another protocol version "
    "still gets a clear 'rebuild the engine' message",
}

# Python result types the engine does not send, and why (none today).
NOT_IN_ENGINE: dict[str, str] = {}

# (engine record, wire name): fields one side has and the other does not,
# and why (none today).
FIELD_EXCEPTIONS: dict[tuple[str, str], str] = {}

Schema = dict[str, Any]
Descriptor = dict[str, Any]


@pytest.fixture(scope="module")
def schema() -> Schema:
    """The schema of the engine built from this tree (build.sh rebuilds only
    when a source changed, so a C# edit is never compared stale)."""
    if shutil.which("dotnet") is None:
        pytest.skip("the .NET SDK is missing: the engine cannot be built")
    subprocess.run([str(REPO_ROOT / "engine" / "build.sh")], check=True)
    out = subprocess.run(
        [str(ENGINE), "--schema"],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    parsed: Schema = json.loads(out)
    return parsed


def python_class(record: str) -> Optional[type]:
    cls = getattr(results, PYTHON_NAME.get(record, record), None)
    return cls if isinstance(cls, type) and dataclasses.is_dataclass(cls) else None


def python_result_types() -> list[type]:
    return [
        cls
        for cls in vars(results).values()
        if isinstance(cls, type)
        and dataclasses.is_dataclass(cls)
        and cls.__module__ == results.__name__
    ]


def describe_hint(hint: Any) -> Descriptor:
    """The JSON a field of this type reads, in the schema's terms."""
    nullable = False
    if typing.get_origin(hint) in (Union, types.UnionType):
        args = typing.get_args(hint)
        inner = [a for a in args if a is not NoneType]
        if len(inner) != 1:
            raise TypeError(f"no single JSON type for {hint}")
        nullable = len(inner) < len(args)
        hint = inner[0]
    if typing.get_origin(hint) is tuple:
        item, ellipsis = typing.get_args(hint)
        if ellipsis is not Ellipsis:
            raise TypeError(f"{hint} is a fixed-size tuple, not a JSON list")
        return {"type": "array", "nullable": nullable, "items": describe_hint(item)}
    if not isinstance(hint, type):
        raise TypeError(f"no JSON type for {hint}")
    # Enums first: an IntEnum is an int too, but the vocabulary goes as words.
    if issubclass(hint, (enum.Enum, str)):
        return {"type": "string", "nullable": nullable}
    if issubclass(hint, bool):
        return {"type": "boolean", "nullable": nullable}
    if issubclass(hint, int):
        return {"type": "integer", "nullable": nullable}
    if issubclass(hint, float):
        return {"type": "number", "nullable": nullable}
    if dataclasses.is_dataclass(hint):
        return {"type": "object", "nullable": nullable, "class": hint.__name__}
    raise TypeError(f"no JSON type for {hint.__name__}")


def spell(d: Descriptor) -> str:
    if d["type"] == "array":
        text = f"array of {spell(d['items'])}"
    elif d["type"] == "object":
        text = f"object {d.get('record') or d.get('class')}"
    else:
        text = d["type"]
    return f"{text} or null" if d["nullable"] else text


def incompatibility(engine: Descriptor, python: Descriptor) -> Optional[str]:
    """Why Python cannot read what the engine sends, or None.

    Every non-list Python field is Optional on purpose (results.py: a
    missing field is unknown), so Python may be nullable where the engine
    is not; the reverse loses a value. A null list reads as (), which would
    hide "unknown" behind "none": the engine must not send one.
    """
    if engine["type"] != python["type"]:
        return f"engine sends {spell(engine)}, Python reads {spell(python)}"
    if engine["nullable"] and (engine["type"] == "array" or not python["nullable"]):
        return f"engine may send null ({spell(engine)}), Python reads {spell(python)}"
    if engine["type"] == "object":
        expected = PYTHON_NAME.get(engine["record"], engine["record"])
        if python["class"] != expected:
            return (
                f"engine sends record {engine['record']} (Python {expected}), "
                f"Python reads {python['class']}"
            )
    if engine["type"] == "array":
        inner = incompatibility(engine["items"], python["items"])
        if inner is not None:
            return f"list items: {inner}"
    return None


def field_problems(schema: Schema) -> list[str]:
    """Every disagreement between the engine's records and their Python
    types, one line each naming the record and the field."""
    problems = []
    for record, fields in schema["records"].items():
        cls = python_class(record)
        if cls is None:
            continue
        where = f"{record} (Python {cls.__name__})"
        hints = typing.get_type_hints(cls)
        sent = {f["name"]: f for f in fields}
        for name, field in sent.items():
            if (record, name) in FIELD_EXCEPTIONS:
                continue
            if name not in hints:
                problems.append(
                    f"{where}: the engine sends '{name}' ({spell(field)}), "
                    "the Python type has no such field"
                )
                continue
            try:
                why = incompatibility(field, describe_hint(hints[name]))
            except TypeError as e:
                why = str(e)
            if why is not None:
                problems.append(f"{where}.{name}: {why}")
        for f in dataclasses.fields(cls):
            if f.name not in sent and (record, f.name) not in FIELD_EXCEPTIONS:
                problems.append(
                    f"{where}: Python field '{f.name}' is not sent by the engine"
                )
    return problems


def test_every_method_answers_with_a_described_record(schema: Schema) -> None:
    undescribed = {
        method: record
        for method, record in schema["methods"].items()
        if record is not None and record not in schema["records"]
    }
    assert undescribed == {}
    assert schema["protocol_version"] == 1


def test_every_engine_record_has_a_python_type(schema: Schema) -> None:
    missing = [
        f"{record} (looked for results.{PYTHON_NAME.get(record, record)})"
        for record in schema["records"]
        if python_class(record) is None and record not in NOT_IN_PYTHON
    ]
    assert missing == [], "engine records without a Python result type: " + ", ".join(
        missing
    )


def test_every_python_result_type_is_an_engine_record(schema: Schema) -> None:
    sent = {PYTHON_NAME.get(r, r) for r in schema["records"]}
    extra = [
        cls.__name__
        for cls in python_result_types()
        if cls.__name__ not in sent and cls.__name__ not in NOT_IN_ENGINE
    ]
    assert extra == [], "Python result types the engine does not send: " + ", ".join(
        extra
    )


def test_every_field_agrees_on_name_json_type_and_nullability(
    schema: Schema,
) -> None:
    problems = field_problems(schema)
    assert problems == [], "engine and Python disagree:\n" + "\n".join(problems)


def test_each_client_call_reads_the_record_its_method_answers_with(
    schema: Schema,
) -> None:
    """A client method named after an engine method returns that method's
    record, or a tuple from one of its list fields (the client unwraps
    `threads` and `monitors`)."""
    wrong = []
    for method, record in schema["methods"].items():
        call = getattr(EngineClient, method, None)
        if record is None or call is None or record in NOT_IN_PYTHON:
            continue
        returned = describe_hint(typing.get_type_hints(call)["return"])
        readable = [{"type": "object", "nullable": False, "record": record}] + [
            f for f in schema["records"][record] if f["type"] == "array"
        ]
        if all(incompatibility(r, returned) for r in readable):
            wrong.append(
                f"{method}: engine answers {record}, client returns {spell(returned)}"
            )
    assert wrong == [], "\n".join(wrong)


def test_every_listed_exception_is_still_needed(schema: Schema) -> None:
    stale = [r for r in NOT_IN_PYTHON if r not in schema["records"] or python_class(r)]
    stale += [
        name
        for name in NOT_IN_ENGINE
        if name in {PYTHON_NAME.get(r, r) for r in schema["records"]}
        or not hasattr(results, name)
    ]
    for record, name in FIELD_EXCEPTIONS:
        cls = python_class(record)
        sent = {f["name"] for f in schema["records"].get(record, ())}
        in_python = cls is not None and name in {
            f.name for f in dataclasses.fields(cls)
        }
        if (name in sent) == in_python:
            stale.append(f"{record}.{name}")
    stale += [r for r in PYTHON_NAME if r not in schema["records"]]
    assert stale == [], "exceptions that no longer apply, remove them: " + ", ".join(
        stale
    )


def _first_field(schema: Schema, kind: str) -> tuple[str, Descriptor]:
    """`record (Python class)` and the first field of JSON type `kind` in a
    record that has a Python type."""
    for record, fields in schema["records"].items():
        cls = python_class(record)
        for f in fields:
            if cls is not None and f["type"] == kind:
                return f"{record} (Python {cls.__name__})", f
    raise AssertionError(f"no record with a Python type has a field of type {kind}")


def _new_problems(schema: Schema, changed: Schema) -> list[str]:
    before = field_problems(schema)
    return [p for p in field_problems(changed) if p not in before]


def test_a_field_renamed_on_either_side_is_named_in_the_failure(
    schema: Schema,
) -> None:
    changed = copy.deepcopy(schema)
    where, field = _first_field(changed, "integer")
    old = field["name"]
    field["name"] = f"{old}_renamed"
    assert _new_problems(schema, changed) == [
        f"{where}: the engine sends '{old}_renamed' ({spell(field)}), "
        "the Python type has no such field",
        f"{where}: Python field '{old}' is not sent by the engine",
    ]


def test_a_changed_json_type_or_a_null_list_is_named_in_the_failure(
    schema: Schema,
) -> None:
    changed = copy.deepcopy(schema)
    where, number = _first_field(changed, "integer")
    number["type"] = "number"
    _, listed = _first_field(changed, "array")
    listed["nullable"] = True
    problems = _new_problems(schema, changed)
    assert len(problems) == 2
    assert any(
        p.startswith(where) and f".{number['name']}: engine sends number" in p
        for p in problems
    )
    assert any(
        f".{listed['name']}: engine may send null (array of" in p for p in problems
    )
