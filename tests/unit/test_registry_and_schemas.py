"""Event registry and exported JSON Schemas.

Rules from events/registry.py, events/schemas.py and DESIGN.md section 3: every event type has
a version and belongs to one bounded context (topic); readers upcast old versions to the
current one at the edge and refuse what they do not know; JSON Schemas are exported for
downstream consumers and checked here against the models.
"""

from __future__ import annotations

import functools
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator
from pydantic import ValidationError
from referencing import Registry, Resource

from events import past_versions, registry
from events.enrollment import CohortOpened, SubjectEnrolled, SubjectRegistered, SubjectWaitlisted
from events.envelope import Envelope, Frozen
from events.registry import (
    EventPayload,
    UnknownEventType,
    all_types,
    event_type,
    read,
    readable_versions,
    upcast,
    upcaster,
)
from events.schemas import DIALECT, export, schemas
from events.topics import SHARED, WRITERS

from .builders import sealed

# One real instance per event type: the schema export is checked against each of them.
SAMPLES: dict[str, EventPayload] = {
    "CohortOpened": CohortOpened(
        cohort_id="DL1-IP",
        dose_level="DL1",
        dose_cells_per_kg=1e6,
        route="intraperitoneal",
        capacity=3,
    ),
    "SubjectRegistered": SubjectRegistered(subject_id="MSK-0007", site_id="SITE-01"),
    "SubjectEnrolled": SubjectEnrolled(subject_id="MSK-0007", cohort_id="DL1-IP", slot=1),
    "SubjectWaitlisted": SubjectWaitlisted(subject_id="MSK-0007", cohort_id="DL1-IP", position=1),
}
# Other event types document an example in their schema (json_schema_extra); it serves here.
SAMPLES.update(
    {
        name: model.model_validate(model.model_json_schema()["examples"][0])
        for name, model in all_types().items()
        if name not in SAMPLES and model.model_json_schema().get("examples")
    }
)


@pytest.fixture
def scratch_registry(monkeypatch):
    """Registration is global: register test-only types in a copy, restored after the test."""
    monkeypatch.setattr(registry, "_TYPES", dict(registry._TYPES))
    monkeypatch.setattr(registry, "_UPCASTERS", dict(registry._UPCASTERS))


# ---------------------------------------------------------------- the registry


def test_the_enrollment_event_types_are_registered():
    assert {"CohortOpened", "SubjectRegistered", "SubjectEnrolled", "SubjectWaitlisted"} <= set(
        all_types()
    )


@pytest.mark.parametrize("name", sorted(all_types()))
def test_every_event_type_belongs_to_a_known_bounded_context(name):
    model = all_types()[name]

    assert model.context in (*WRITERS, SHARED)
    assert model.event_type == name
    assert model.schema_version >= 1


def test_registering_the_same_event_type_twice_is_refused(scratch_registry):
    with pytest.raises(ValueError, match="SubjectRegistered"):

        @event_type("SubjectRegistered", version=1, context="enrollment")
        class AnotherSubjectRegistered(EventPayload):
            subject_id: str


def test_read_returns_the_typed_current_payload_and_the_envelope():
    envelope = sealed(SAMPLES["SubjectRegistered"])

    recorded = read(envelope)

    assert recorded.envelope is envelope
    assert recorded.payload == SubjectRegistered(subject_id="MSK-0007", site_id="SITE-01")


def test_read_refuses_an_unknown_event_type():
    envelope = sealed(SAMPLES["SubjectRegistered"], event_type="SubjectTeleported")

    with pytest.raises(UnknownEventType, match="SubjectTeleported"):
        read(envelope)


def test_read_refuses_a_payload_that_breaks_its_model():
    # Personal data never passes the edge: a name is not a pseudonymous subject code.
    payload = {"subject_id": "John Smith", "site_id": "SITE-01"}
    envelope = sealed(SAMPLES["SubjectRegistered"], payload=payload)

    with pytest.raises(ValidationError, match="subject_id"):
        read(envelope)


def test_read_refuses_a_payload_with_unknown_fields():
    payload = {"subject_id": "MSK-0007", "site_id": "SITE-01", "date_of_birth": "1957-04-12"}
    envelope = sealed(SAMPLES["SubjectRegistered"], payload=payload)

    with pytest.raises(ValidationError, match="date_of_birth"):
        read(envelope)


def test_a_reader_refuses_a_version_newer_than_its_own():
    envelope = sealed(SAMPLES["SubjectRegistered"], schema_version=2)

    with pytest.raises(UnknownEventType, match=r"SubjectRegistered v2 is newer .*\(v1\)"):
        read(envelope)
    with pytest.raises(UnknownEventType):
        upcast("SubjectRegistered", 2, {"subject_id": "MSK-0007", "site_id": "SITE-01"})


def test_a_current_version_payload_is_not_touched_by_upcasting():
    payload = {"subject_id": "MSK-0007", "site_id": "SITE-01"}

    assert upcast("SubjectRegistered", 1, payload) == payload


@pytest.fixture
def renamed_v2(scratch_registry):
    """TestOnlyRenamed v1 carried ``site``; v2 calls it ``site_id`` and adds ``country``."""

    @event_type("TestOnlyRenamed", version=2, context="enrollment")
    class TestOnlyRenamed(EventPayload):
        site_id: str
        country: str

    @upcaster("TestOnlyRenamed", from_version=1)
    def site_becomes_site_id(payload: dict[str, Any]) -> dict[str, Any]:
        return {"site_id": payload["site"], "country": "unknown"}

    return TestOnlyRenamed


def test_a_v1_payload_is_upcast_to_the_current_version_when_read(renamed_v2):
    v1 = sealed(
        renamed_v2(site_id="SITE-01", country="US"),
        schema_version=1,
        payload={"site": "SITE-01"},
    )

    recorded = read(v1)

    assert recorded.payload == renamed_v2(site_id="SITE-01", country="unknown")
    assert recorded.envelope.payload == {"site": "SITE-01"}, "the stored fact is never edited"


def test_a_v2_payload_is_read_as_is(renamed_v2):
    current = renamed_v2(site_id="SITE-02", country="FR")

    assert read(sealed(current)).payload == current


def test_an_old_version_without_an_upcaster_is_refused(scratch_registry):
    @event_type("TestOnlyWithoutUpcaster", version=3, context="enrollment")
    class TestOnlyWithoutUpcaster(EventPayload):
        site_id: str

    @upcaster("TestOnlyWithoutUpcaster", from_version=2)
    def two_to_three(payload: dict[str, Any]) -> dict[str, Any]:
        return payload

    with pytest.raises(UnknownEventType, match="no upcaster for TestOnlyWithoutUpcaster v1"):
        upcast("TestOnlyWithoutUpcaster", 1, {"site_id": "SITE-01"})


def test_upcasters_run_in_version_order_one_step_at_a_time(scratch_registry):
    @event_type("TestOnlyThreeSteps", version=3, context="enrollment")
    class TestOnlyThreeSteps(EventPayload):
        steps: list[int]

    @upcaster("TestOnlyThreeSteps", from_version=1)
    def one_to_two(payload):
        return {"steps": [*payload["steps"], 2]}

    @upcaster("TestOnlyThreeSteps", from_version=2)
    def two_to_three(payload):
        return {"steps": [*payload["steps"], 3]}

    assert upcast("TestOnlyThreeSteps", 1, {"steps": [1]}) == {"steps": [1, 2, 3]}
    assert upcast("TestOnlyThreeSteps", 2, {"steps": [1]}) == {"steps": [1, 3]}


def test_the_scratch_registry_leaves_no_test_type_behind():
    assert not any(name.startswith("TestOnly") for name in all_types())


# ---------------------------------------------------------------- exported JSON Schemas


@functools.cache
def exported() -> dict[str, dict[str, Any]]:
    """The export of the registered types (every call builds it anew: once is enough here)."""
    return schemas()


def test_a_payload_and_a_record_schema_per_event_type_and_version_plus_the_envelope():
    expected = {
        f"{name}.v{version}.{kind}json"
        for name in all_types()
        for version in readable_versions(name)
        for kind in ("schema.", "record.schema.")
    }

    assert set(exported()) == expected | {"envelope.schema.json"}
    assert {
        "CohortOpened.v1.schema.json",
        "SubjectRegistered.v1.schema.json",
        "SubjectEnrolled.v1.schema.json",
        "SubjectWaitlisted.v1.schema.json",
    } <= set(exported())


@pytest.fixture
def renamed_v1_described(renamed_v2, monkeypatch):
    """TestOnlyRenamed v1's model, as events/past_versions.py keeps past versions."""

    class TestOnlyRenamedV1(Frozen):
        site: str

    monkeypatch.setitem(past_versions.MODELS, ("TestOnlyRenamed", 1), TestOnlyRenamedV1)
    return TestOnlyRenamedV1


def test_a_new_schema_version_gets_its_own_file_name_and_the_old_one_stays(renamed_v1_described):
    documents = schemas()

    assert set(documents["TestOnlyRenamed.v2.schema.json"]["properties"]) == {"site_id", "country"}
    assert set(documents["TestOnlyRenamed.v1.schema.json"]["properties"]) == {"site"}
    assert documents["TestOnlyRenamed.v1.schema.json"]["x-trialops"]["current_version"] == 2


def test_a_version_readers_accept_without_a_model_of_it_stops_the_export(renamed_v2):
    # An upcaster says v1 records exist; their schema must then be had (events/past_versions.py).
    with pytest.raises(LookupError, match=r"TestOnlyRenamed v1 .*events/past_versions.py"):
        schemas()


@pytest.mark.parametrize("file_name", sorted(exported()))
def test_every_schema_is_a_valid_draft_2020_12_document(file_name):
    schema = exported()[file_name]

    assert schema["$schema"] == DIALECT == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("name", sorted(all_types()))
def test_every_event_schema_names_its_type_version_and_context(name):
    model = all_types()[name]
    schema = exported()[f"{name}.v{model.schema_version}.schema.json"]

    assert schema["title"] == name
    assert schema["x-trialops"] == {
        "event_type": name,
        "schema_version": model.schema_version,
        "context": model.context,
        "current_version": model.schema_version,
    }


def test_every_registered_event_type_has_a_sample_here():
    # A new event type must come with a sample, so its exported schema gets checked below.
    assert set(SAMPLES) == set(all_types())


def payload_schema(name: str) -> dict:
    model = all_types()[name]
    return exported()[f"{name}.v{model.schema_version}.schema.json"]


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_event_schema_accepts_a_real_payload(name):
    instance = SAMPLES[name].model_dump(mode="json")

    Draft202012Validator(payload_schema(name)).validate(instance)


def required_field_cases():
    # The fields the model requires (no default) must be required by the exported schema too.
    return [
        pytest.param(name, field, id=f"{name}-without-{field}")
        for name, sample in sorted(SAMPLES.items())
        for field, info in type(sample).model_fields.items()
        if info.is_required()
    ]


@pytest.mark.parametrize(("name", "field"), required_field_cases())
def test_event_schema_rejects_a_payload_missing_a_required_field(name, field):
    instance = SAMPLES[name].model_dump(mode="json")
    del instance[field]

    assert not Draft202012Validator(payload_schema(name)).is_valid(instance)


@pytest.mark.parametrize(
    ("name", "field", "value"),
    [
        ("SubjectRegistered", "subject_id", "John Smith"),
        ("SubjectEnrolled", "slot", 0),
        ("SubjectWaitlisted", "position", 0),
        ("CohortOpened", "capacity", 19),
        ("CohortOpened", "route", "oral"),
        ("SubjectRegistered", "date_of_birth", "1957-04-12"),
    ],
)
def test_event_schema_rejects_what_the_model_rejects(name, field, value):
    instance = {**SAMPLES[name].model_dump(mode="json"), field: value}

    with pytest.raises(ValidationError):
        all_types()[name].model_validate(instance)
    assert not Draft202012Validator(payload_schema(name)).is_valid(instance)


def test_envelope_schema_accepts_a_sealed_envelope_from_the_wire():
    envelope = sealed(SAMPLES["CohortOpened"], stream_id="cohort-DL1-IP", reason="review 2")

    Draft202012Validator(exported()["envelope.schema.json"]).validate(
        orjson.loads(orjson.dumps(envelope.model_dump(mode="json")))
    )


@pytest.mark.parametrize("field", ["hash", "prev_hash", "actor", "payload", "occurred_at"])
def test_envelope_schema_rejects_an_envelope_missing_a_required_field(field):
    instance = sealed(SAMPLES["CohortOpened"]).model_dump(mode="json")
    del instance[field]

    assert not Draft202012Validator(exported()["envelope.schema.json"]).is_valid(instance)


def test_envelope_schema_rejects_an_actor_without_a_role():
    instance = sealed(SAMPLES["CohortOpened"]).model_dump(mode="json")
    instance["actor"] = {"user_id": "dr-ortega"}

    assert not Draft202012Validator(exported()["envelope.schema.json"]).is_valid(instance)


def test_export_writes_every_schema_into_a_new_directory(tmp_path):
    directory = tmp_path / "schemas" / "v1"

    written = export(directory)

    assert sorted(p.name for p in written) == sorted(exported())
    assert sorted(p.name for p in directory.iterdir()) == sorted(exported())
    for path in written:
        assert path.parent == directory
        assert orjson.loads(path.read_bytes()) == exported()[path.name]


def test_export_is_byte_for_byte_repeatable(tmp_path):
    first = {p.name: p.read_bytes() for p in export(tmp_path / "first")}
    second = {p.name: p.read_bytes() for p in export(tmp_path / "second")}

    assert first == second


def test_export_over_an_existing_directory_replaces_the_files(tmp_path):
    (tmp_path / "envelope.schema.json").write_text("stale")

    export(tmp_path)

    assert (
        orjson.loads((tmp_path / "envelope.schema.json").read_bytes())
        == exported()["envelope.schema.json"]
    )


def test_envelope_schema_lists_every_envelope_field():
    properties = set(exported()["envelope.schema.json"]["properties"])

    assert properties == set(Envelope.model_fields)


# ---------------------------------------------------------------- every version, each with an $id

# The versions that were replaced, from docs/decisions.md: AdverseEventReported v1 before
# ctcae_version (decision 12), InfusionRecorded v1 before the dose received and its counted level
# (decision 27), ConditioningDayRecorded v1 before the creatinine clearance (decision 33),
# LotThawed v1 before the thaw's time. Each one's records stay on its topic forever.
REPLACED = {
    ("AdverseEventReported", 1, "ctcae_version"),
    ("InfusionRecorded", 1, "counted_dose_level"),
    ("ConditioningDayRecorded", 1, "creatinine_clearance_ml_per_min"),
    ("LotThawed", 1, "thawed_at"),
}


def test_the_versions_a_reader_accepts_are_the_current_one_and_each_upcast_one():
    assert readable_versions("AdverseEventReported") == [1, 2]
    assert readable_versions("SubjectRegistered") == [1]


def test_readable_versions_follow_the_upcasters_one_step_at_a_time(scratch_registry):
    @event_type("TestOnlyGap", version=3, context="enrollment")
    class TestOnlyGap(EventPayload):
        site_id: str

    @upcaster("TestOnlyGap", from_version=2)
    def two_to_three(payload: dict[str, Any]) -> dict[str, Any]:
        return payload

    # No upcaster from v1: a v1 record is refused, so no v1 schema is owed.
    assert readable_versions("TestOnlyGap") == [2, 3]


@pytest.mark.parametrize(("name", "version", "added"), sorted(REPLACED))
def test_a_replaced_version_still_has_its_schema(name, version, added):
    documents = exported()

    old = documents[f"{name}.v{version}.schema.json"]
    new = documents[f"{name}.v{all_types()[name].schema_version}.schema.json"]
    assert added not in old["properties"]
    assert added in new["properties"]
    assert old["x-trialops"]["schema_version"] == version
    assert old["x-trialops"]["current_version"] == all_types()[name].schema_version


def test_every_past_model_is_a_version_readers_accept():
    assert {(name, version) for name, version, _ in REPLACED} == set(past_versions.MODELS)
    for name, version in past_versions.MODELS:
        assert version in readable_versions(name)
        assert version < all_types()[name].schema_version


def past_example(name: str, version: int) -> dict[str, Any]:
    return past_versions.MODELS[(name, version)].model_json_schema()["examples"][0]


@pytest.mark.parametrize(("name", "version"), sorted(past_versions.MODELS))
def test_a_past_versions_example_fits_its_schema_and_upcasts_to_a_current_payload(name, version):
    example = past_example(name, version)
    old = exported()[f"{name}.v{version}.schema.json"]

    Draft202012Validator(old).validate(example)
    past_versions.MODELS[(name, version)].model_validate(example)
    upcast_ = upcast(name, version, example)
    all_types()[name].model_validate(upcast_)
    Draft202012Validator(payload_schema(name)).validate(
        all_types()[name].model_validate(upcast_).model_dump(mode="json")
    )


def test_a_version_1_adverse_event_fits_only_the_version_1_schema():
    v1 = past_example("AdverseEventReported", 1)
    v2 = SAMPLES["AdverseEventReported"].model_dump(mode="json")
    documents = exported()

    assert not Draft202012Validator(documents["AdverseEventReported.v2.schema.json"]).is_valid(v1)
    assert not Draft202012Validator(documents["AdverseEventReported.v1.schema.json"]).is_valid(v2)


def test_every_schema_has_a_stable_id_ending_in_its_file_name():
    documents = exported()

    assert documents["AdverseEventReported.v1.schema.json"]["$id"] == (
        "https://trialops.example/schemas/AdverseEventReported.v1.schema.json"
    )
    for file_name, schema in documents.items():
        assert schema["$id"] == f"https://trialops.example/schemas/{file_name}"
    assert len({s["$id"] for s in documents.values()}) == len(documents)


def schema_registry() -> Registry:
    return Registry().with_resources(
        (schema["$id"], Resource.from_contents(schema)) for schema in exported().values()
    )


def record_validator(file_name: str) -> Draft202012Validator:
    schema = exported()[file_name]
    return Draft202012Validator(schema, registry=schema_registry())


def wire(envelope: Envelope) -> dict[str, Any]:
    return orjson.loads(orjson.dumps(envelope.wire()))


def test_a_record_schema_accepts_the_value_of_a_record_of_its_type_and_version():
    v1 = past_example("AdverseEventReported", 1)
    old = sealed(SAMPLES["AdverseEventReported"], schema_version=1, payload=v1)
    new = sealed(SAMPLES["AdverseEventReported"])

    record_validator("AdverseEventReported.v1.record.schema.json").validate(wire(old))
    record_validator("AdverseEventReported.v2.record.schema.json").validate(wire(new))
    assert not record_validator("AdverseEventReported.v2.record.schema.json").is_valid(wire(old))
    assert not record_validator("AdverseEventReported.v1.record.schema.json").is_valid(wire(new))


def test_a_record_schema_refuses_another_type_and_a_payload_its_type_refuses():
    registered = wire(sealed(SAMPLES["SubjectRegistered"]))
    validator = record_validator("SubjectRegistered.v1.record.schema.json")

    validator.validate(registered)
    assert not record_validator("CohortOpened.v1.record.schema.json").is_valid(registered)
    named = {**registered, "payload": {"subject_id": "John Smith", "site_id": "SITE-01"}}
    assert not validator.is_valid(named)
    assert not validator.is_valid({k: v for k, v in registered.items() if k != "hash"})
