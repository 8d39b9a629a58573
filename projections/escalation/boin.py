"""The Bayesian optimal interval (BOIN) design, pure functions.

Source: Liu S, Yuan Y. Bayesian optimal interval designs for phase I clinical trials.
J R Stat Soc C 2015;64:507-523 (boundaries lambda_e, lambda_d with phi1 = 0.6 phi and
phi2 = 1.4 phi; dose elimination when n >= 3 and Pr(p > phi | data) > 0.95 under a Beta(1, 1)
prior; the MTD chosen by isotonic regression at the end).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

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


def decision_table(target: float, max_n: int) -> dict:
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


def select_mtd(counts: Sequence[tuple[int, int]], target: float) -> tuple[int | None, list[float]]:
    """Index of the MTD among doses (lowest first) from ``(n, dlts)`` per dose, and the isotonic
    estimates. Doses never tried and eliminated doses must be left out by the caller. Ties go to
    the lower dose."""
    tried = [(i, n, y) for i, (n, y) in enumerate(counts) if n > 0]
    if not tried:
        return None, []
    estimates = isotonic([y / n for _i, n, y in tried], [n for _i, n, _y in tried])
    best = min(range(len(tried)), key=lambda k: (abs(estimates[k] - target), k))
    return tried[best][0], estimates
