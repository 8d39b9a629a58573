"""The trial's configuration: every number that belongs to one trial, validated at start-up.

Values come from the trial's public record where it has them (see ``shared`` domain notes and
the shipped ``trials/nct06623396.json``); where the record is silent the file carries the
project's documented default. A bad file fails with the key that is wrong.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

# The attribution scale is the events' vocabulary; the trial file names its thresholds on it.
from events.safety import Attribution
from events.topics import partition_of

SHIPPED = Path(__file__).parent / "trials" / "nct06623396.json"

Route = Literal["intraperitoneal", "intravenous"]
Percent = Annotated[float, Field(ge=0, le=100)]


class Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DoseLevel(Strict):
    level: str = Field(pattern=r"^DL-?[0-9]$", description="e.g. DL-1 (fallback), DL1..DL4")
    cells_per_kg: float = Field(gt=0, description="CAR T cells per kg of body weight")
    route: Route
    fallback: bool = False


class EscalationDesign(Strict):
    design: Literal["3+3", "boin"]
    target_dlt_rate: float | None = Field(default=None, gt=0, lt=1)
    cohort_size: int = Field(default=3, ge=1, le=6)
    min_patients: int = Field(ge=1)
    max_patients: int = Field(ge=1)
    start_level: str
    accelerated_titration_levels: tuple[str, ...] = ()
    """Levels enrolled one patient at a time until the first grade >= 2 toxicity."""
    accelerated_titration_stop_grade: int = Field(default=2, ge=1, le=5)
    """The CTCAE grade (at least as related as ``dlt.min_attribution``, onset in the DLT window)
    that ends accelerated titration for the rest of the trial, at its first occurrence (the
    project's rule, DOMAIN.md section 4). Default 2, the "moderate toxicity" of Simon R et al.,
    Accelerated titration designs for phase I clinical trials in oncology, J Natl Cancer Inst
    1997;89:1138-1147, whose designs end single-patient cohorts at the first DLT or the second
    patient with grade 2 toxicity; stopping at the first is the more cautious reading."""

    @model_validator(mode="after")
    def _boin_needs_a_target(self) -> Self:
        if self.design == "boin" and self.target_dlt_rate is None:
            raise ValueError("target_dlt_rate is required when design is 'boin'")
        if self.min_patients > self.max_patients:
            raise ValueError("min_patients must not exceed max_patients")
        return self


class DltRule(Strict):
    window_days: int = Field(ge=1, le=365)
    min_attribution: Attribution
    grade5: bool = True
    crs_or_icans_min_grade: int = Field(ge=1, le=5)
    crs_or_icans_grade3_resolution_hours: int = Field(ge=0)
    other_nonhematologic_min_grade: int = Field(ge=1, le=5)
    other_resolution_days: int = Field(ge=0)


class Eligibility(Strict):
    msln_ihc_min_percent: Percent
    prior_lines_min: int = Field(ge=0)
    age_min: int = Field(ge=0)
    ecog_max: int = Field(ge=0, le=4)
    requires_peritoneal_carcinomatosis: bool
    requires_measurable_or_evaluable_lesion: bool
    labs: dict[str, tuple[float | None, float | None]] = Field(
        default_factory=dict, description="lab name -> (minimum, maximum), either may be null"
    )


class ReleaseSpecification(Strict):
    viability_min_percent: Percent
    car_expression_min_percent: Percent
    vector_copy_number_max: float = Field(gt=0)
    endotoxin_max_eu_per_ml: float = Field(gt=0)
    cell_dose_tolerance_percent: Percent


class RenalReduction(Strict):
    crcl_min_ml_per_min: float = Field(ge=0)
    crcl_below_ml_per_min: float = Field(gt=0)
    reduce_percent: Percent

    @model_validator(mode="after")
    def _band_is_ordered(self) -> RenalReduction:
        if self.crcl_min_ml_per_min >= self.crcl_below_ml_per_min:
            raise ValueError("a renal band's crcl_min_ml_per_min must be below crcl_below")
        return self


class Conditioning(Strict):
    fludarabine_mg_per_m2_per_day: float = Field(gt=0)
    cyclophosphamide_mg_per_m2_per_day: float = Field(gt=0)
    days: int = Field(ge=1)
    dose_tolerance_percent: Percent
    """How far a day's recorded dose may differ from mg/m^2 x body-surface area."""
    infusion_min_days_after_last_day: int = Field(default=2, ge=0, le=60)
    infusion_max_days_after_last_day: int = Field(default=14, ge=0, le=60)
    """The infusion is given this many calendar days (in the trial's time zone) after the last
    conditioning day, bounds included. Project default 2 to 14: the tisagenlecleucel
    (Kymriah) US prescribing information, section 2, infuses 2 to 14 days after the completion
    of lymphodepleting chemotherapy."""
    fludarabine_renal_reductions: tuple[RenalReduction, ...] = (
        RenalReduction(crcl_min_ml_per_min=30, crcl_below_ml_per_min=70, reduce_percent=20),
    )
    """Fludarabine reduced by creatinine clearance (fludarabine is cleared by the kidneys):
    when the conditioning day's CrCl is in a band, the expected dose is reduced by its percent.
    Project default: CrCl 30 to below 70 mL/min, 20% less, as the fludarabine phosphate US
    prescribing information advises for renal impairment and many CAR T protocols do."""
    fludarabine_min_crcl_ml_per_min: float = Field(default=30, ge=0)
    """Below this creatinine clearance no fludarabine is given (project default 30 mL/min: the
    fludarabine phosphate US prescribing information advises against it below 30)."""

    @model_validator(mode="after")
    def _window_is_ordered(self) -> Conditioning:
        if self.infusion_min_days_after_last_day > self.infusion_max_days_after_last_day:
            raise ValueError(
                "conditioning.infusion_min_days_after_last_day must not exceed "
                "infusion_max_days_after_last_day"
            )
        bands = sorted(self.fludarabine_renal_reductions, key=lambda b: b.crcl_min_ml_per_min)
        for i in range(1, len(bands)):
            if bands[i].crcl_min_ml_per_min < bands[i - 1].crcl_below_ml_per_min:
                raise ValueError("conditioning.fludarabine_renal_reductions: bands overlap")
        return self


class Infusion(Strict):
    """The infusion's numbers besides its dose tolerance (``infused_dose_tolerance_percent``)."""

    thaw_to_infusion_max_minutes: int = Field(default=120, ge=1, le=24 * 60)
    """The infusion starts at most this long after the product was thawed. Project default
    2 hours: the lisocabtagene maraleucel (Breyanzi) US prescribing information infuses within
    2 hours of thawing; others differ (axicabtagene ciloleucel within 3 hours, tisagenlecleucel
    within 30 minutes), so it is a trial-file setting."""
    weight_change_tolerance_percent: Percent = 10
    """How far the weight at infusion may differ from the weight at collection, on which the
    lot's target was computed, without a documented reason. Project default 10%: a common
    threshold for recalculating weight-based doses."""
    released_cells_tolerance_percent: Percent = 10
    """How far ``cells_infused`` may exceed the lot's released cell count: no more cells can be
    given than were released, up to the imprecision of two cell counts. Project default 10%."""


class Reporting(Strict):
    fatal_or_life_threatening_days: int = Field(ge=1)
    serious_unexpected_days: int = Field(ge=1)
    complete_report_after_initial_days: int = Field(ge=1)
    follow_up_days: int = Field(ge=1)
    suspected_from: Attribution = "possible"
    """The lowest attribution of a suspected adverse reaction ("a reasonable possibility" that
    the product caused it, 21 CFR 312.32(a)); protocols draw the line differently. Default:
    possible (DOMAIN.md section 3)."""


class StoppingRule(Strict):
    """The stopping rule that pauses enrollment and dosing until a safety review (DOMAIN.md
    section 3, the project's default: any grade 5 event at least possibly related)."""

    min_grade: int = Field(default=5, ge=1, le=5)
    min_attribution: Attribution = "possible"


InboxKind = Annotated[str, Field(pattern=r"^[a-z][a-z-]{0,47}$")]
"""A kind of inbox item (projections/inbox.py), e.g. ``expedited-report``."""


class Alerts(Strict):
    """When the worker alerts the roles who must act on an inbox item that has a deadline
    (issue 15, decision 52): once the item is due within its lead time (stage
    ``approaching``), and again once it is overdue. The trial's operations policy, not a
    regulation: project default 24 hours for every kind. The lead is counted back from the
    moment the deadline passes, and a calendar-day deadline passes when its day ends in the
    sponsor's zone, so with 24 hours a 7-day report (21 CFR 312.32(c)(2)) is announced at
    00:00 of its last day (the due day itself), not the day before; 48 hours announces it at
    the start of the day before. ``lead_hours_by_kind`` sets a kind's own. Where alerts go
    (the channels) is deployment configuration, not the trial's."""

    lead_hours: float = Field(default=24, gt=0, le=24 * 30)
    lead_hours_by_kind: dict[InboxKind, Annotated[float, Field(gt=0, le=24 * 30)]] = Field(
        default_factory=dict
    )

    def lead(self, kind: str) -> timedelta:
        return timedelta(hours=self.lead_hours_by_kind.get(kind, self.lead_hours))


class Records(Strict):
    """Which business times a command may carry (checked at the HTTP edge,
    ``services.validation``): none before the trial's start, none later than the server's clock
    plus ``max_future_skew_minutes`` (the sites' clocks are not the server's)."""

    earliest_business_time: AwareDatetime
    max_future_skew_minutes: int = Field(ge=0, le=24 * 60)


TherapyClass = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,47}$")]
"""A class of prior therapy as the trial file names it, e.g. ``checkpoint-inhibitor``."""


class Washout(Strict):
    """Calendar days (in the trial's ``time_zone``) that must have passed since a prior therapy's
    last dose, before the leukapheresis and before the infusion (issue 11 item 5; see
    ``services.enrollment.washout``). 0: no washout before that milestone."""

    before_leukapheresis_days: int = Field(ge=0, le=365)
    before_infusion_days: int = Field(ge=0, le=365)


DEFAULT_WASHOUT: dict[str, Washout] = {
    "checkpoint-inhibitor": Washout(before_leukapheresis_days=28, before_infusion_days=28),
    "chemotherapy": Washout(before_leukapheresis_days=14, before_infusion_days=14),
    "investigational-agent": Washout(before_leukapheresis_days=28, before_infusion_days=28),
    "systemic-steroid": Washout(before_leukapheresis_days=7, before_infusion_days=3),
}
"""The project's defaults when a trial file names no ``washout`` (the shipped file names them,
and says in ``defaults_chosen`` where each number comes from). ``systemic-steroid`` means doses
above physiological replacement (more than 10 mg/day prednisone or equivalent)."""


class TrialConfig(Strict):
    trial_id: str = Field(min_length=1)
    title: str
    product: str
    time_zone: str = "America/New_York"
    """The sponsor's IANA time zone. Regulatory clocks and the protocol's day counts (expedited
    reports, the DLT window, conditioning days) count calendar days in it, so the same instant
    gives the same due date whatever UTC offset its timestamp was written with."""
    dose_levels: tuple[DoseLevel, ...] = Field(min_length=1)
    escalation: EscalationDesign
    dlt: DltRule
    eligibility: Eligibility
    release: ReleaseSpecification
    conditioning: Conditioning
    infused_dose_tolerance_percent: Percent
    infusion: Infusion = Field(default_factory=Infusion)
    reporting: Reporting
    stopping_rule: StoppingRule = StoppingRule()
    records: Records
    alerts: Alerts = Field(default_factory=Alerts)
    washout: dict[TherapyClass, Washout] = Field(
        default_factory=lambda: dict(DEFAULT_WASHOUT),
        description="prior-therapy class -> washout before leukapheresis and before infusion",
    )
    permissions: dict[str, tuple[str, ...]] = Field(
        description="command name -> roles allowed to issue it"
    )
    defaults_chosen: dict[str, str] = Field(
        default_factory=dict,
        description="key -> why the value is the project's default, not the trial's record",
    )

    @model_validator(mode="after")
    def _time_zone_is_known(self) -> Self:
        try:
            ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"time_zone {self.time_zone!r} is not an IANA time zone") from None
        return self

    def zone(self) -> ZoneInfo:
        """The sponsor's time zone, in which the trial's calendar days are counted."""
        return ZoneInfo(self.time_zone)

    @model_validator(mode="after")
    def _levels_are_consistent(self) -> Self:
        names = [d.level for d in self.dose_levels]
        if len(set(names)) != len(names):
            raise ValueError(f"dose_levels: level names repeat: {names}")
        if self.escalation.start_level not in names:
            raise ValueError(
                f"escalation.start_level {self.escalation.start_level!r} is not one of {names}"
            )
        unknown = [lvl for lvl in self.escalation.accelerated_titration_levels if lvl not in names]
        if unknown:
            raise ValueError(f"escalation.accelerated_titration_levels: unknown {unknown}")
        return self

    def dose_level(self, level: str) -> DoseLevel:
        for dose in self.dose_levels:
            if dose.level == level:
                return dose
        raise KeyError(f"no dose level {level!r}; levels: {[d.level for d in self.dose_levels]}")

    def ordered_levels(self) -> list[DoseLevel]:
        """Lowest dose first: the fallback level, then the escalation levels."""
        return sorted(self.dose_levels, key=lambda d: d.cells_per_kg)

    def roles_for(self, command: str) -> frozenset[str]:
        return frozenset(self.permissions.get(command, ()))


class TrialConfigError(ValueError):
    """The trial file is unreadable or breaks a rule; the message names the key."""


def load_trial(path: Path | None = None) -> TrialConfig:
    path = path or Path(os.environ.get("TRIALOPS_TRIAL_FILE", SHIPPED))
    try:
        data = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise TrialConfigError(f"trial file {path}: {exc.strerror}") from None
    except orjson.JSONDecodeError as exc:
        raise TrialConfigError(f"trial file {path} is not JSON: {exc}") from None
    try:
        return TrialConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"
            for err in exc.errors(include_url=False)
        )
        raise TrialConfigError(f"trial file {path}: {problems}") from None


TRIALS_FOLDER_ENV = "TRIALOPS_TRIALS"
"""A folder of trial files: the trials one deployment runs side by side (decision 60)."""


def load_trials(folder: Path | None = None) -> dict[str, TrialConfig]:
    """The deployment's trials by trial id: every ``*.json`` file of ``folder`` (default: the
    folder ``TRIALOPS_TRIALS`` names), each validated as ``load_trial`` does; without a folder,
    the one trial ``load_trial`` reads. Two files of one trial id, or an empty folder, are
    refused with the files named."""
    named = folder or (Path(os.environ[TRIALS_FOLDER_ENV])
                       if os.environ.get(TRIALS_FOLDER_ENV) else None)
    if named is None:
        trial = load_trial()
        return {trial.trial_id: trial}
    if not named.is_dir():
        raise TrialConfigError(f"{TRIALS_FOLDER_ENV}: {named} is not a folder of trial files")
    trials: dict[str, TrialConfig] = {}
    files: dict[str, Path] = {}
    for path in sorted(named.glob("*.json")):
        trial = load_trial(path)
        if trial.trial_id in trials:
            raise TrialConfigError(f"trial files {files[trial.trial_id]} and {path} are both "
                                   f"trial {trial.trial_id}: one file per trial")
        trials[trial.trial_id] = trial
        files[trial.trial_id] = path
    if not trials:
        raise TrialConfigError(f"{TRIALS_FOLDER_ENV}: {named} holds no trial file (*.json)")
    return dict(sorted(trials.items()))


def trial_partitions(trial_ids: Iterable[str], partitions: int) -> dict[str, int]:
    """Each trial's partition of the context topics (``events.topics.partition_of``). Two
    trials on one partition are refused, naming them: a partition has one writer, which holds
    one trial's state (decision 60); more partitions (``TRIALOPS_PARTITIONS`` when the topics
    are created) or another trial id parts them."""
    placed: dict[str, int] = {}
    for trial_id in sorted(trial_ids):
        partition = partition_of(trial_id, partitions)
        shared = [other for other, p in placed.items() if p == partition]
        if shared:
            raise TrialConfigError(
                f"trials {shared[0]} and {trial_id} both fall on partition {partition} of "
                f"{partitions}: one trial per partition; create the topics with more "
                "partitions (TRIALOPS_PARTITIONS)"
            )
        placed[trial_id] = partition
    return placed
