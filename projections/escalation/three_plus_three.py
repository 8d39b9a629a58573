"""The 3+3 design, pure functions.

Source: the traditional 3+3 rule as summarised in the project's domain notes (DOMAIN.md section
4; e.g. Le Tourneau C, Lee JJ, Siu LL. Dose escalation methods in phase I cancer clinical
trials. J Natl Cancer Inst 2009;101:708-720): 3 patients at a dose; 0/3 with DLT -> escalate;
1/3 -> 3 more at the same dose; 1/6 -> escalate; >= 2/3 or >= 2/6 -> the dose exceeds the MTD:
de-escalate, expanding the lower dose to 6 if it had 3. MTD = the highest dose with <= 1/6
DLTs among 6 patients.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

COHORT = 3


@dataclass(frozen=True)
class Step:
    decision: str  # escalate | stay | de-escalate | stop
    next_index: int | None
    rule: str
    mtd_index: int | None = None


def rules() -> dict[str, Any]:
    """The design's rules as data, for protocol writers (``trialops design table``)."""
    return {
        "design": "3+3",
        "cohort_size": COHORT,
        "rows": [
            {"n": 3, "dlt": "0", "decision": "escalate"},
            {"n": 3, "dlt": "1", "decision": "stay", "note": "treat 3 more at this dose"},
            {"n": 3, "dlt": ">=2", "decision": "de-escalate", "note": "dose exceeds the MTD"},
            {"n": 6, "dlt": "<=1", "decision": "escalate"},
            {"n": 6, "dlt": ">=2", "decision": "de-escalate", "note": "dose exceeds the MTD"},
        ],
        "mtd": "highest dose with at most 1 DLT among 6 patients",
        "notes": [
            "de-escalating to a dose with only 3 patients expands it to 6",
            "a dose that exceeded the MTD is never given again",
            "at the highest dose, 0/3 expands to 6; <= 1/6 there ends the trial with that dose",
        ],
    }


def step(counts: Sequence[tuple[int, int]], current: int) -> Step:
    """Next step from ``(patients evaluable, DLTs)`` per dose (lowest first) at dose ``current``.

    Only complete cohorts are decided on: with fewer than 3 (or between 3 and 6) evaluable
    patients the answer is to stay and fill the cohort.
    """
    n, y = counts[current]
    top = len(counts) - 1
    exceeded = [i for i, (ni, yi) in enumerate(counts) if yi >= 2 and ni >= COHORT]

    if y >= 2:
        lower = current - 1
        if lower < 0:
            return Step("stop", None, f"{y}/{n} DLTs at the lowest dose: no tolerable dose")
        n_low, y_low = counts[lower]
        if n_low >= 2 * COHORT:
            mtd = lower if y_low <= 1 else None
            return Step(
                "stop",
                None,
                f"{y}/{n} DLTs: dose exceeds the MTD; lower dose has {y_low}/{n_low}",
                mtd_index=mtd,
            )
        return Step(
            "de-escalate", lower, f"{y}/{n} DLTs: dose exceeds the MTD; expand the lower dose to 6"
        )
    if n < COHORT:
        return Step("stay", current, f"{n} of {COHORT} patients evaluable: complete the cohort")
    if n == COHORT and y == 1:
        return Step("stay", current, "1/3 DLTs: treat 3 more at this dose")
    if COHORT < n < 2 * COHORT:
        return Step("stay", current, f"{n} of 6 patients evaluable: complete the expansion")
    # 0/3, 0/6 or 1/6: this dose is tolerated.
    above = current + 1
    if above > top or above in exceeded:
        if n >= 2 * COHORT:
            return Step(
                "stop",
                None,
                f"{y}/{n} DLTs and no higher dose to try: MTD reached",
                mtd_index=current,
            )
        return Step(
            "stay", current, f"{y}/{n} DLTs, no higher dose to try: expand to 6 to declare the MTD"
        )
    return Step("escalate", above, f"{y}/{n} DLTs: escalate")
