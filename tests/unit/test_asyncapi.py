"""The AsyncAPI 3.0 document of the topics (decision 43), and what ``trialops schemas export``
writes.

Sources: the AsyncAPI 3.0.0 specification, checked with its official JSON Schema
(tests/vendor/asyncapi-3.0.0.json, from asyncapi/spec-json-schemas; see tests/vendor/README.md):
an operation's messages are a subset of its channel's; a channel address may name parameters in
braces. The topic catalogue and the event types are the project's (events/topics.py,
events/registry.py); the headers are CloudEvents 1.0.2's Kafka binding (tests/unit/
test_cloudevents.py).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import Draft7Validator, Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7
from typer.testing import CliRunner

from events.cloudevents import record_headers
from events.envelope import Envelope
from events.past_versions import MODELS as PAST_MODELS
from events.registry import all_types, readable_versions
from events.safety import AdverseEventReported
from events.schemas import BASE
from events.topics import SHARED, WRITERS, catalogue
from trialops.contracts import contracts, export

from .builders import sealed

OFFICIAL = Path(__file__).parent.parent / "vendor" / "asyncapi-3.0.0.json"
AE = AdverseEventReported.model_validate(AdverseEventReported.model_json_schema()["examples"][0])


@functools.cache
def written() -> dict[str, dict[str, Any]]:
    return contracts()


def asyncapi() -> dict[str, Any]:
    return written()["asyncapi.json"]


@functools.cache
def official() -> Draft7Validator:
    return Draft7Validator(orjson.loads(OFFICIAL.read_bytes()))


def test_the_document_is_a_valid_asyncapi_3_0_0_document():
    document = asyncapi()

    assert document["asyncapi"] == "3.0.0"
    errors = [f"{list(e.absolute_path)}: {e.message[:200]}" for e in official().iter_errors(
        document
    )]
    assert errors == []


@pytest.mark.parametrize(
    ("where", "value"),
    [
        (("operations", "appendSafetyEvents", "action"), "publish"),  # AsyncAPI 2's verb
        (("channels", "safetyEvents", "address"), 42),
        (("info",), {"title": "no version"}),
    ],
)
def test_the_official_schema_refuses_a_broken_document(where, value):
    document = orjson.loads(orjson.dumps(asyncapi()))
    target = document
    for key in where[:-1]:
        target = target[key]
    target[where[-1]] = value

    assert not official().is_valid(document)


def addresses(namespace: str) -> set[str]:
    return {
        channel["address"].replace("{namespace}", namespace)
        for channel in asyncapi()["channels"].values()
    }


@pytest.mark.parametrize("namespace", ["trialops", "site-b"])
def test_every_topic_of_the_catalogue_is_a_channel(namespace):
    assert addresses(namespace) == {spec.name for spec in catalogue(namespace)}


def test_an_event_channel_is_kept_forever_on_one_partition():
    binding = asyncapi()["channels"]["safetyEvents"]["bindings"]["kafka"]

    assert binding["partitions"] == 1
    assert binding["topicConfiguration"] == {
        "retention.ms": -1, "retention.bytes": -1, "cleanup.policy": ["delete"],
    }


@pytest.mark.parametrize("context", WRITERS)
def test_every_version_of_every_type_its_writer_may_append_is_a_message_of_its_channel(context):
    channel = asyncapi()["channels"][f"{context}Events"]
    expected = {
        f"{name}.v{version}"
        for name, model in all_types().items()
        if model.context in (context, SHARED)
        for version in readable_versions(name)
    }

    assert set(channel["messages"]) == expected
    for key, ref in channel["messages"].items():
        assert ref == {"$ref": f"#/components/messages/{key}"}


def test_the_safety_channel_carries_both_versions_of_an_adverse_event_report():
    messages = asyncapi()["channels"]["safetyEvents"]["messages"]

    assert {"AdverseEventReported.v1", "AdverseEventReported.v2"} <= set(messages)
    v1 = asyncapi()["components"]["messages"]["AdverseEventReported.v1"]
    assert v1["deprecated"] is True
    assert v1["payload"] == {"$ref": "AdverseEventReported.v1.record.schema.json"}


@pytest.mark.parametrize("context", WRITERS)
def test_a_writer_sends_the_current_version_of_each_of_its_types(context):
    operation = asyncapi()["operations"][f"append{context.title()}Events"]
    channel = f"{context}Events"

    assert operation["action"] == "send"
    assert operation["channel"] == {"$ref": f"#/channels/{channel}"}
    sent = {ref["$ref"] for ref in operation["messages"]}
    assert sent == {
        f"#/channels/{channel}/messages/{name}.v{model.schema_version}"
        for name, model in all_types().items()
        if model.context in (context, SHARED)
    }


def test_every_operation_sends_only_messages_of_its_channel():
    document = asyncapi()
    for name, operation in document["operations"].items():
        channel = operation["channel"]["$ref"].removeprefix("#/channels/")
        for ref in operation["messages"]:
            prefix, _, key = ref["$ref"].rpartition("/")
            assert prefix == f"#/channels/{channel}/messages", name
            assert key in document["channels"][channel]["messages"], name


def refs(value: Any) -> list[str]:
    if isinstance(value, dict):
        found = [value["$ref"]] if isinstance(value.get("$ref"), str) else []
        return found + [r for v in value.values() for r in refs(v)]
    if isinstance(value, list):
        return [r for v in value for r in refs(v)]
    return []


def pointer(document: dict[str, Any], ref: str) -> Any:
    target: Any = document
    for part in ref.removeprefix("#/").split("/"):
        target = target[part.replace("~1", "/").replace("~0", "~")]
    return target


def test_every_reference_of_the_document_resolves_inside_it_or_to_a_written_schema():
    document = asyncapi()
    files = set(written())
    for ref in refs(document):
        if ref.startswith("#/"):
            pointer(document, ref)
        else:
            assert ref in files, ref


def test_export_writes_the_document_beside_every_schema_it_refers_to(tmp_path):
    paths = export(tmp_path)

    assert {p.name for p in paths} == set(written())
    assert {"asyncapi.json", "checkpoint.schema.json", "envelope.schema.json"} <= {
        p.name for p in tmp_path.iterdir()
    }
    assert orjson.loads((tmp_path / "asyncapi.json").read_bytes()) == asyncapi()


def test_the_cli_schemas_export_writes_the_asyncapi_document(tmp_path):
    from trialops.cli import app

    result = CliRunner().invoke(app, ["schemas", "export", str(tmp_path / "contracts")])

    assert result.exit_code == 0, result.output
    assert "asyncapi.json" in result.output
    document = orjson.loads((tmp_path / "contracts" / "asyncapi.json").read_bytes())
    assert official().is_valid(document)


# ---------------------------------------------------------------- a real record against it


@functools.cache
def registry() -> Registry:
    """Every written document by its $id; the AsyncAPI document where it is written, so its
    relative references resolve to the schemas' ids."""
    resources = [
        (schema["$id"], Resource.from_contents(schema))
        for name, schema in written().items()
        if name != "asyncapi.json"
    ]
    resources.append((BASE + "asyncapi.json", DRAFT7.create_resource(asyncapi())))
    return Registry().with_resources(resources)


def message_part(key: str, part: str) -> Draft202012Validator:
    ref = f"{BASE}asyncapi.json#/components/messages/{key}/{part}"
    return Draft202012Validator({"$ref": ref}, registry=registry())


def value_of(envelope: Envelope) -> dict[str, Any]:
    return orjson.loads(orjson.dumps(envelope.wire()))


def headers_of(envelope: Envelope, topic: str) -> dict[str, str]:
    return {name: value.decode() for name, value in record_headers(envelope, topic)}


def v1_report() -> Envelope:
    v1 = PAST_MODELS[("AdverseEventReported", 1)].model_json_schema()["examples"][0]
    return sealed(AE, schema_version=1, payload=v1)


def test_a_version_2_report_matches_its_message_and_not_the_version_1_message():
    record = sealed(AE)
    headers = headers_of(record, "trialops.safety.events")

    message_part("AdverseEventReported.v2", "payload").validate(value_of(record))
    message_part("AdverseEventReported.v2", "headers").validate(headers)
    assert not message_part("AdverseEventReported.v1", "payload").is_valid(value_of(record))
    assert not message_part("AdverseEventReported.v1", "headers").is_valid(headers)


def test_a_version_1_report_on_the_topic_matches_the_version_1_message():
    record = v1_report()
    headers = headers_of(record, "site-b.safety.events")

    message_part("AdverseEventReported.v1", "payload").validate(value_of(record))
    message_part("AdverseEventReported.v1", "headers").validate(headers)
    assert not message_part("AdverseEventReported.v2", "payload").is_valid(value_of(record))


@pytest.mark.parametrize(
    "header", ["ce_specversion", "ce_id", "ce_type", "ce_time", "content-type", "traceparent"]
)
def test_a_record_without_one_of_the_headers_does_not_match_its_message(header):
    headers = headers_of(sealed(AE), "trialops.safety.events")
    del headers[header]

    assert not message_part("AdverseEventReported.v2", "headers").is_valid(headers)


def test_the_correlation_id_is_found_where_the_document_says():
    location = asyncapi()["components"]["correlationIds"]["command"]["location"]
    record = value_of(sealed(AE))

    assert location == "$message.payload#/correlation_id"
    assert record["correlation_id"] == "11111111-1111-4111-8111-111111111111"


def examples() -> list:
    """Each registered type's documented example, on its writer's topic (shared types on the
    enrollment topic)."""
    cases = []
    for name, model in all_types().items():
        example = model.model_json_schema().get("examples")
        if example:
            context = "enrollment" if model.context == SHARED else model.context
            cases.append(pytest.param(name, model.model_validate(example[0]), context, id=name))
    return cases


@pytest.mark.parametrize(("name", "payload", "context"), examples())
def test_every_types_record_and_headers_match_its_current_message(name, payload, context):
    record = sealed(payload)
    key = f"{name}.v{payload.schema_version}"

    message_part(key, "payload").validate(value_of(record))
    message_part(key, "headers").validate(headers_of(record, f"trialops.{context}.events"))
