"""Dose-escalation designs against their published rules.

Sources:
- BOIN: Liu S, Yuan Y. J R Stat Soc C 2015;64:507-523, Table 1: (lambda_e, lambda_d) =
  (0.197, 0.298) for a target of 0.25 and (0.236, 0.358) for 0.30. The decision table for a
  target of 0.30 in cohorts of 3 is the one printed in the BOIN protocol template distributed
  with the BOIN software (MD Anderson): escalate if DLTs <= 0 1 2 2 3 4, de-escalate if >= 2 3
  4 5 6 7, eliminate if >= 3 4 5 7 8 9 at 3 6 9 12 15 18 patients.
- Elimination: n >= 3 and Pr(p > target | data) > 0.95 under Beta(1, 1) (Liu & Yuan 2015),
  checked here by numerical integration of the Beta posterior, independently of the code.
- 3+3: DOMAIN.md section 4 (Le Tourneau, Lee, Siu, JNCI 2009).
"""

from __future__ import annotations

import math

import pytest

from projections.escalation import boin
from projections.escalation.engine import LevelOutcomes, recommend
from trial.config import EscalationDesign

PUBLISHED_LAMBDAS = {0.25: (0.197, 0.298), 0.30: (0.236, 0.358)}

# target 0.30, cohorts of 3: n -> (escalate if <=, de-escalate if >=, eliminate if >=)
PUBLISHED_TABLE_030 = {
    3: (0, 2, 3), 6: (1, 3, 4), 9: (2, 4, 5), 12: (2, 5, 7), 15: (3, 6, 8), 18: (4, 7, 9),
}


def posterior_tail(n: int, dlts: int, target: float, steps: int = 20_000) -> float:
    """Pr(p > target) for Beta(dlts + 1, n - dlts + 1) by Simpson's rule on [target, 1]."""
    a, b = dlts + 1, n - dlts + 1
    norm = math.gamma(a) * math.gamma(b) / math.gamma(a + b)
    h = (1 - target) / steps
    total = 0.0
    for i in range(steps + 1):
        x = target + i * h
        weight = 1 if i in (0, steps) else (4 if i % 2 else 2)
        total += weight * x ** (a - 1) * (1 - x) ** (b - 1)
    return total * h / 3 / norm


@pytest.mark.parametrize("target", [0.25, 0.30])
def test_boin_boundaries_match_the_published_lambdas(target):
    b = boin.boundaries(target)
    lambda_e, lambda_d = PUBLISHED_LAMBDAS[target]
    assert b.lambda_e == pytest.approx(lambda_e, abs=0.001)
    assert b.lambda_d == pytest.approx(lambda_d, abs=0.001)


@pytest.mark.parametrize("n", sorted(PUBLISHED_TABLE_030))
def test_boin_table_for_target_030_matches_the_published_protocol_template(n):
    row = boin.decision_table(0.30, 18)["rows"][n - 1]
    assert row["n"] == n
    assert (
        row["escalate_if_dlt_at_most"],
        row["deescalate_if_dlt_at_least"],
        row["eliminate_if_dlt_at_least"],
    ) == PUBLISHED_TABLE_030[n]


@pytest.mark.parametrize("target", [0.25, 0.30])
@pytest.mark.parametrize("n", range(1, 19))
def test_boin_row_follows_the_published_lambdas_for_every_n(target, n):
    lambda_e, lambda_d = PUBLISHED_LAMBDAS[target]
    row = boin.decision_table(target, 18)["rows"][n - 1]
    # escalate when the observed rate y/n <= lambda_e; de-escalate when y/n >= lambda_d
    assert row["escalate_if_dlt_at_most"] == max(y for y in range(n + 1) if y / n <= lambda_e)
    assert row["deescalate_if_dlt_at_least"] == min(y for y in range(n + 1) if y / n >= lambda_d)


@pytest.mark.parametrize("target", [0.25, 0.30])
@pytest.mark.parametrize("n", range(1, 19))
def test_boin_elimination_threshold_follows_the_beta_posterior(target, n):
    row = boin.decision_table(target, 18)["rows"][n - 1]
    expected = None
    if n >= 3:
        expected = next(
            (y for y in range(n + 1) if posterior_tail(n, y, target) > 0.95), None
        )
    assert row["eliminate_if_dlt_at_least"] == expected


def test_isotonic_regression_pools_adjacent_violators():
    # Rates 0.0, 0.5, 0.25 with 2, 2, 4 patients: the last two violate order and pool to
    # (0.5 * 2 + 0.25 * 4) / 6 = 1/3.
    assert boin.isotonic([0.0, 0.5, 0.25], [2, 2, 4]) == pytest.approx([0.0, 1 / 3, 1 / 3])


def test_boin_mtd_is_the_dose_whose_isotonic_estimate_is_closest_to_the_target():
    # 0/3, 1/6, 2/6, 3/3: estimates 0, 1/6, 1/3, 1; 1/3 is closest to 0.30 -> the third dose
    index, _estimates = boin.select_mtd([(3, 0), (6, 1), (6, 2), (3, 3)], 0.30)
    assert index == 2


# ---------------------------------------------------------------- 3+3

LEVELS = ["DL-1", "DL1", "DL2", "DL3", "DL4"]
THREE_PLUS_THREE = EscalationDesign(
    design="3+3", cohort_size=3, min_patients=4, max_patients=18, start_level="DL1"
)
BOIN_030 = EscalationDesign(
    design="boin", target_dlt_rate=0.30, cohort_size=3, min_patients=4, max_patients=18,
    start_level="DL1",
)


def outcomes(**counts: tuple[int, int]) -> dict[str, LevelOutcomes]:
    return {
        level.replace("m", "-"): LevelOutcomes(n, y, tuple(f"ev-{level}-{i}" for i in range(n)))
        for level, (n, y) in counts.items()
    }


@pytest.mark.parametrize(
    ("data", "current", "decision", "next_level", "mtd"),
    [
        ({"DL1": (3, 0)}, "DL1", "escalate", "DL2", None),
        ({"DL1": (3, 1)}, "DL1", "stay", "DL1", None),
        ({"DL1": (6, 1)}, "DL1", "escalate", "DL2", None),
        ({"DL1": (3, 0), "DL2": (3, 2)}, "DL2", "de-escalate", "DL1", None),
        ({"DL1": (6, 1), "DL2": (6, 2)}, "DL2", "stop", None, "DL1"),
        ({"DL1": (3, 0), "DL2": (6, 2)}, "DL2", "de-escalate", "DL1", None),
        ({"DL1": (3, 2)}, "DL1", "de-escalate", "DL-1", None),
        ({"DLm1": (3, 2)}, "DL-1", "stop", None, None),
        ({"DL1": (2, 0)}, "DL1", "stay", "DL1", None),
        ({"DL4": (3, 0)}, "DL4", "stay", "DL4", None),
        ({"DL4": (6, 1)}, "DL4", "stop", None, "DL4"),
        ({"DL1": (6, 0), "DL2": (3, 2), }, "DL1", "stop", None, "DL1"),
    ],
    ids=[
        "0 of 3 escalates",
        "1 of 3 expands to 6",
        "1 of 6 escalates",
        "2 of 3 de-escalates and expands the lower dose",
        "2 of 6 above a tolerated 6 ends with the lower dose as MTD",
        "2 of 6 above a dose with 3 de-escalates",
        "2 of 3 at the start dose falls back to DL-1",
        "2 of 3 at the fallback dose stops without an MTD",
        "an incomplete cohort is completed",
        "0 of 3 at the highest dose expands it",
        "1 of 6 at the highest dose ends with it as MTD",
        "never re-escalate to a dose that exceeded the MTD",
    ],
)
def test_three_plus_three(data, current, decision, next_level, mtd):
    rec = recommend(THREE_PLUS_THREE, LEVELS, outcomes(**data), current)
    assert (rec.decision, rec.next_level, rec.mtd_level) == (decision, next_level, mtd)
    assert rec.rule.startswith("3+3")


def test_a_recommendation_shows_the_data_it_was_made_from():
    rec = recommend(THREE_PLUS_THREE, LEVELS, outcomes(DL1=(3, 1)), "DL1")
    assert rec.counts == {"DL1": {"evaluable": 3, "dlts": 1}}
    assert rec.evidence == ("ev-DL1-0", "ev-DL1-1", "ev-DL1-2")


# ---------------------------------------------------------------- BOIN


@pytest.mark.parametrize(
    ("data", "current", "decision", "next_level", "eliminated"),
    [
        ({"DL1": (3, 0)}, "DL1", "escalate", "DL2", ()),
        ({"DL1": (3, 1)}, "DL1", "stay", "DL1", ()),
        ({"DL2": (3, 2)}, "DL2", "de-escalate", "DL1", ()),
        ({"DL2": (6, 1)}, "DL2", "escalate", "DL3", ()),
        ({"DL2": (6, 2)}, "DL2", "stay", "DL2", ()),
        ({"DL2": (3, 3)}, "DL2", "de-escalate", "DL1", ("DL2", "DL3", "DL4")),
        ({"DL1": (3, 0), "DL2": (3, 3)}, "DL1", "stay", "DL1", ("DL2", "DL3", "DL4")),
        ({"DL-1": (3, 3)}, "DL-1", "stop", None, ("DL-1", "DL1", "DL2", "DL3", "DL4")),
        ({"DL4": (3, 0)}, "DL4", "stay", "DL4", ()),
    ],
    ids=[
        "0 of 3 is below lambda_e: escalate",
        "1 of 3 is between the boundaries: stay",
        "2 of 3 is above lambda_d: de-escalate",
        "1 of 6 escalates",
        "2 of 6 stays",
        "3 of 3 eliminates the dose and those above",
        "no escalation into an eliminated dose",
        "eliminating the lowest dose stops the trial",
        "no dose above the highest",
    ],
)
def test_boin(data, current, decision, next_level, eliminated):
    rec = recommend(BOIN_030, LEVELS, {k: LevelOutcomes(*v) for k, v in data.items()}, current)
    assert (rec.decision, rec.next_level, rec.eliminated_levels) == (
        decision, next_level, eliminated,
    )


def test_boin_stops_at_the_maximum_sample_size_and_selects_the_mtd():
    data = {
        "DL1": LevelOutcomes(3, 0), "DL2": LevelOutcomes(6, 1),
        "DL3": LevelOutcomes(6, 2), "DL4": LevelOutcomes(3, 3),
    }
    rec = recommend(BOIN_030, LEVELS, data, "DL3")
    # DL4 (3/3) is eliminated; estimates 0, 1/6, 1/3: DL3 is closest to 0.30
    assert (rec.decision, rec.mtd_level) == ("stop", "DL3")


def test_accelerated_titration_escalates_after_one_patient_without_toxicity():
    design = EscalationDesign(
        design="boin", target_dlt_rate=0.3, min_patients=4, max_patients=18,
        start_level="DL-1", accelerated_titration_levels=("DL-1",),
    )
    rec = recommend(design, LEVELS, {"DL-1": LevelOutcomes(1, 0)}, "DL-1")
    assert (rec.decision, rec.next_level) == ("escalate", "DL1")
    grade2 = {"DL-1": LevelOutcomes(1, 0, grade2_toxicity_seen=True)}
    assert recommend(design, LEVELS, grade2, "DL-1").decision == "stay"
