"""The Bayesian optimal interval (BOIN) design, pure functions.

Source: Liu S, Yuan Y. Bayesian optimal interval designs for phase I clinical trials.
J R Stat Soc C 2015;64:507-523 (boundaries lambda_e, lambda_d with phi1 = 0.6 phi and
phi2 = 1.4 phi; dose elimination when n >= 3 and Pr(p > phi | data) > 0.95 under a Beta(1, 1)
prior; the MTD chosen by isotonic regression at the end). The MTD selection follows the BOIN R
package's ``select.mtd`` (Yan, Zhang, Zhou, Pan, Liu, Yuan, J Stat Softw 2020;94(13):1-32).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

ELIMINATION_CUTOFF = 0.95
ELIMINATION_MIN_N = 3


@dataclass(frozen=True)
class Boundaries:
    target: float
    lambda_e: float
    lambda_d: float


def boundaries(target: float, phi1: float | None = None, phi2: float | None = None) -> Boundaries:
    if not 0 < target < 1:
        raise ValueError(f"target DLT rate must be between 0 and 1, not {target}")
    phi1 = 0.6 * target if phi1 is None else phi1
    phi2 = 1.4 * target if phi2 is None else phi2
    lambda_e = math.log((1 - phi1) / (1 - target)) / math.log(
        target * (1 - phi1) / (phi1 * (1 - target))
    )
    lambda_d = math.log((1 - target) / (1 - phi2)) / math.log(
        phi2 * (1 - target) / (target * (1 - phi2))
    )
    return Boundaries(target, lambda_e, lambda_d)


def prob_above_target(n: int, dlts: int, target: float) -> float:
    """Pr(p > target | dlts of n) under a Beta(1, 1) prior, i.e. for Beta(dlts+1, n-dlts+1).

    For integer parameters the Beta tail is a binomial sum: Pr(p > t) = P(Bin(n+1, t) <= dlts).
    """
    return sum(
        math.comb(n + 1, k) * target**k * (1 - target) ** (n + 1 - k) for k in range(dlts + 1)
    )


def escalate_at_most(n: int, b: Boundaries) -> int:
    """Largest DLT count at which the design escalates (observed rate <= lambda_e)."""
    return math.floor(n * b.lambda_e + 1e-12)


def deescalate_at_least(n: int, b: Boundaries) -> int:
    """Smallest DLT count at which the design de-escalates (observed rate >= lambda_d)."""
    return math.ceil(n * b.lambda_d - 1e-12)


def eliminate_at_least(n: int, target: float) -> int | None:
    """Smallest DLT count that eliminates the dose, or None when no count does at this n."""
    if n < ELIMINATION_MIN_N:
        return None
    for dlts in range(n + 1):
        if prob_above_target(n, dlts, target) > ELIMINATION_CUTOFF:
            return dlts
    return None


def decision_table(target: float, max_n: int) -> dict[str, Any]:
    b = boundaries(target)
    return {
        "design": "boin",
        "target": target,
        "lambda_e": round(b.lambda_e, 4),
        "lambda_d": round(b.lambda_d, 4),
        "rows": [
            {
                "n": n,
                "escalate_if_dlt_at_most": escalate_at_most(n, b),
                "deescalate_if_dlt_at_least": deescalate_at_least(n, b),
                "eliminate_if_dlt_at_least": eliminate_at_least(n, target),
            }
            for n in range(1, max_n + 1)
        ],
        "mtd": "select.mtd of the BOIN R package: over the doses given and not eliminated, "
        "(y + 0.05) / (n + 0.1) made non-decreasing by PAVA with inverse-variance weights; the "
        "dose closest to the target, on a tie the higher below the target, the lower above it",
    }


def decide(n: int, dlts: int, b: Boundaries) -> str:
    """'escalate', 'stay' or 'de-escalate' at the current dose (before dose availability)."""
    if n <= 0:
        return "stay"
    if dlts <= escalate_at_most(n, b):
        return "escalate"
    if dlts >= deescalate_at_least(n, b):
        return "de-escalate"
    return "stay"


def isotonic(rates: Sequence[float], weights: Sequence[float]) -> list[float]:
    """Pool-adjacent-violators: the non-decreasing sequence closest to ``rates`` (weighted)."""
    blocks: list[list[float]] = []  # [value, weight, count]
    for rate, weight in zip(rates, weights, strict=True):
        blocks.append([rate, weight, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            v2, w2, c2 = blocks.pop()
            v1, w1, c1 = blocks.pop()
            blocks.append([(v1 * w1 + v2 * w2) / (w1 + w2), w1 + w2, c1 + c2])
    return [value for value, _w, count in blocks for _ in range(int(count))]


MTD_PRIOR = 0.05
"""Each of the Beta prior's two parameters in ``select.mtd``'s estimate (y + 0.05) / (n + 0.1)."""
MTD_TIE_STEP = 1e-10
"""``select.mtd`` adds k x 1e-10 to the k-th admissible dose's estimate before choosing."""


def first_eliminated(counts: Sequence[tuple[int, int]], target: float) -> int | None:
    """Index of the lowest dose eliminated by ``(n, dlts)`` per dose (lowest first): that dose and
    every dose above it are out. None when no dose is.

    Source: the BOIN R package's ``select.mtd`` (Yan, Zhang, Zhou, Pan, Liu, Yuan, J Stat Softw
    2020;94(13)): going up from the lowest dose, the first with n >= 3 and
    Pr(p > target | data) > 0.95 under Beta(1, 1) eliminates itself and all above.
    """
    for i, (n, dlts) in enumerate(counts):
        cut = eliminate_at_least(n, target)
        if cut is not None and dlts >= cut:
            return i
    return None


@dataclass(frozen=True)
class MtdSelection:
    index: int | None
    """The MTD among the doses given (lowest first); None when no dose is selected."""
    estimates: tuple[float | None, ...]
    """Isotonic estimate per dose; None for doses never given or eliminated."""
    eliminated_from: int | None


def select_mtd(counts: Sequence[tuple[int, int]], target: float) -> MtdSelection:
    """The MTD at the end of a BOIN trial from ``(n, dlts)`` per dose, lowest dose first.

    Source: ``select.mtd`` of the BOIN R package (CRAN; documentation and code) and Yan F,
    Zhang L, Zhou Y, Pan H, Liu S, Yuan Y. BOIN: an R package for designing single-agent and
    drug-combination dose-finding trials using Bayesian optimal interval designs. J Stat Softw
    2020;94(13):1-32. The rule:

    - doses are eliminated as in ``first_eliminated``; if the lowest dose is, or no patient was
      treated at a dose not eliminated, no MTD is selected;
    - the admissible doses are those given (n > 0) and not eliminated; a dose never given is
      skipped, not counted as 0 of 0;
    - each admissible dose's DLT rate is estimated as (y + 0.05) / (n + 0.1) (a Beta(0.05, 0.05)
      prior), made non-decreasing by the pool-adjacent-violators algorithm with weights 1 / var,
      var = (y + 0.05)(n - y + 0.05) / ((n + 0.1)^2 (n + 0.1 + 1));
    - the MTD is the dose whose estimate is closest to the target; on ties the highest dose when
      the tied estimate is below the target, the lowest when above. The package does this by
      adding k x 1e-10 to the k-th admissible estimate before taking the closest (the first on
      an exact tie), which this function does too.
    """
    eliminated = first_eliminated(counts, target)
    usable = [
        (i, n, y)
        for i, (n, y) in enumerate(counts)
        if n > 0 and (eliminated is None or i < eliminated)
    ]
    if eliminated == 0 or not usable:
        return MtdSelection(None, tuple(None for _ in counts), eliminated)
    a = MTD_PRIOR
    rates = [(y + a) / (n + 2 * a) for _i, n, y in usable]
    variances = [
        (y + a) * (n - y + a) / ((n + 2 * a) ** 2 * (n + 2 * a + 1)) for _i, n, y in usable
    ]
    pooled = isotonic(rates, [1 / v for v in variances])
    distance = [abs(p + (k + 1) * MTD_TIE_STEP - target) for k, p in enumerate(pooled)]
    best = min(range(len(usable)), key=lambda k: (distance[k], k))
    by_dose: list[float | None] = [None] * len(counts)
    for (i, _n, _y), estimate in zip(usable, pooled, strict=True):
        by_dose[i] = estimate
    return MtdSelection(usable[best][0], tuple(by_dose), eliminated)
