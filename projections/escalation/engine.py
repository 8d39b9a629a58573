"""The recommendation for the next cohort, by the trial's configured design, with the data it
was made from. The software recommends; the investigators' dose-escalation review decides."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

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

    def as_dict(self) -> dict:
        data = asdict(self)
        data["eliminated_levels"] = list(self.eliminated_levels)
        data["evidence"] = list(self.evidence)
        return data


def recommend(
    design: EscalationDesign,
    levels: Sequence[str],
    outcomes: Mapping[str, LevelOutcomes],
    current_level: str,
) -> Recommendation:
    """``levels`` lowest dose first; ``outcomes`` per level (missing = nobody evaluable yet)."""
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
    common = {
        "design": design.design,
        "current_level": current_level,
        "counts": counts,
        "evidence": evidence,
        "target": design.target_dlt_rate,
    }
    now = per_level[current]
    if (
        current_level in design.accelerated_titration_levels
        and now.evaluable >= 1
        and now.dlts == 0
        and not now.grade2_toxicity_seen
        and current + 1 < len(levels)
    ):
        return Recommendation(
            decision="escalate",
            next_level=levels[current + 1],
            rule="accelerated titration: one patient without DLT or grade >= 2 toxicity",
            **common,
        )
    if (
        current_level in design.accelerated_titration_levels
        and now.grade2_toxicity_seen
        and now.evaluable < design.cohort_size
    ):
        return Recommendation(
            decision="stay",
            next_level=current_level,
            rule="accelerated titration ends at a grade >= 2 toxicity: continue at this dose "
            f"with cohorts of {design.cohort_size}",
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


def _boin(design, levels, per_level, current, common) -> Recommendation:
    target = design.target_dlt_rate
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
