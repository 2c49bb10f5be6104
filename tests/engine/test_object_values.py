"""The object inspector shows common value types as values, exactly as the
dumped process itself printed them: the healthy scenario's JobSchedule holds
a decimal, DateTimes, a TimeSpan, a Guid and two enums (one [Flags])."""

from __future__ import annotations

import pytest

from analysis.managed.client import EngineClient, engine_available
from scenarios.dumps import ensure_dump

pytestmark = pytest.mark.skipif(
    not engine_available(), reason="engine not built: run engine/build.sh"
)


@pytest.fixture(scope="module")
def schedule():
    dump = ensure_dump("healthy", "net10")
    with EngineClient() as engine:
        engine.open(str(dump.path), dac_folder=str(dump.runtime_dir))
        stats = engine.heap_stats()
        (mt,) = [
            t.method_table for t in stats.types if t.name == dump.facts["schedule_type"]
        ]
        (instance,) = engine.instances(mt).items
        return dump.facts, engine.object(int(instance.address))


def test_value_types_read_as_the_process_printed_them(schedule):
    facts, detail = schedule
    fields = {f.name: f for f in detail.fields}
    expected = facts["schedule_fields"]
    assert {name: fields[name].value for name in expected} == expected
    assert {fields[name].kind for name in expected} == {"value"}


def test_the_value_types_are_named_by_their_type(schedule):
    _, detail = schedule
    types = {f.name: f.type for f in detail.fields}
    assert types["Budget"] == "System.Decimal"
    assert types["Created"] == "System.DateTime"
    assert types["Timeout"] == "System.TimeSpan"
    assert types["Id"] == "System.Guid"
    assert types["Priority"] == "DumpScope.Scenarios.JobPriority"
