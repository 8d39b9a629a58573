"""The inbox, the safety board and the safety service agree on DLT adjudications and evaluations
(review findings 1-3 of issue 15): an item is offered exactly when the service would take its
command, with a deadline that can pass.

Sources: DOMAIN.md section 3 "DLT" (the trial file's default: an AE at least possibly related,
onset in the 28-day window from the infusion, day 0; grade 3 CRS/ICANS not improving to grade
<= 2 within 72 hours, other grade >= 3 non-haematological toxicity not resolving within 7 days;
a patient is DLT-evaluable when followed through the window, or earlier with a DLT). The
window's days are New York calendar days (the trial file's time zone). The givens' subject is
infused on Monday 2 March 2026 at 10:30 UTC (05:30 in New York): day 0 is 2 March, day 28 (the
window's last day) is 30 March, so the window ends at 00:00 on 31 March in New York. The
evaluation's due day (the first day after the window's last day) is decision 53's amendment.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from events.dosing import InfusionRecorded
from projections.alerts import alerts_due
from projections.base import fold
from projections.inbox import Desk, Item, inbox
from projections.live_inbox import parse_query
from services.decider import NewEvent
from services.errors import RuleViolated
from services.safety.commands import AdjudicateDlt, RecordDltEvaluation
from services.safety.state import SafetyState

from .builders import history
from .test_board_detail import PROJECTIONS
from .test_safety_givens import (
    DECIDER,
    SUBJECT,
    TRIAL,
    adjudicate,
    day,
    enrolled,
    given,
    grade_crs,
    infused,
    registered,
    report,
    run,
)

NEW_YORK = ZoneInfo("America/New_York")
LAST_DAY = date(2026, 3, 30)  # day 28 of the window (day 0: 2 March)
WINDOW_ENDS = datetime(2026, 3, 31, 0, 0, tzinfo=NEW_YORK)
EVALUATION_DUE = date(2026, 3, 31)  # the first day after the window's last day
SEVEN_DAYS = timedelta(days=7)  # other grade >= 3 toxicity: resolve within 7 days
SEVENTY_TWO_HOURS = timedelta(hours=72)  # grade 3 CRS/ICANS: improve within 72 hours


def treated_events(subject: str = SUBJECT, infusion: bool = True) -> list[NewEvent]:
    before = day(-10)
    events = [
        NewEvent(f"subject-{subject}", registered(subject), before),
        NewEvent(f"subject-{subject}", enrolled(subject), before),
    ]
    if infusion:
        events.append(NewEvent(f"infusion-{subject}", infused(subject), day(0)))
    return events


def trail(*commands, infusion: bool = True) -> tuple[list[NewEvent], SafetyState]:
    """The subject's enrollment (and infusion), then each command decided and evolved."""
    base = treated_events(infusion=infusion)
    state = given(*[e.payload for e in base])
    produced, state = run(state, *commands)
    return [*base, *produced], state


def items(events: list[NewEvent], as_of: datetime, kind: str) -> list[Item]:
    return [i for i in inbox(history(events), TRIAL, as_of, "investigator") if i.kind == kind]


def board_row(events: list[NewEvent], ae_id: str, as_of: datetime) -> dict:
    board = PROJECTIONS["safety"]
    doc = board.document(fold(board, history(events)), as_of)
    [row] = [a for a in doc["adverse_events"]["list"] if a["ae_id"] == ae_id]
    return row


def refusal(command, state: SafetyState) -> str | None:
    try:
        DECIDER.decide(command, state)
    except RuleViolated as refused:
        return refused.rule
    return None


# -------------------------------------------------- finding 1: a rule clock past the window


COLITIS_ONSET = WINDOW_ENDS - timedelta(days=2)  # 00:00 on 29 March, day 27


def colitis() -> tuple[list[NewEvent], SafetyState]:
    """Grade 3 colitis (not haematological), possibly related, from day 27, not resolved."""
    return trail(report(term="Colitis", grade=3, attribution="possible",
                        onset_at=COLITIS_ONSET, sponsor_received_at=COLITIS_ONSET,
                        occurred_at=COLITIS_ONSET + timedelta(hours=1)))


def test_a_severe_ae_whose_seven_days_run_past_the_window_is_not_offered_while_they_run():
    events, state = colitis()
    after_the_window = WINDOW_ENDS + timedelta(hours=1)

    assert items(events, after_the_window, "dlt-adjudication") == []
    with pytest.raises(RuleViolated) as refused:
        DECIDER.decide(adjudicate(after_the_window, verdict="dlt"), state)
    assert refused.value.rule == "dlt-verdict-pending"
    clock_ends = COLITIS_ONSET + SEVEN_DAYS
    assert refused.value.details["possible_after"] == clock_ends.isoformat()
    row = board_row(events, "AE-0007-01", after_the_window)
    assert (row["dlt_status"], row["dlt_rule_verdict_after"]) == (
        "awaiting-rule", clock_ends.isoformat())
    # nor is anything overdue or alerted about it
    assert [a for a in alerts_due(inbox(history(events), TRIAL, after_the_window), TRIAL,
                                  after_the_window) if a.item.kind == "dlt-adjudication"] == []


def test_once_the_seven_days_are_over_the_adjudication_is_offered_due_that_day():
    events, state = colitis()
    clock_ends = COLITIS_ONSET + SEVEN_DAYS  # 00:00 on 5 April in New York
    moment = clock_ends + timedelta(hours=1)

    [item] = items(events, moment, "dlt-adjudication")
    assert (item.subject, item.due, item.overdue) == ("AE-0007-01", date(2026, 4, 5), False)
    assert refusal(adjudicate(moment, verdict="dlt"), state) is None
    assert board_row(events, "AE-0007-01", moment)["dlt_status"] == "adjudication-due"
    [late] = items(events, datetime(2026, 4, 6, 0, 30, tzinfo=NEW_YORK), "dlt-adjudication")
    assert late.overdue


def test_a_severe_ae_adjudicable_inside_the_window_is_due_by_its_last_day():
    # grade 3 CRS from day 1 (the givens' report), 72 hours to improve: a verdict from day 4
    events, _state = trail(report(grade=3, attribution="probable"))
    [item] = items(events, day(1) + SEVENTY_TWO_HOURS + timedelta(minutes=1), "dlt-adjudication")
    assert (item.due, item.overdue) == (LAST_DAY, False)
    [late] = items(events, WINDOW_ENDS + timedelta(minutes=1), "dlt-adjudication")
    assert late.overdue
    assert items(events, day(2), "dlt-adjudication") == []  # the 72 hours still run


# ------------------------------------------------------ finding 2: nobody can adjudicate it


def test_a_fatal_ae_of_a_subject_never_infused_is_no_one_s_adjudication():
    fatal = report(grade=5, serious_criteria=("death",), attribution="possible",
                   expected=False, onset_at=day(-2), sponsor_received_at=day(-2),
                   occurred_at=day(-1))
    events, state = trail(fatal, infusion=False)

    assert board_row(events, "AE-0007-01", day(1))["dlt_status"] is None
    assert items(events, day(1), "dlt-adjudication") == []
    assert refusal(adjudicate(day(1)), state) == "dlt-needs-an-infusion"


def test_a_grade_2_ae_is_neither_offered_nor_accepted_for_adjudication():
    events, state = trail(report(grade=2))
    assert items(events, day(3), "dlt-adjudication") == []
    assert board_row(events, "AE-0007-01", day(3))["dlt_status"] is None
    assert refusal(adjudicate(day(3), verdict="not-dlt"), state) == (
        "dlt-adjudication-of-a-candidate")


def test_a_severe_ae_with_onset_after_the_window_is_not_awaited():
    late = WINDOW_ENDS + timedelta(days=3)
    events, state = trail(report(term="Colitis", grade=4, onset_at=late,
                                 sponsor_received_at=late, occurred_at=late))
    assert items(events, late + timedelta(days=1), "dlt-adjudication") == []
    assert refusal(adjudicate(late + timedelta(days=1), verdict="not-dlt"), state) == (
        "dlt-adjudication-of-a-candidate")
    assert refusal(RecordDltEvaluation(subject_id=SUBJECT, occurred_at=late + timedelta(days=1)),
                   state) is None


# --------------------------------------------------- finding 3: the evaluation has a deadline


@pytest.mark.parametrize(
    ("moment", "listed", "overdue", "stage"),
    [
        (WINDOW_ENDS - timedelta(hours=1), False, None, None),  # 23:00 on day 28
        (WINDOW_ENDS + timedelta(minutes=30), True, False, "approaching"),
        (datetime(2026, 3, 31, 23, 0, tzinfo=NEW_YORK), True, False, "approaching"),
        (datetime(2026, 4, 1, 0, 30, tzinfo=NEW_YORK), True, True, "overdue"),
        (datetime(2026, 5, 1, 9, 0, tzinfo=NEW_YORK), True, True, "overdue"),
    ],
)
def test_an_evaluation_without_a_dlt_is_offered_when_the_window_ends_and_turns_overdue_a_day_later(
    moment, listed, overdue, stage
):
    events, state = trail()
    found = items(events, moment, "dlt-evaluation")
    accepted = refusal(RecordDltEvaluation(subject_id=SUBJECT, occurred_at=moment), state) is None
    assert (bool(found), accepted) == (listed, listed)
    if listed:
        [item] = found
        assert (item.due, item.overdue) == (EVALUATION_DUE, overdue)
        [alert] = [a for a in alerts_due(found, TRIAL, moment)]
        assert alert.stage == stage


def test_an_adjudicated_dlt_offers_the_evaluation_at_once_and_not_before():
    graded = day(1, hours=6)  # grade 4 CRS (multiple vasopressors): a DLT at once
    events, state = trail(report(), grade_crs(graded, hypotension="multiple-vasopressors"))
    assert items(events, graded + timedelta(hours=1), "dlt-evaluation") == []
    assert refusal(RecordDltEvaluation(subject_id=SUBJECT, occurred_at=graded + timedelta(hours=1)),
                   state) == "dlt-adjudications-pending"

    adjudicated, state = run(state, adjudicate(graded + timedelta(hours=2)))
    events = [*events, *adjudicated]
    [item] = items(events, graded + timedelta(hours=3), "dlt-evaluation")
    assert (item.due, item.overdue) == (EVALUATION_DUE, False)


# ------------------------------ every moment of a simulated trial: offered iff accepted


def test_throughout_a_simulated_trial_an_item_is_offered_exactly_when_the_service_accepts_it():
    from .test_inbox import trial_events

    trial, recorded = trial_events()
    ordered = sorted(recorded, key=lambda r: r.envelope.recorded_at)
    start = ordered[0].envelope.recorded_at
    end = ordered[-1].envelope.recorded_at + timedelta(days=40)
    desk, n, checked = Desk(), 0, 0
    moment = start
    while moment <= end:
        while n < len(ordered) and ordered[n].envelope.recorded_at <= moment:
            desk.fold(ordered[n])
            n += 1
        pending = desk.pending(trial, moment)
        offered = {i.subject for i in pending if i.kind == "dlt-adjudication"}
        for ae_id in desk.safety.adverse_events:
            command = AdjudicateDlt(ae_id=ae_id, verdict="dlt", reason="committee",
                                    occurred_at=moment)
            assert (refusal(command, desk.safety) is None) == (ae_id in offered), (ae_id, moment)
            checked += 1
        evaluations = {i.subject for i in pending if i.kind == "dlt-evaluation"}
        for subject_id in desk.safety.subjects:
            command = RecordDltEvaluation(subject_id=subject_id, occurred_at=moment)
            accepted = refusal(command, desk.safety) is None
            assert accepted == (subject_id in evaluations), (subject_id, moment)
        moment += timedelta(hours=7)
    assert checked > 100


# ----------------------------------------------------------------- the inbox's role check


def test_the_auditor_may_ask_for_an_inbox_and_the_notifier_may_not():
    assert parse_query({"role": "auditor"}, TRIAL) == ("auditor", None)
    events, _ = trail(report(grade=3, attribution="probable"))
    assert inbox(history(events), TRIAL, day(5), "auditor") == []
    for system_role in ("notifier", "administrator"):
        with pytest.raises(ValueError, match=rf"^role: '{system_role}' has no inbox"):
            parse_query({"role": system_role}, TRIAL)


# -------------------------------------------------------------------- the givens' calendar


def test_the_givens_window_has_its_last_day_on_30_march_in_new_york():
    payload: InfusionRecorded = infused()
    assert payload.infused_at.astimezone(NEW_YORK).date() == date(2026, 3, 2)
    assert LAST_DAY - date(2026, 3, 2) == timedelta(days=TRIAL.dlt.window_days)


def test_the_board_filtered_to_one_ae_shows_the_status_of_the_whole_document():
    from projections.views import _document

    events, _ = trail(report(grade=3, attribution="probable"))
    board = PROJECTIONS["safety"]
    table = {key: {"state": state} for key, state in fold(board, history(events)).items()}
    moment = day(1) + SEVENTY_TWO_HOURS + timedelta(hours=1)

    one = _document(board, table, {"key": "ae:AE-0007-01"}, moment, None)

    assert one is not None
    [row] = one["adverse_events"]["list"]
    assert row["dlt_status"] == board_row(events, "AE-0007-01", moment)["dlt_status"] == (
        "adjudication-due")
