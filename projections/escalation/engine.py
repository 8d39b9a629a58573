"""The recommendation for the next cohort, by the trial's configured design, with the data it
was made from. The software recommends; the investigators' dose-escalation review decides."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from projections.escalation import boin, three_plus_three
from trial.config import EscalationDesign


@dataclass(frozen=True)
class LevelOutcomes:
    """DLT-evaluable patients and DLTs at one dose level, with the events behind them."""

    evaluable: int = 0
    dlts: int = 0
    evidence: tuple[str, ...] = ()
    grade2_toxicity_seen: bool = False


@dataclass(frozen=True)
class Recommendation:
    design: str
    current_level: str
    decision: str  # escalate | stay | de-escalate | stop
    next_level: str | None
    rule: str
    eliminated_levels: tuple[str, ...] = ()
    mtd_level: str | None = None
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    evidence: tuple[str, ...] = ()
    target: float | None = None
    not_counted: tuple[str, ...] = ()
    """Patients evaluated who count at no dose level, each with the reason."""

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["eliminated_levels"] = list(self.eliminated_levels)
        data["evidence"] = list(self.evidence)
        data["not_counted"] = list(self.not_counted)
        return data


def target_rate(design: EscalationDesign) -> float | None:
    """The target DLT rate the design decides by: BOIN's phi (Liu & Yuan, JRSS-C 2015); None
    for 3+3, whose rules count DLTs out of 3 or 6 and aim at no rate (DOMAIN.md section 4),
    whatever rate the trial file keeps for a switch to BOIN."""
    return design.target_dlt_rate if design.design == "boin" else None


def recommend(
    design: EscalationDesign,
    levels: Sequence[str],
    outcomes: Mapping[str, LevelOutcomes],
    current_level: str,
    not_counted: Sequence[str] = (),
) -> Recommendation:
    """``levels`` lowest dose first; ``outcomes`` per level (missing = nobody evaluable yet);
    ``not_counted`` the patients evaluated who count at no level (shown, not counted).

    The design's recommendation never declares an MTD before ``design.min_patients`` patients
    are treated and DLT-evaluable (the trial's minimum sample, DOMAIN.md section 1: "a minimum
    of 4 and a maximum of 18 treated patients"): it continues at the dose it would have
    declared instead. A stop because even the lowest dose is too toxic is not held back: the
    minimum never puts more patients on a dose the design has found too toxic.
    """
    rec = _recommend(design, levels, outcomes, current_level, tuple(not_counted))
    counted = sum(o.evaluable for o in outcomes.values())
    if rec.decision == "stop" and rec.mtd_level is not None and counted < design.min_patients:
        return replace(
            rec,
            decision="stay",
            next_level=rec.mtd_level,
            mtd_level=None,
            rule=f"minimum of {design.min_patients} treated and evaluable patients not reached "
            f"({counted}): continue at {rec.mtd_level} instead of declaring it the MTD "
            f"(the design: {rec.rule})",
        )
    return rec


def _recommend(
    design: EscalationDesign,
    levels: Sequence[str],
    outcomes: Mapping[str, LevelOutcomes],
    current_level: str,
    not_counted: tuple[str, ...],
) -> Recommendation:
    if current_level not in levels:
        raise ValueError(f"current level {current_level!r} is not one of {list(levels)}")
    per_level = [outcomes.get(level, LevelOutcomes()) for level in levels]
    counts = {
        level: {"evaluable": o.evaluable, "dlts": o.dlts}
        for level, o in zip(levels, per_level, strict=True)
        if o.evaluable
    }
    evidence = tuple(e for o in per_level for e in o.evidence)
    current = levels.index(current_level)
    common: dict[str, Any] = {
        "design": design.design,
        "current_level": current_level,
        "counts": counts,
        "evidence": evidence,
        "target": target_rate(design),
        "not_counted": not_counted,
    }
    now = per_level[current]
    # Accelerated titration ends for the rest of the trial at the first qualifying toxicity,
    # at whatever level it is seen (Simon et al., J Natl Cancer Inst 1997;89:1138-1147).
    grade = design.accelerated_titration_stop_grade
    ended_at = [lvl for lvl, o in zip(levels, per_level, strict=True) if o.grade2_toxicity_seen]
    if (
        current_level in design.accelerated_titration_levels
        and not ended_at
        and now.evaluable >= 1
        and now.dlts == 0
        and current + 1 < len(levels)
    ):
        return Recommendation(
            decision="escalate",
            next_level=levels[current + 1],
            rule=f"accelerated titration: one patient without DLT or grade >= {grade} toxicity",
            **common,
        )
    if (
        current_level in design.accelerated_titration_levels
        and ended_at
        and now.evaluable < design.cohort_size
    ):
        return Recommendation(
            decision="stay",
            next_level=current_level,
            rule=f"accelerated titration ended at a grade >= {grade} toxicity (at "
            f"{', '.join(ended_at)}): continue at this dose with cohorts of {design.cohort_size}",
            **common,
        )
    if design.design == "3+3":
        pairs = [(o.evaluable, o.dlts) for o in per_level]
        step = three_plus_three.step(pairs, current)
        return Recommendation(
            decision=step.decision,
            next_level=None if step.next_index is None else levels[step.next_index],
            rule=f"3+3: {step.rule}",
            mtd_level=None if step.mtd_index is None else levels[step.mtd_index],
            **common,
        )
    return _boin(design, levels, per_level, current, common)


def _boin(
    design: EscalationDesign,
    levels: Sequence[str],
    per_level: Sequence[LevelOutcomes],
    current: int,
    common: dict[str, Any],
) -> Recommendation:
    target = design.target_dlt_rate
    assert target is not None  # EscalationDesign requires it for BOIN
    b = boin.boundaries(target)
    eliminated_from = boin.first_eliminated([(o.evaluable, o.dlts) for o in per_level], target)
    eliminated = tuple(levels[eliminated_from:]) if eliminated_from is not None else ()
    total = sum(o.evaluable for o in per_level)
    bounds = f"lambda_e={b.lambda_e:.3f}, lambda_d={b.lambda_d:.3f}"
    if eliminated_from == 0:
        return Recommendation(
            decision="stop",
            next_level=None,
            eliminated_levels=eliminated,
            rule="BOIN: the lowest dose is eliminated (Pr(p > target) > 0.95): no tolerable dose",
            **common,
        )
    if total >= design.max_patients:
        selection = boin.select_mtd([(o.evaluable, o.dlts) for o in per_level], target)
        shown = ", ".join(
            f"{level} {e:.3f}"
            for level, e in zip(levels, selection.estimates, strict=True)
            if e is not None
        )
        return Recommendation(
            decision="stop",
            next_level=None,
            eliminated_levels=eliminated,
            mtd_level=None if selection.index is None else levels[selection.index],
            rule=f"BOIN: maximum of {design.max_patients} patients reached; isotonic estimates "
            f"[{shown}], MTD closest to the target {target} (select.mtd, BOIN R package)",
            **common,
        )
    now = per_level[current]
    if eliminated_from is not None and current >= eliminated_from:
        lower = eliminated_from - 1
        return Recommendation(
            decision="de-escalate",
            next_level=levels[lower],
            eliminated_levels=eliminated,
            rule=f"BOIN: {levels[current]} eliminated ({now.dlts}/{now.evaluable} DLTs, "
            "Pr(p > target) > 0.95)",
            **common,
        )
    move = boin.decide(now.evaluable, now.dlts, b)
    rate = f"{now.dlts}/{now.evaluable}" if now.evaluable else "no evaluable patient"
    if move == "escalate":
        above = current + 1
        if above < len(levels) and (eliminated_from is None or above < eliminated_from):
            return Recommendation(
                decision="escalate",
                next_level=levels[above],
                eliminated_levels=eliminated,
                rule=f"BOIN: observed rate {rate} <= lambda_e ({bounds})",
                **common,
            )
        move = "stay"
        rate += " (no higher dose available)"
    if move == "de-escalate" and current > 0:
        return Recommendation(
            decision="de-escalate",
            next_level=levels[current - 1],
            eliminated_levels=eliminated,
            rule=f"BOIN: observed rate {rate} >= lambda_d ({bounds})",
            **common,
        )
    return Recommendation(
        decision="stay",
        next_level=levels[current],
        eliminated_levels=eliminated,
        rule=f"BOIN: observed rate {rate} between the boundaries ({bounds})",
        **common,
    )
