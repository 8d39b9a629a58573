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


# ---------------------------------------------------------------- BOIN's MTD selection
# Source: select.mtd of the BOIN R package (CRAN, documentation and code; Yan, Zhang, Zhou, Pan,
# Liu, Yuan, J Stat Softw 2020;94(13)). Estimate (y + 0.05) / (n + 0.1) over the doses given and
# not eliminated, pooled by PAVA with weights 1 / var, var = (y + 0.05)(n - y + 0.05) /
# ((n + 0.1)^2 (n + 0.1 + 1)); closest to the target; ties: the highest dose when below the
# target, the lowest when above. Values below are worked by hand from that formula.


def test_boin_mtd_of_the_packages_documented_example():
    # select.mtd(target=0.3, npts=c(3,3,15,9,0), ntox=c(0,0,4,4,0)): estimates 0.05/3.1 = 0.0161,
    # 0.0161, 4.05/15.1 = 0.2682, 4.05/9.1 = 0.4451, the fifth dose never given ("----").
    selection = boin.select_mtd([(3, 0), (3, 0), (15, 4), (9, 4), (0, 0)], 0.30)
    assert selection.index == 2
    assert selection.estimates == pytest.approx([0.0161, 0.0161, 0.2682, 0.4451, None], abs=1e-4)
    assert selection.eliminated_from is None


def test_boin_mtd_tie_below_the_target_goes_to_the_higher_dose():
    # 1/3 then 2/9 violate the order: 1.05/3.1 = 0.3387 (var 1.05 x 2.05 / (3.1^2 x 4.1) =
    # 0.054631, weight 18.305) and 2.05/9.1 = 0.2253 (var 2.05 x 7.05 / (9.1^2 x 10.1) =
    # 0.017280, weight 57.871) pool to 19.2369 / 76.176 = 0.2525 < 0.30: the higher dose.
    selection = boin.select_mtd([(3, 1), (9, 2)], 0.30)
    assert selection.estimates == pytest.approx([0.2525, 0.2525], abs=1e-4)
    assert selection.index == 1


def test_boin_mtd_tie_above_the_target_goes_to_the_lower_dose():
    # 0/3 = 0.0161; 2/3 = 0.6613 and 1/3 = 0.3387 have equal variances and pool to 0.5 > 0.30,
    # which is closer to 0.30 than 0.0161: of the tied doses, the lower one.
    selection = boin.select_mtd([(3, 0), (3, 2), (3, 1)], 0.30)
    assert selection.estimates == pytest.approx([0.0161, 0.5, 0.5], abs=1e-4)
    assert selection.index == 1


def test_boin_mtd_leaves_out_an_eliminated_dose_and_every_dose_above_it():
    # 3/3 at the second dose: Pr(p > 0.3 | Beta(4, 1)) = 1 - 0.3^4 = 0.9919 > 0.95, so it and the
    # third dose (0/3, which alone would be the closest after pooling) are out: only 1/6 is left.
    selection = boin.select_mtd([(6, 1), (3, 3), (3, 0)], 0.30)
    assert selection.eliminated_from == 1
    assert selection.estimates == pytest.approx([1.05 / 6.1, None, None], abs=1e-4)
    assert selection.index == 0


def test_boin_mtd_closest_to_the_target_with_the_top_dose_eliminated():
    # 0/3, 1/6, 2/6 give 0.0161, 0.1721, 0.3361; 3/3 at the top is eliminated: 0.3361 is closest.
    selection = boin.select_mtd([(3, 0), (6, 1), (6, 2), (3, 3)], 0.30)
    assert selection.estimates == pytest.approx([0.0161, 0.1721, 0.3361, None], abs=1e-4)
    assert selection.index == 2


def test_boin_mtd_skips_a_dose_never_given():
    selection = boin.select_mtd([(3, 0), (0, 0), (6, 2)], 0.30)
    assert selection.estimates == pytest.approx([0.0161, None, 0.3361], abs=1e-4)
    assert selection.index == 2


@pytest.mark.parametrize(
    "counts",
    [[(3, 3), (3, 0)], [(0, 0), (0, 0)]],
    ids=["the lowest dose eliminated", "nobody treated"],
)
def test_boin_selects_no_mtd(counts):
    assert boin.select_mtd(counts, 0.30).index is None


def test_the_boin_decision_table_names_the_mtd_rule_for_protocol_writers():
    assert boin.decision_table(0.30, 3)["mtd"].startswith("select.mtd of the BOIN R package")


def test_boin_elimination_is_pr_above_target_over_095_under_a_uniform_prior():
    # Pr(p > 0.3 | 3 of 3) = 1 - 0.3^4 = 0.9919; 2 of 3: P(Bin(4, 0.3) <= 2) = 0.9163, kept.
    assert boin.prob_above_target(3, 3, 0.30) == pytest.approx(0.9919, abs=1e-4)
    assert boin.prob_above_target(3, 2, 0.30) == pytest.approx(0.9163, abs=1e-4)
    assert boin.first_eliminated([(3, 2), (2, 2)], 0.30) is None  # n >= 3 is required
    assert boin.first_eliminated([(3, 2), (3, 3)], 0.30) == 1


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


def test_boin_at_the_maximum_sample_size_breaks_a_tie_below_the_target_upwards():
    # 1/3 at DL1 and 2/9 at DL2 pool to 0.2525 < 0.30 (worked above): DL2, not DL1.
    data = {"DL-1": LevelOutcomes(6, 0), "DL1": LevelOutcomes(3, 1), "DL2": LevelOutcomes(9, 2)}
    rec = recommend(BOIN_030, LEVELS, data, "DL2")
    assert (rec.decision, rec.mtd_level) == ("stop", "DL2")
    assert "DL1 0.253, DL2 0.253" in rec.rule


def test_accelerated_titration_escalates_after_one_patient_without_toxicity():
    design = EscalationDesign(
        design="boin", target_dlt_rate=0.3, min_patients=4, max_patients=18,
        start_level="DL-1", accelerated_titration_levels=("DL-1",),
    )
    rec = recommend(design, LEVELS, {"DL-1": LevelOutcomes(1, 0)}, "DL-1")
    assert (rec.decision, rec.next_level) == ("escalate", "DL1")
    grade2 = {"DL-1": LevelOutcomes(1, 0, grade2_toxicity_seen=True)}
    assert recommend(design, LEVELS, grade2, "DL-1").decision == "stay"
