"""ASTCT consensus grading of CRS and ICANS: pure functions of one observation.

Source: Lee DW et al., "ASTCT Consensus Grading for Cytokine Release Syndrome and Neurologic
Toxicity Associated with Immune Effector Cells", Biol Blood Marrow Transplant 2019;25:625-638
(DOMAIN.md section 3). No I/O, no clock: the adverse-event service calls these and records the
grade with the observation it came from.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Hypotension = Literal["none", "no-vasopressor", "one-vasopressor", "multiple-vasopressors"]
Hypoxia = Literal["none", "low-flow", "high-flow", "positive-pressure"]
Consciousness = Literal["normal", "spontaneous", "voice", "touch", "unrousable"]
Seizure = Literal["none", "resolving", "prolonged"]
Motor = Literal["none", "deep-focal-weakness"]
Icp = Literal["none", "focal-edema", "diffuse-edema"]

FEVER_THRESHOLD_C = 38.0
"""ASTCT: fever is a temperature >= 38.0 C not attributable to any other cause."""

DEATH_GRADE = 5


class CrsObservation(BaseModel):
    """What the bedside saw when CRS was graded."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    temperature_c: float = Field(ge=25.0, le=45.0, description="Highest temperature, Celsius.")
    fever_masked: bool = Field(
        default=False,
        description="Antipyretic or anti-cytokine therapy (e.g. tocilizumab, steroids) was given "
        "after CRS began, so fever is no longer required to grade it.",
    )
    hypotension: Hypotension = Field(
        default="none",
        description="no-vasopressor; one-vasopressor (with or without vasopressin); "
        "multiple-vasopressors (vasopressin excluded).",
    )
    hypoxia: Hypoxia = Field(
        default="none",
        description="low-flow nasal cannula (<= 6 L/min) or blow-by; high-flow (> 6 L/min), "
        "facemask, non-rebreather or Venturi; positive-pressure (CPAP, BiPAP, intubation, "
        "mechanical ventilation).",
    )
    death: bool = Field(default=False, description="Death due to CRS.")


class IcansObservation(BaseModel):
    """The ICANS domains assessed in an adult (ICE score and neurological findings)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ice_score: int = Field(ge=0, le=10, description="Immune effector Cell Encephalopathy score.")
    consciousness: Consciousness = Field(
        default="normal",
        description="Wakes spontaneously, to voice, only to touch, or is unrousable (needs "
        "vigorous or repeated tactile stimuli; stupor or coma).",
    )
    seizure: Seizure = Field(
        default="none",
        description="resolving: any clinical seizure that resolves rapidly, or non-convulsive "
        "seizure on EEG resolving with intervention; prolonged: life-threatening seizure "
        "(> 5 min) or repeated seizures without return to baseline.",
    )
    motor: Motor = Field(
        default="none", description="Deep focal motor weakness (hemiparesis, paraparesis)."
    )
    icp: Icp = Field(
        default="none",
        description="focal-edema on imaging; diffuse-edema, decerebrate/decorticate posturing, "
        "cranial nerve VI palsy, papilledema or Cushing's triad.",
    )
    death: bool = Field(default=False, description="Death due to ICANS.")


class Grade(BaseModel):
    """A grade on one ASTCT scale and the domain(s) that set it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    scale: Literal["ASTCT-CRS", "ASTCT-ICANS"]
    grade: int = Field(ge=0, le=5, description="0 = no CRS / no ICANS.")
    determined_by: tuple[str, ...] = Field(
        description="The domain(s) whose severity equals the grade, in the scale's order."
    )


_HYPOTENSION_GRADE: dict[str, int] = {
    "none": 1,
    "no-vasopressor": 2,
    "one-vasopressor": 3,
    "multiple-vasopressors": 4,
}
_HYPOXIA_GRADE: dict[str, int] = {
    "none": 1,
    "low-flow": 2,
    "high-flow": 3,
    "positive-pressure": 4,
}
_CONSCIOUSNESS_GRADE: dict[str, int] = {
    "normal": 0,
    "spontaneous": 1,
    "voice": 2,
    "touch": 3,
    "unrousable": 4,
}
_SEIZURE_GRADE: dict[str, int] = {"none": 0, "resolving": 3, "prolonged": 4}
_MOTOR_GRADE: dict[str, int] = {"none": 0, "deep-focal-weakness": 4}
_ICP_GRADE: dict[str, int] = {"none": 0, "focal-edema": 3, "diffuse-edema": 4}


def has_fever(observation: CrsObservation) -> bool:
    """Fever >= 38.0 C, or fever masked by antipyretic/anti-cytokine therapy after CRS began."""
    return observation.fever_masked or observation.temperature_c >= FEVER_THRESHOLD_C


def grade_crs(observation: CrsObservation) -> Grade:
    """Grade cytokine release syndrome by the ASTCT consensus (Lee et al., BBMT 2019).

    Fever (>= 38.0 C) is required for CRS: without fever, and unless the fever was masked by
    antipyretic or anti-cytokine therapy given after CRS began, there is no CRS (grade 0)
    whatever the hypotension or hypoxia, which are then due to another cause. With fever:
    grade 1 without hypotension or hypoxia; otherwise the more severe of
    hypotension (no vasopressor 2, one vasopressor with or without vasopressin 3, multiple
    vasopressors excluding vasopressin 4) and hypoxia (low-flow <= 6 L/min or blow-by 2,
    high-flow > 6 L/min / facemask / non-rebreather / Venturi 3, positive pressure 4).
    Grade 5 is death due to CRS; it is graded 5 even when the last temperature recorded is
    below 38.0 C, since the attribution of the death to CRS says CRS was present (a fatal
    event is never graded down to "no CRS").
    """
    if observation.death:
        return Grade(scale="ASTCT-CRS", grade=DEATH_GRADE, determined_by=("death",))
    if not has_fever(observation):
        return Grade(scale="ASTCT-CRS", grade=0, determined_by=("fever",))
    domains = {
        "hypotension": _HYPOTENSION_GRADE[observation.hypotension],
        "hypoxia": _HYPOXIA_GRADE[observation.hypoxia],
    }
    grade = max(domains.values())
    if grade == 1:
        return Grade(scale="ASTCT-CRS", grade=1, determined_by=("fever",))
    return Grade(scale="ASTCT-CRS", grade=grade, determined_by=_worst(domains, grade))


def ice_score_grade(ice_score: int) -> int:
    """ICE 10 -> 0, 7-9 -> 1, 3-6 -> 2, 0-2 -> 3 (an ICE of 0 because the patient cannot be
    roused is grade 4, carried by the consciousness domain: unrousable)."""
    if ice_score >= 10:
        return 0
    if ice_score >= 7:
        return 1
    if ice_score >= 3:
        return 2
    return 3


def grade_icans(observation: IcansObservation) -> Grade:
    """Grade immune effector cell-associated neurotoxicity in adults by the ASTCT consensus
    (Lee et al., BBMT 2019): the grade is that of the most severe domain.

    ICE score 7-9 -> 1, 3-6 -> 2, 0-2 -> 3; depressed consciousness: wakes spontaneously 1,
    to voice 2, only to touch 3, unrousable 4 (so an ICE of 0 because the patient cannot be
    roused grades 4); seizure resolving rapidly 3, prolonged or repeated 4; deep focal motor
    weakness 4; raised intracranial pressure: focal oedema 3, diffuse oedema 4. A patient with
    an ICE score of 10 and no other finding has no ICANS (grade 0). Death due to ICANS is 5.
    """
    if observation.death:
        return Grade(scale="ASTCT-ICANS", grade=DEATH_GRADE, determined_by=("death",))
    domains = {
        "ice_score": ice_score_grade(observation.ice_score),
        "consciousness": _CONSCIOUSNESS_GRADE[observation.consciousness],
        "seizure": _SEIZURE_GRADE[observation.seizure],
        "motor": _MOTOR_GRADE[observation.motor],
        "icp": _ICP_GRADE[observation.icp],
    }
    grade = max(domains.values())
    determined_by = _worst(domains, grade) if grade > 0 else ()
    return Grade(scale="ASTCT-ICANS", grade=grade, determined_by=determined_by)


def _worst(domains: dict[str, int], grade: int) -> tuple[str, ...]:
    return tuple(name for name, severity in domains.items() if severity == grade)
