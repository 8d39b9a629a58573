"""The notifications decider (decision 52): an alert is raised once under the id its item and
stage give, and a delivery is recorded only for an alert raised; the trial file lets only the
notifier send those commands."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from events.notifications import AlertDelivered, AlertDeliveryFailed, AlertRaised, alert_id_of
from services.errors import NotFound, RuleViolated
from services.notifications.decider import (
    RaiseAlert,
    RecordAlertDelivery,
    decide,
    evolve,
    initial_state,
)
from trial.config import load_trial

NOW = datetime(2026, 3, 12, 14, tzinfo=UTC)
ALERT_ID = "approaching/expedited-report/AE-0007-01/2026-03-12"


def raise_alert(**changes) -> RaiseAlert:
    fields = {
        "occurred_at": NOW, "alert_id": ALERT_ID, "stage": "approaching",
        "kind": "expedited-report", "subject": "AE-0007-01", "due": "2026-03-12",
        "roles": ("safety_officer",), "route": "POST /safety/expedited-reports",
        "detail": "7-day report of AE-0007-01", "why": ("e-1",),
    }
    return RaiseAlert(**{**fields, **changes})


def delivered(alert_id: str = ALERT_ID) -> RecordAlertDelivery:
    return RecordAlertDelivery(occurred_at=NOW, alert_id=alert_id, roles=("safety_officer",),
                               outcome="delivered", channels=2)


def test_an_alert_of_an_item_approaching_its_deadline_is_raised_on_its_own_stream():
    [new] = decide(raise_alert(), initial_state)
    assert new.stream_id == f"alert-{ALERT_ID}"
    assert isinstance(new.payload, AlertRaised)
    assert new.payload.stage == "approaching" and new.payload.roles == ("safety_officer",)
    assert new.occurred_at == NOW


def test_an_alert_is_raised_once():
    state = evolve(initial_state, decide(raise_alert(), initial_state)[0].payload)
    with pytest.raises(RuleViolated) as refused:
        decide(raise_alert(), state)
    assert refused.value.rule == "alert-raised-once"
    assert refused.value.details == {"alert_id": ALERT_ID}


def test_the_overdue_stage_of_the_same_item_is_another_alert():
    state = evolve(initial_state, decide(raise_alert(), initial_state)[0].payload)
    overdue_id = alert_id_of("overdue", "expedited-report", "AE-0007-01", "2026-03-12")
    [new] = decide(raise_alert(alert_id=overdue_id, stage="overdue"), state)
    assert new.payload.alert_id == "overdue/expedited-report/AE-0007-01/2026-03-12"


def test_an_alert_id_that_does_not_name_its_item_is_refused():
    with pytest.raises(RuleViolated) as refused:
        decide(raise_alert(subject="AE-0009-01"), initial_state)
    assert refused.value.rule == "alert-id-names-the-item"
    assert refused.value.details["expected"] == (
        "approaching/expedited-report/AE-0009-01/2026-03-12")


def test_a_delivery_of_an_alert_never_raised_is_refused():
    with pytest.raises(NotFound) as refused:
        decide(delivered(), initial_state)
    assert refused.value.rule == "delivery-of-a-raised-alert"


def test_a_delivery_and_a_failure_are_recorded_and_folded():
    state = evolve(initial_state, decide(raise_alert(), initial_state)[0].payload)
    failed = RecordAlertDelivery(occurred_at=NOW, alert_id=ALERT_ID, roles=("safety_officer",),
                                 outcome="failed", problem="connection refused")
    [failure] = decide(failed, state)
    assert isinstance(failure.payload, AlertDeliveryFailed)
    state = evolve(state, failure.payload)
    assert state.failed_attempts(ALERT_ID) == 1 and ALERT_ID not in state.delivered
    [success] = decide(delivered(), state)
    assert isinstance(success.payload, AlertDelivered) and success.payload.channels == 2
    state = evolve(state, success.payload)
    assert ALERT_ID in state.delivered


@pytest.mark.parametrize(
    "fields",
    [
        {"outcome": "delivered"},  # no channels
        {"outcome": "failed"},  # no problem
        {"outcome": "delivered", "channels": 1, "problem": "x"},
    ],
)
def test_a_delivery_outcome_carries_its_own_facts(fields):
    with pytest.raises(ValidationError):
        RecordAlertDelivery(occurred_at=NOW, alert_id=ALERT_ID, roles=("safety_officer",),
                            **fields)


def test_a_long_alert_id_is_shortened_to_a_digest_that_stays_an_idempotency_key():
    long_id = alert_id_of("approaching", "expedited-report", "A" * 200, "2026-03-12")
    assert long_id.startswith("approaching/sha256-") and len(long_id) <= 128
    assert long_id == alert_id_of("approaching", "expedited-report", "A" * 200, "2026-03-12")


def test_only_the_notifier_raises_alerts_and_records_their_delivery():
    trial = load_trial()
    assert trial.roles_for("raise-alert") == {"notifier"}
    assert trial.roles_for("record-alert-delivery") == {"notifier"}


def test_two_items_sharing_an_id_are_raised_apart_by_their_part():
    part = "0a1b2c3d"
    part_id = f"{ALERT_ID}/{part}"
    [new] = decide(raise_alert(alert_id=part_id, part=part), initial_state)
    assert new.payload.alert_id == part_id and new.payload.part == part
    state = evolve(initial_state, new.payload)
    # the other item of the same AE and day is another alert
    [other] = decide(raise_alert(alert_id=f"{ALERT_ID}/ffffffff", part="ffffffff"), state)
    assert other.payload.alert_id == f"{ALERT_ID}/ffffffff"
    with pytest.raises(RuleViolated) as refused:
        decide(raise_alert(alert_id=ALERT_ID, part=part), initial_state)
    assert refused.value.rule == "alert-id-names-the-item"


def test_the_notifier_that_raised_an_alert_is_kept_and_a_later_raise_does_not_replace_it():
    [new] = decide(raise_alert(notifier="trialops-projections-old"), initial_state)
    state = evolve(initial_state, new.payload)
    assert state.notifier_of(ALERT_ID) == "trialops-projections-old"
    later = AlertRaised(**{**new.payload.model_dump(), "notifier": "trialops-projections-new"})
    assert evolve(state, later).notifier_of(ALERT_ID) == "trialops-projections-old"
    [unnamed] = decide(raise_alert(), initial_state)
    assert evolve(initial_state, unnamed.payload).notifier_of(ALERT_ID) is None
