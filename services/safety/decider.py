"""Safety decider: adverse events, their grading, regrades and improvement, and the stopping
rule. Pure: no I/O, no clock; ``make_decider(trial)`` closes over the trial's configuration.

Rules (DOMAIN.md section 3; CTCAE v5; 21 CFR 312.32 / ICH E2A; ASTCT 2019 Lee et al.):
- An AE is reported once, under its id, for a registered subject; its onset and the sponsor's
  receipt are not in the future, and the receipt is not before the onset. A grade 5 AE is
  serious by the "death" criterion and "death" means grade 5 (CTCAE v5: grade 5 is death
  related to the AE). Serositis (pleuritis, pericarditis, peritonitis) is always an AE of
  special interest (on-target, off-tumour for mesothelin).
- CRS and ICANS observations are graded by the ASTCT consensus calculator, only for an AE of
  that term, not before its onset, not after it resolved or was fatal; a higher grade raises
  the AE's worst grade.
- A regrade or correction is a new event with its reason, the previous and the new values,
  and must change something; the original report is never edited.
- An improvement to grade <= 2 applies to an AE of grade >= 3, once; a resolution ends the AE;
  a fatal AE neither improves nor resolves.
- A lot that turned out of specification after its infusion needs the investigator's notice
  and safety assessment (services/safety/late_oos.py).
- Stopping rule (``TrialConfig.stopping_rule``, default grade 5 and at least possibly related):
  an AE that reaches the rule's grade and attribution (on report, regrade or observation)
  pauses enrollment and dosing, once per AE, until a safety review covers it.
"""

from __future__ import annotations

from events.registry import EventPayload
from events.safety import (
    CTCAE_VERSION,
    STOPPING_RULE_GRADE5_RELATED,
    AdverseEventImproved,
    AdverseEventRegraded,
    AdverseEventReported,
    Assessment,
    CrsFindings,
    CrsGraded,
    EnrollmentPaused,
    IcansFindings,
    IcansGraded,
)
from services.decider import Decider, NewEvent
from services.errors import NotFound, RuleViolated
from services.safety import adjudication, expedited
from services.safety.checks import (
    STOPPING_RULE_STREAM,
    ae_stream,
    known_ae,
    not_before_onset,
    not_in_future,
)
from services.safety.commands import (
    AdjudicateDlt,
    Command,
    DetermineExpeditedReport,
    GradeCrs,
    GradeIcans,
    RecordAeResolution,
    RecordDltEvaluation,
    RecordLateOosFollowUp,
    RecordSafetyReview,
    RegradeAdverseEvent,
    ReportAdverseEvent,
    SubmitExpeditedReport,
)
from services.safety.dlt import at_least
from services.safety.evaluation import close_evaluation
from services.safety.grading import grade_crs, grade_icans
from services.safety.late_oos import record_follow_up
from services.safety.state import AdverseEvent, SafetyState, evolve, initial_state, is_serositis
from trial.config import StoppingRule, TrialConfig


def make_decider(trial: TrialConfig) -> Decider[SafetyState]:
    def decide(command: Command, state: SafetyState) -> list[NewEvent]:
        match command:
            case ReportAdverseEvent():
                return _report(command, state, trial.stopping_rule)
            case GradeCrs() | GradeIcans():
                return _grade(command, state, trial.stopping_rule)
            case RegradeAdverseEvent():
                return _regrade(command, state, trial.stopping_rule)
            case RecordAeResolution():
                return _improve(command, state)
            case AdjudicateDlt():
                return adjudication.adjudicate(command, state, trial.dlt, trial.zone())
            case RecordSafetyReview():
                return adjudication.review(command, state)
            case DetermineExpeditedReport():
                return expedited.determine(command, state, trial.reporting, trial.zone())
            case SubmitExpeditedReport():
                return expedited.submit(command, state, trial.reporting, trial.zone())
            case RecordDltEvaluation():
                return close_evaluation(command, state, trial.dlt, trial.zone())
            case RecordLateOosFollowUp():
                return record_follow_up(command, state)
        raise TypeError(f"safety does not handle {type(command).__name__}")

    return Decider(initial_state, decide, evolve)


def death_means_grade_5(ae_id: str, grade: int, criteria: tuple[str, ...]) -> None:
    """CTCAE v5: grade 5 is death related to the AE, so it and the "death" seriousness
    criterion (21 CFR 312.32(a)) go together."""
    if (grade == 5) != ("death" in criteria):
        raise RuleViolated(
            "death-is-grade-5",
            f"{ae_id}: grade {grade} with seriousness criteria {list(criteria)}; grade 5 and "
            "the 'death' criterion go together",
            ae_id=ae_id,
            grade=grade,
            serious_criteria=list(criteria),
        )


def stopping_rule_name(rule: StoppingRule) -> str:
    """The name the pause records: ``grade5-related`` for the default rule."""
    if rule.min_grade == 5:
        return STOPPING_RULE_GRADE5_RELATED
    return f"grade{rule.min_grade}-or-higher-related"


def with_stopping_rule(
    state: SafetyState, ae_id: str, new: NewEvent, rule: StoppingRule
) -> list[NewEvent]:
    """``new``, followed by ``EnrollmentPaused`` when it makes the AE reach the stopping rule's
    grade and attribution for the first time (DOMAIN.md section 3, stopping rules;
    ``TrialConfig.stopping_rule``)."""
    ae = evolve(state, new.payload).adverse_events[ae_id]
    fires = ae.grade >= rule.min_grade and at_least(ae.attribution, rule.min_attribution)
    if not fires or ae.paused_enrollment:
        return [new]
    pause = EnrollmentPaused(ae_id=ae_id, subject_id=ae.subject_id, rule=stopping_rule_name(rule))
    return [new, NewEvent(STOPPING_RULE_STREAM, pause, new.occurred_at)]


# ---------------------------------------------------------------- report


def _report(cmd: ReportAdverseEvent, state: SafetyState, stopping: StoppingRule) -> list[NewEvent]:
    if cmd.subject_id not in state.subjects:
        raise NotFound(
            "subject-must-be-registered",
            f"subject {cmd.subject_id} is not registered in the trial",
            subject_id=cmd.subject_id,
        )
    if cmd.ae_id in state.adverse_events:
        raise RuleViolated(
            "ae-reported-once",
            f"adverse event {cmd.ae_id} is already reported; correct it with a regrade",
            ae_id=cmd.ae_id,
        )
    not_in_future("onset_at", cmd.onset_at, cmd.occurred_at)
    not_in_future("sponsor_received_at", cmd.sponsor_received_at, cmd.occurred_at)
    not_before_onset("sponsor_received_at", cmd.sponsor_received_at, cmd)
    death_means_grade_5(cmd.ae_id, cmd.grade, cmd.serious_criteria)
    special = cmd.special_interest or is_serositis(cmd.term)
    payload = AdverseEventReported(
        ae_id=cmd.ae_id,
        subject_id=cmd.subject_id,
        term=cmd.term,
        grade=cmd.grade,
        onset_at=cmd.onset_at,
        serious_criteria=cmd.serious_criteria,
        attribution=cmd.attribution,
        expected=cmd.expected,
        sponsor_received_at=cmd.sponsor_received_at,
        special_interest="serositis" if special else None,
        haematological=cmd.haematological,
        conditioning_lab_effect=cmd.conditioning_lab_effect,
        ctcae_version=CTCAE_VERSION,
    )
    return with_stopping_rule(
        state, cmd.ae_id, NewEvent(ae_stream(cmd.ae_id), payload, cmd.occurred_at), stopping
    )


# ---------------------------------------------------------------- CRS / ICANS observations


def _grade(
    cmd: GradeCrs | GradeIcans, state: SafetyState, stopping: StoppingRule
) -> list[NewEvent]:
    ae = known_ae(state, cmd.ae_id)
    wanted, scale = ("crs", "CRS") if isinstance(cmd, GradeCrs) else ("icans", "ICANS")
    if ae.syndrome != wanted:
        raise RuleViolated(
            f"{wanted}-grade-needs-a-{wanted}-event",
            f"{cmd.ae_id} is '{ae.term}', not {scale}: an ASTCT {scale} grade does not apply",
            ae_id=cmd.ae_id,
            term=ae.term,
        )
    _still_open(ae, "graded")
    not_before_onset("observed_at", cmd.occurred_at, ae)
    payload: EventPayload
    if isinstance(cmd, GradeCrs):
        grade = grade_crs(cmd.observation)
        payload = CrsGraded(
            ae_id=ae.ae_id,
            subject_id=ae.subject_id,
            observed_at=cmd.occurred_at,
            observation=CrsFindings(**cmd.observation.model_dump()),
            grade=grade.grade,
            determined_by=grade.determined_by,
        )
    else:
        grade = grade_icans(cmd.observation)
        payload = IcansGraded(
            ae_id=ae.ae_id,
            subject_id=ae.subject_id,
            observed_at=cmd.occurred_at,
            observation=IcansFindings(**cmd.observation.model_dump()),
            grade=grade.grade,
            determined_by=grade.determined_by,
        )
    return with_stopping_rule(
        state, ae.ae_id, NewEvent(ae_stream(ae.ae_id), payload, cmd.occurred_at), stopping
    )


def _still_open(ae: AdverseEvent, doing: str) -> None:
    if ae.resolved_at is not None:
        raise RuleViolated(
            "ae-resolved",
            f"{ae.ae_id} resolved on {ae.resolved_at.isoformat()}; it cannot be {doing} "
            "(a recurrence is a new AE)",
            ae_id=ae.ae_id,
        )
    if ae.grade == 5:
        raise RuleViolated(
            "ae-fatal",
            f"{ae.ae_id} is grade 5 (fatal); it cannot be {doing}",
            ae_id=ae.ae_id,
        )


# ---------------------------------------------------------------- regrade / correction


def _regrade(
    cmd: RegradeAdverseEvent, state: SafetyState, stopping: StoppingRule
) -> list[NewEvent]:
    ae = known_ae(state, cmd.ae_id)
    previous = Assessment(
        grade=ae.grade,
        serious_criteria=ae.serious_criteria,
        attribution=ae.attribution,
        expected=ae.expected,
    )
    new = Assessment(
        grade=ae.grade if cmd.grade is None else cmd.grade,
        serious_criteria=(
            ae.serious_criteria if cmd.serious_criteria is None else cmd.serious_criteria
        ),
        attribution=cmd.attribution or ae.attribution,
        expected=ae.expected if cmd.expected is None else cmd.expected,
    )
    if _same(new, previous):
        raise RuleViolated(
            "regrade-must-change-something",
            f"{cmd.ae_id}: the regrade leaves grade {ae.grade}, seriousness "
            f"{list(ae.serious_criteria)}, attribution {ae.attribution} and expectedness "
            f"{ae.expected} as they are",
            ae_id=cmd.ae_id,
        )
    death_means_grade_5(cmd.ae_id, new.grade, new.serious_criteria)
    effective_at = cmd.effective_at or ae.onset_at
    not_before_onset("effective_at", effective_at, ae)
    not_in_future("effective_at", effective_at, cmd.occurred_at)
    payload = AdverseEventRegraded(
        ae_id=ae.ae_id,
        subject_id=ae.subject_id,
        effective_at=effective_at,
        previous=previous,
        new=new,
    )
    return with_stopping_rule(
        state, ae.ae_id, NewEvent(ae_stream(ae.ae_id), payload, cmd.occurred_at), stopping
    )


def _same(a: Assessment, b: Assessment) -> bool:
    return (
        a.grade == b.grade
        and set(a.serious_criteria) == set(b.serious_criteria)
        and a.attribution == b.attribution
        and a.expected == b.expected
    )


# ---------------------------------------------------------------- improvement / resolution


def _improve(cmd: RecordAeResolution, state: SafetyState) -> list[NewEvent]:
    ae = known_ae(state, cmd.ae_id)
    _still_open(ae, "recorded as improved or resolved")
    improved_at = cmd.improved_at or cmd.occurred_at
    if cmd.outcome == "grade-2-or-less":
        if ae.grade < 3:
            raise RuleViolated(
                "improvement-needs-grade-3-or-more",
                f"{ae.ae_id} is grade {ae.grade}: it is already grade <= 2",
                ae_id=ae.ae_id,
                grade=ae.grade,
            )
        if ae.improved_at is not None:
            raise RuleViolated(
                "ae-improved-once",
                f"{ae.ae_id} already improved to grade <= 2 on {ae.improved_at.isoformat()}",
                ae_id=ae.ae_id,
            )
    not_before_onset("improved_at", improved_at, ae)
    if ae.severe_since is not None and improved_at < ae.severe_since:
        raise RuleViolated(
            "improved-at-after-severe",
            f"{ae.ae_id}: improvement at {improved_at.isoformat()} is before it became grade "
            f">= 3 at {ae.severe_since.isoformat()}",
            ae_id=ae.ae_id,
        )
    not_in_future("improved_at", improved_at, cmd.occurred_at)
    payload = AdverseEventImproved(
        ae_id=ae.ae_id, subject_id=ae.subject_id, outcome=cmd.outcome, improved_at=improved_at
    )
    return [NewEvent(ae_stream(ae.ae_id), payload, cmd.occurred_at)]
