"""Release testing: each QC result judged against the trial file's release specification.

Source: DOMAIN.md section 2 item 4 (typical autologous CAR T release tests; the limits are the
trial file's ``release``). How each limit reads, as the record words it:
- viability >= minimum %, CAR expression >= minimum % (a value at the minimum passes);
- vector copy number < maximum copies per transduced cell (a value at the maximum fails);
- endotoxin "below the limit" (a value at the limit fails: the project's reading of "below");
- sterility and mycoplasma negative; "negative to date" is pending, not failed, and allows a
  conditional release; replication-competent retrovirus negative; identity confirmed;
- cell dose within the tolerance of the target, both ends included: |actual - target| <=
  tolerance % x target, the target being fixed when manufacturing started.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, get_args

from events.manufacturing import QcTest
from trial.config import ReleaseSpecification

REQUIRED_TESTS: tuple[str, ...] = get_args(QcTest)
"""Every test disposition needs, in the order failures are reported."""

MEASURED: dict[str, tuple[float, float | None, str]] = {
    "viability": (0.0, 100.0, "%"),
    "car_expression": (0.0, 100.0, "%"),
    "vector_copy_number": (0.0, None, "copies per transduced cell"),
    "endotoxin": (0.0, None, "EU/mL"),
    "cell_dose": (0.0, None, "CAR T cells"),
}
"""Tests reported as a number: (lowest, highest, unit)."""

OUTCOMES: dict[str, tuple[str, ...]] = {
    "sterility": ("negative", "negative-to-date", "positive"),
    "mycoplasma": ("negative", "negative-to-date", "positive"),
    "replication_competent_retrovirus": ("negative", "positive"),
    "identity": ("confirmed", "not-confirmed"),
}
"""Tests reported as an outcome, with the outcomes each may have."""

PENDING = "negative-to-date"

Status = Literal["pass", "fail", "pending"]


def check_result_shape(test: str, value: float | None, outcome: str | None) -> None:
    """A measured test carries a value in its range; any other test one of its outcomes."""
    if test in MEASURED:
        low, high, unit = MEASURED[test]
        if value is None or outcome is not None:
            raise ValueError(f"{test} is reported as a value in {unit}, without an outcome")
        positive_only = test == "cell_dose"
        if value < low or (positive_only and value == low) or (high is not None and value > high):
            if positive_only:
                bound = f"above {low:g}"
            else:
                bound = f"from {low:g}" + (f" to {high:g}" if high is not None else " up")
            raise ValueError(f"{test} {value:g} {unit} is out of range: {bound}")
        return
    allowed = OUTCOMES[test]
    if outcome is None or value is not None:
        raise ValueError(f"{test} is reported as an outcome ({', '.join(allowed)}), not a value")
    if outcome not in allowed:
        raise ValueError(f"{test} may be {', '.join(allowed)}; not {outcome}")


@dataclass(frozen=True, slots=True)
class Result:
    value: float | None
    outcome: str | None

    @property
    def pending(self) -> bool:
        return self.outcome == PENDING


@dataclass(frozen=True, slots=True)
class Verdict:
    test: str
    status: Status
    finding: str


def judge(test: str, result: Result, spec: ReleaseSpecification, target_cells: float) -> Verdict:
    """One result against the specification (see the module docstring for each limit)."""
    value, outcome = result.value, result.outcome
    match test:
        case "viability":
            return _at_least(test, value, spec.viability_min_percent, "%")
        case "car_expression":
            return _at_least(test, value, spec.car_expression_min_percent, "%")
        case "vector_copy_number":
            return _below(test, value, spec.vector_copy_number_max, "copies per transduced cell")
        case "endotoxin":
            return _below(test, value, spec.endotoxin_max_eu_per_ml, "EU/mL")
        case "cell_dose":
            return _cell_dose(value, target_cells, spec.cell_dose_tolerance_percent)
        case "identity":
            ok = outcome == "confirmed"
            return Verdict(test, "pass" if ok else "fail", f"identity {outcome}")
    if outcome == PENDING:
        return Verdict(test, "pending", f"{_label(test)} negative to date")
    status: Status = "pass" if outcome == "negative" else "fail"
    return Verdict(test, status, f"{_label(test)} {outcome}")


def _at_least(test: str, value: float | None, minimum: float, unit: str) -> Verdict:
    assert value is not None
    ok = value >= minimum
    sign = ">=" if ok else "<"
    return Verdict(
        test, "pass" if ok else "fail", f"{_label(test)} {value:g}{unit} {sign} {minimum:g}{unit}"
    )


def _below(test: str, value: float | None, limit: float, unit: str) -> Verdict:
    assert value is not None
    ok = value < limit
    sign = "<" if ok else ">="
    return Verdict(
        test, "pass" if ok else "fail", f"{_label(test)} {value:g} {sign} {limit:g} {unit}"
    )


def _cell_dose(value: float | None, target: float, tolerance_percent: float) -> Verdict:
    assert value is not None
    ok = abs(value - target) * 100 <= tolerance_percent * target
    deviation = (value - target) / target * 100
    return Verdict(
        "cell_dose",
        "pass" if ok else "fail",
        f"cell dose {value:.4g} CAR T cells is {deviation:+.1f}% of the target {target:.4g} "
        f"(tolerance {tolerance_percent:g}%)",
    )


def _label(test: str) -> str:
    return test.replace("_", " ")


@dataclass(frozen=True, slots=True)
class Assessment:
    missing: tuple[str, ...]
    verdicts: tuple[Verdict, ...]

    @property
    def failed(self) -> tuple[Verdict, ...]:
        return tuple(v for v in self.verdicts if v.status == "fail")

    @property
    def pending(self) -> tuple[Verdict, ...]:
        return tuple(v for v in self.verdicts if v.status == "pending")


def assess(
    results: Mapping[str, Result], spec: ReleaseSpecification, target_cells: float
) -> Assessment:
    """Every required test's verdict, in ``REQUIRED_TESTS`` order, and the tests still missing."""
    missing = tuple(t for t in REQUIRED_TESTS if t not in results)
    verdicts = tuple(
        judge(t, results[t], spec, target_cells) for t in REQUIRED_TESTS if t in results
    )
    return Assessment(missing, verdicts)
