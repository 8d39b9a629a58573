"""The AsyncAPI 3.0 document of the topic catalogue, generated from it and the event registry.

One channel per topic of the catalogue (events/topics.py): each writer's event topic
``{namespace}.<context>.events`` and the auditor's ``{namespace}.checkpoints``. An event
channel's messages are every version of every event type its writer may append (its context's
and the shared ones), past versions included, since they stay on the topic; each message's
payload is the record's exported JSON Schema (events/schemas.py), its headers the CloudEvents
Kafka binding's (events/cloudevents.py). The operations are the writers' sends: an event
writer sends the current version of each type only.

Pure: the document is a dictionary; trialops/contracts.py writes it beside the schemas it
refers to (relative references, like the schemas' own).
"""

from __future__ import annotations

import re
from typing import Any

from events.cloudevents import CONTENT_TYPE, SOURCE_ROOT, SPECVERSION, TYPE_PREFIX
from events.registry import EventPayload, all_types, readable_versions
from events.schemas import payload_model, record_file, record_schema_id
from events.topics import (
    DEFAULT_NAMESPACE,
    SHARED,
    WRITERS,
    TopicSpec,
    catalogue,
    checkpoint_topic,
    event_topic,
)

VERSION = "3.0.0"
FILE_NAME = "asyncapi.json"
CHECKPOINT_SCHEMA = "checkpoint.schema.json"
"""The signed checkpoint's JSON Schema, written beside this document (audit/checkpoint.py)."""
KAFKA_BINDING = "0.5.0"
NAMESPACE = "{namespace}"

HEADERS = "CloudEventsHeaders"


def document(version: str) -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document of every topic in the catalogue; ``version`` is the
    application's (info.version)."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    topics = {spec.name: spec for spec in catalogue(NAMESPACE)}
    for context in WRITERS:
        channel = _channel_name(context)
        spec = topics[event_topic(context, NAMESPACE)]
        current = []
        listed = {}
        for name, model in _written_by(context).items():
            for schema_version in readable_versions(name):
                key = message_name(name, schema_version)
                messages[key] = _event_message(name, schema_version, model)
                listed[key] = {"$ref": f"#/components/messages/{key}"}
                if schema_version == model.schema_version:
                    current.append({"$ref": f"#/channels/{channel}/messages/{key}"})
        channels[channel] = {
            "address": spec.name,
            "title": f"{context} events",
            "description": (
                f"The {context} writer's events, one record per event, keyed by its stream id; "
                "kept forever, never compacted. Only the writer appends here."
            ),
            "parameters": {"namespace": {"$ref": "#/components/parameters/namespace"}},
            "messages": listed,
            "bindings": {"kafka": _topic_binding(spec)},
        }
        operations[f"append{context.title()}Events"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{channel}"},
            "title": f"The {context} writer appends",
            "description": (
                f"The {context} service, sole writer of its topic, appends the events a command "
                "decided in one Kafka transaction (acks=all), each in its type's current version."
            ),
            "messages": current,
        }
    spec = topics[checkpoint_topic(NAMESPACE)]
    messages["SignedCheckpoint"] = _checkpoint_message()
    channels["checkpoints"] = {
        "address": spec.name,
        "title": "Signed checkpoints",
        "description": (
            "The auditor's signed statements of every stream head and topic end offset "
            "(decision 21), keyed by the namespace; kept forever, like the events."
        ),
        "parameters": {"namespace": {"$ref": "#/components/parameters/namespace"}},
        "messages": {"SignedCheckpoint": {"$ref": "#/components/messages/SignedCheckpoint"}},
        "bindings": {"kafka": _topic_binding(spec)},
    }
    operations["publishCheckpoint"] = {
        "action": "send",
        "channel": {"$ref": "#/channels/checkpoints"},
        "title": "The auditor publishes a checkpoint",
        "description": "`trialops checkpoint` writes each checkpoint it signs here.",
        "messages": [{"$ref": "#/channels/checkpoints/messages/SignedCheckpoint"}],
    }
    return {
        "asyncapi": VERSION,
        "id": "urn:trialops:topics",
        "info": {
            "title": "trialops event topics",
            "version": version,
            "description": (
                "The Kafka topics of trialops, an event-sourced operations backend for a phase I "
                "CAR T-cell trial. A record's value is a JSON envelope (hash-chained per stream, "
                "signed by its writer); its Kafka headers carry the CloudEvents 1.0.2 attributes "
                "(Kafka protocol binding, binary content mode) and a W3C traceparent, outside "
                "the hash: a consumer may route on them, a reader of the log ignores them."
            ),
        },
        "defaultContentType": CONTENT_TYPE,
        "channels": channels,
        "operations": operations,
        "components": {
            "parameters": {
                "namespace": {
                    "description": "The deployment's namespace (TRIALOPS_NAMESPACE).",
                    "default": DEFAULT_NAMESPACE,
                    "examples": [DEFAULT_NAMESPACE],
                }
            },
            "schemas": {HEADERS: _headers_schema()},
            "correlationIds": {
                "command": {
                    "description": (
                        "The command that appended the event: every event of one command "
                        "shares it, and the traceparent's trace id is its 32 hex digits unless "
                        "the caller sent a traceparent."
                    ),
                    "location": "$message.payload#/correlation_id",
                }
            },
            "messages": messages,
        },
    }


def message_name(name: str, version: int) -> str:
    return f"{name}.v{version}"


def _channel_name(context: str) -> str:
    return f"{context}Events"


def _written_by(context: str) -> dict[str, type[EventPayload]]:
    return {n: m for n, m in all_types().items() if m.context in (context, SHARED)}


def _topic_binding(spec: TopicSpec) -> dict[str, Any]:
    configuration: dict[str, Any] = {}
    for key, value in spec.configs.items():
        # The binding's schema types these; the catalogue keeps Kafka's strings.
        if key == "cleanup.policy":
            configuration[key] = value.split(",")
        elif key in ("retention.ms", "retention.bytes"):
            configuration[key] = int(value)
        else:
            configuration[key] = value
    return {
        "partitions": spec.partitions,
        "topicConfiguration": configuration,
        "bindingVersion": KAFKA_BINDING,
    }


def _event_message(name: str, version: int, model: type[EventPayload]) -> dict[str, Any]:
    ce_type = f"{TYPE_PREFIX}.{model.context}.{name}.v{version}"
    message: dict[str, Any] = {
        "name": name,
        "title": f"{name} v{version}",
        "contentType": CONTENT_TYPE,
        "headers": {
            "type": "object",
            "allOf": [
                {"$ref": f"#/components/schemas/{HEADERS}"},
                {
                    "properties": {
                        "ce_type": {"const": ce_type},
                        "ce_dataschema": {"const": record_schema_id(name, version)},
                    }
                },
            ],
        },
        "payload": {"$ref": record_file(name, version)},
        "correlationId": {"$ref": "#/components/correlationIds/command"},
        "bindings": {
            "kafka": {
                "key": {"type": "string", "description": "The event's stream id (ce_subject)."},
                "bindingVersion": KAFKA_BINDING,
            }
        },
        "x-trialops": {"event_type": name, "schema_version": version, "context": model.context},
    }
    description = _first_paragraph(payload_model(name, version).__doc__)
    if description:
        message["description"] = description
    if version < model.schema_version:
        message["deprecated"] = True
        message["summary"] = (
            f"Written by earlier releases; read as v{model.schema_version} (upcast at the edge)."
        )
    return message


def _checkpoint_message() -> dict[str, Any]:
    return {
        "name": "SignedCheckpoint",
        "title": "Signed checkpoint",
        "contentType": CONTENT_TYPE,
        "payload": {"$ref": CHECKPOINT_SCHEMA},
        "bindings": {
            "kafka": {
                "key": {"type": "string", "description": "The namespace."},
                "bindingVersion": KAFKA_BINDING,
            }
        },
    }


def _headers_schema() -> dict[str, Any]:
    text = {"type": "string"}
    return {
        "type": "object",
        "description": (
            "CloudEvents 1.0.2 attributes in the Kafka protocol binding's binary content mode "
            "(each attribute a ce_ header, the data's media type in content-type) and a W3C "
            "Trace Context traceparent, as UTF-8 strings. Records appended before decision 43 "
            "carry no headers; readers of the log never need them."
        ),
        "required": [
            "ce_specversion", "ce_id", "ce_source", "ce_type", "ce_subject", "ce_time",
            "ce_dataschema", "content-type", "traceparent",
        ],
        "properties": {
            "ce_specversion": {"const": SPECVERSION},
            "ce_id": {**text, "format": "uuid", "description": "The envelope's event_id."},
            "ce_source": {
                **text,
                "format": "uri-reference",
                "pattern": f"^{re.escape(SOURCE_ROOT)}/[^/]+/[a-z]+$",
                "description": "/trialops/<namespace>/<context>: the writer that appended it.",
            },
            "ce_type": {
                **text,
                "pattern": rf"^{re.escape(TYPE_PREFIX)}\.[a-z]+\.[A-Za-z0-9]+\.v[0-9]+$",
                "description": "org.trialops.<context>.<EventType>.v<schema_version>.",
            },
            "ce_subject": {**text, "description": "The envelope's stream_id (the record key)."},
            "ce_time": {
                **text,
                "format": "date-time",
                "description": "The envelope's recorded_at (system time), RFC 3339 in UTC.",
            },
            "ce_dataschema": {
                **text,
                "format": "uri",
                "description": "The $id of the record's JSON Schema (type and version).",
            },
            "content-type": {"const": CONTENT_TYPE},
            "traceparent": {
                **text,
                "pattern": "^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
                "description": (
                    "W3C Trace Context: the caller's trace when the command came with one, else "
                    "a trace whose id is the correlation_id's hex digits; the parent id names "
                    "this append."
                ),
            },
        },
    }


def _first_paragraph(doc: str | None) -> str:
    if not doc:
        return ""
    return " ".join(doc.strip().split("\n\n")[0].split())
