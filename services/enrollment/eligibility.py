"""The eligibility criteria, one function per criterion, thresholds from the trial file.

Source: DOMAIN.md section 1 (the trial's abstract, TPS513): MSLN-positive by IHC in at least
25% of tumour cells; peritoneal carcinomatosis by imaging and/or cytology (extraperitoneal
disease allowed); at least one prior line for advanced or metastatic disease; at least one
measurable or evaluable lesion by RECIST 1.1. Typical further criteria (project defaults in
the trial file): age, ECOG, organ-function labs, no active infection, informed consent signed
before any study procedure.
"""

from __future__ import annotations

from events.enrollment import CriterionResult
from services.enrollment.commands import AssessEligibility
from services.enrollment.state import Consent
from trial.config import Eligibility


def msln_ihc(percent: float, rules: Eligibility, source: str = "") -> CriterionResult:
    minimum = rules.msln_ihc_min_percent
    return CriterionResult(
        criterion="msln-ihc",
        met=percent >= minimum,
        requirement=f"MSLN IHC >= {minimum:g}% of tumour cells",
        evidence=f"{percent:g}% of tumour cells{source}",
        value=percent,
    )


def assess(
    cmd: AssessEligibility, msln_percent: float, consent: Consent, rules: Eligibility
) -> tuple[CriterionResult, ...]:
    """Every criterion of the trial file, in a fixed order, met or not, with its evidence."""
    results = [msln_ihc(msln_percent, rules, " (pre-screening)")]
    if rules.requires_peritoneal_carcinomatosis:
        shown = sorted(set(cmd.peritoneal_carcinomatosis_by))
        results.append(
            CriterionResult(
                criterion="peritoneal-carcinomatosis",
                met=bool(shown),
                requirement="peritoneal carcinomatosis by imaging and/or cytology",
                evidence="shown by " + " and ".join(shown) if shown else "not shown",
            )
        )
    results.append(
        CriterionResult(
            criterion="prior-lines",
            met=cmd.prior_lines >= rules.prior_lines_min,
            requirement=f">= {rules.prior_lines_min} prior line(s) for advanced disease",
            evidence=f"{cmd.prior_lines} prior line(s)",
            value=cmd.prior_lines,
        )
    )
    if rules.requires_measurable_or_evaluable_lesion:
        results.append(
            CriterionResult(
                criterion="recist-lesion",
                met=cmd.recist_lesion != "none",
                requirement="at least one measurable or evaluable lesion (RECIST 1.1)",
                evidence=f"{cmd.recist_lesion} lesion" if cmd.recist_lesion != "none" else "none",
            )
        )
    results += [
        CriterionResult(
            criterion="age",
            met=cmd.age_years >= rules.age_min,
            requirement=f"age >= {rules.age_min} years",
            evidence=f"{cmd.age_years} years",
            value=cmd.age_years,
        ),
        CriterionResult(
            criterion="ecog",
            met=cmd.ecog <= rules.ecog_max,
            requirement=f"ECOG performance status <= {rules.ecog_max}",
            evidence=f"ECOG {cmd.ecog}",
            value=cmd.ecog,
        ),
    ]
    results += [lab(name, cmd.labs[name], bounds) for name, bounds in sorted(rules.labs.items())]
    results += [
        CriterionResult(
            criterion="no-active-infection",
            met=not cmd.active_infection,
            requirement="no active infection",
            evidence="active infection" if cmd.active_infection else "no active infection",
        ),
        consent_before_screening(consent, cmd),
    ]
    return tuple(results)


def lab(name: str, value: float, bounds: tuple[float | None, float | None]) -> CriterionResult:
    low, high = bounds
    limits = [f">= {low:g}" if low is not None else "", f"<= {high:g}" if high is not None else ""]
    return CriterionResult(
        criterion=f"lab:{name}",
        met=(low is None or value >= low) and (high is None or value <= high),
        requirement=f"{name} " + (" and ".join(x for x in limits if x) or "recorded"),
        evidence=f"{name} {value:g}",
        value=value,
    )


def consent_before_screening(consent: Consent, cmd: AssessEligibility) -> CriterionResult:
    return CriterionResult(
        criterion="consent-before-screening",
        met=consent.signed_at <= cmd.screening_started_at,
        requirement="informed consent signed before the first screening procedure",
        evidence=(
            f"consent {consent.form_version} signed {consent.signed_at.isoformat()}; "
            f"screening started {cmd.screening_started_at.isoformat()}"
        ),
    )


def lab_names_problem(cmd: AssessEligibility, rules: Eligibility) -> dict[str, list[str]]:
    """Labs the trial file requires that the command lacks, and labs it does not know."""
    missing = sorted(set(rules.labs) - set(cmd.labs))
    unknown = sorted(set(cmd.labs) - set(rules.labs))
    return {k: v for k, v in (("missing", missing), ("unknown", unknown)) if v}
