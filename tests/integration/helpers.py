"""Small helpers for the integration tests: HTTP calls as the demo users, the real path of a
subject to eligibility, reading topics back, and a stand-in writer for an upstream context."""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import orjson

from clients.http import call, get_bytes
from events.envelope import Actor, Envelope, from_bytes
from events.reading import Quarantine
from events.registry import EventPayload
from events.topics import event_topic
from infra.kafka_io import read_to_end
from infra.keys import load_keyring, load_signer
from infra.settings import Settings
from projections.base import to_json
from projections.catalog import get as get_projection
from projections.paging import MAX_LIMIT, NEXT, assemble
from services.decider import NewEvent
from services.eventstore import KafkaEventStore

INVESTIGATOR = "demo-investigator"
COORDINATOR = "demo-site_coordinator"
NOW = "2026-11-26T09:00:00+00:00"
CONSENT_SIGNED = "2026-11-02T10:00:00+00:00"
SCREENING_STARTED = "2026-11-03T08:00:00+00:00"

# Evidence that meets every criterion of the shipped trial file (trials/nct06623396.json).
ELIGIBLE_EVIDENCE = {
    "peritoneal_carcinomatosis_by": ["imaging", "cytology"],
    "prior_lines": 2,
    "recist_lesion": "measurable",
    "age_years": 61,
    "ecog": 1,
    "labs": {
        "absolute_neutrophil_count_10e9_per_l": 2.1,
        "platelets_10e9_per_l": 180.0,
        "hemoglobin_g_per_dl": 10.9,
        "creatinine_clearance_ml_per_min": 78.0,
        "total_bilirubin_x_uln": 0.7,
        "alt_x_uln": 1.2,
    },
    "active_infection": False,
    "screening_started_at": SCREENING_STARTED,
}


def post(stack, path: str, body: Any, token: str = COORDINATOR) -> tuple[int, Any]:
    return call("POST", f"{stack.service_url}{path}", body, token=token)


def posted(stack, path: str, body: Any, token: str = COORDINATOR) -> Any:
    """POST that must be accepted; returns the answer."""
    status, answer = post(stack, path, body, token=token)
    assert status == 201, (path, body, answer)
    return answer


def open_cohort(
    stack, cohort_id: str, dose_level: str = "DL1", recommendation_id: str | None = None
) -> None:
    """The review opens a cohort at a trial-file dose level, citing a recommendation (the
    first cohort at the start level may omit it; citing one does no harm)."""
    posted(
        stack,
        "/enrollment/cohorts",
        {
            "cohort_id": cohort_id,
            "dose_level": dose_level,
            "recommendation_id": recommendation_id or f"REC-{cohort_id}",
            "occurred_at": NOW,
        },
        token=INVESTIGATOR,
    )


def register(stack, subject_id: str) -> None:
    posted(stack, "/enrollment/subjects", {"subject_id": subject_id, "site_id": "MSK"})


def make_eligible(stack, subject_id: str, **evidence: Any) -> None:
    """The real path: register, pre-screen (MSLN 60%), consent, assess eligibility."""
    register(stack, subject_id)
    posted(
        stack,
        "/enrollment/prescreenings",
        {"subject_id": subject_id, "msln_ihc_percent": 60.0, "occurred_at": CONSENT_SIGNED},
    )
    posted(
        stack,
        "/enrollment/consents",
        {
            "subject_id": subject_id,
            "form_version": "ICF-v1",
            "signed_at": CONSENT_SIGNED,
            "occurred_at": CONSENT_SIGNED,
        },
    )
    answer = posted(
        stack,
        "/enrollment/eligibility-assessments",
        {"subject_id": subject_id, **ELIGIBLE_EVIDENCE, **evidence, "occurred_at": NOW},
        token=INVESTIGATOR,
    )
    assert [e["event_type"] for e in answer["events"]] == ["EligibilityAssessed"], answer


def enroll(stack, subject_id: str, cohort_id: str, **fields: Any) -> tuple[int, Any]:
    body = {"subject_id": subject_id, "cohort_id": cohort_id, **fields}
    return post(stack, "/enrollment/enrollments", body)


def enrollment_events(settings: Settings) -> list[Envelope]:
    return events_of(settings, "enrollment")


def events_of(settings: Settings, context: str) -> list[Envelope]:
    topic = event_topic(context, settings.namespace)
    return [
        from_bytes(value) for _pos, _key, value in read_to_end(settings.bootstrap_servers, [topic])
    ]


def append_upstream(
    settings: Settings, context: str, stream_id: str, payload: EventPayload, role: str
) -> None:
    """Stand in for another context's service: append one fact to its topic, sealed and
    chained like the service would, under a writer id of its own (so a running service of that
    context is not fenced). Used only where a test needs an upstream fact (a lot released, the
    stopping rule) without driving that context's whole workflow."""
    keyring = load_keyring(settings.keyring)
    store = KafkaEventStore(
        settings.bootstrap_servers,
        event_topic(context, settings.namespace),
        settings.trial_id,
        writer_id=f"{settings.namespace}.{context}.test-writer-{uuid4().hex[:8]}",
        keyring=keyring,
        signer=load_signer(settings.writer_keys, context, keyring),
    )
    try:
        store.open(Quarantine(), NoFold())  # the heads alone: this writer decides nothing
        envelopes = store.seal_all(
            [NewEvent(stream_id, payload, datetime.now(UTC))],
            actor=Actor(user_id=f"test-{role}", role=role),
            recorded_at=datetime.now(UTC),
            correlation_id=uuid4(),
        )
        store.append(envelopes)
    finally:
        store.close()
    # The commit returns before the broker has written the transaction's markers; a
    # read-committed reader (the service's upstream tail) sees the fact only after them.
    wanted = envelopes[0].event_id
    eventually(lambda: any(e.event_id == wanted for e in events_of(settings, context)))


def eventually(check: Callable[[], Any], timeout: float = 30, interval: float = 0.25) -> Any:
    """Poll ``check`` until it returns a truthy value; fail with its last answer."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s; last answer: {last!r}")


class NoFold:
    """A ``Folding`` that keeps nothing of what a store's open reads (services/eventstore.py)."""

    def begin(self, snapshot) -> bool:
        return True

    def add(self, position, recorded) -> None:
        pass


def whole_view(url: str, token: str | None = None) -> bytes:
    """A projection's live view as one document: its pages followed through ``next_cursor``
    and put together (projections/paging.py), serialised as the worker and the replay
    serialise a document. A view without a list is its one answer."""
    path, _, query = url.partition("?")
    name = path.rstrip("/").rsplit("/", 1)[-1]
    listing = get_projection(name).listing
    if listing is None:
        return get_bytes(url, token=token)
    joined = f"{url}{'&' if query else '?'}limit={MAX_LIMIT}"
    pages = [orjson.loads(get_bytes(joined, token=token))]
    while cursor := pages[-1][NEXT]:
        cursor_query = urllib.parse.urlencode({"cursor": cursor})
        pages.append(orjson.loads(get_bytes(f"{joined}&{cursor_query}", token=token)))
    return to_json(assemble(listing, pages))
