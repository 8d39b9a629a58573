"""What a simulation reports, and how it reads the projections worker.

``WorkerView.document`` waits until the worker has applied the positions of the events the
simulation appended (``?wait_for=TOPIC:PARTITION:OFFSET``, one topic after another, only the
topics the projection folds) and returns the projection's JSON. ``SimulationReport`` counts
what the accepted commands did and prints the closing summary with the worker's final
dose-escalation document.
"""

from __future__ import annotations

import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from datetime import date

from clients.http import DEMO_READER, call
from clients.simulate_steps import TRIAL_START
from trial.config import TrialConfig


class SimulationError(RuntimeError):
    """A step was refused, or the worker's recommendation is not the one the plan expects."""


class WorkerView:
    """The projections worker's JSON, read once it has applied given topic positions."""

    def __init__(
        self, projections_url: str, trial: TrialConfig, timeout: float = 30,
        token: str = DEMO_READER, trial_id: str | None = None,
    ):
        """``trial_id``: the trial whose views are read, needed when the worker runs several
        (decision 60); None reads a one-trial worker's views as before."""
        from projections.catalog import build

        self.url, self.timeout, self.token = projections_url.rstrip("/"), timeout, token
        self.trial_id = trial_id
        self.contexts = {name: p.contexts for name, p in build(trial).items()}

    def document(self, name: str, positions: dict[str, tuple[int, int]]) -> dict:
        """``name``'s document after the worker applied ``positions`` (topic -> partition,
        offset) of the topics it folds."""
        waits = [
            f"{topic}:{partition}:{offset}"
            for topic, (partition, offset) in sorted(positions.items())
            if topic.rsplit(".", 2)[-2] in self.contexts[name]
        ]
        for wanted in [*waits, None]:
            query = {"wait_for": wanted, "timeout": f"{self.timeout:g}"} if wanted else {}
            if self.trial_id is not None:
                query["trial_id"] = self.trial_id
            url = f"{self.url}/projections/{name}"
            status, body = call(
                "GET",
                url + ("?" + urllib.parse.urlencode(query) if query else ""),
                token=self.token,
            )
            if status != 200:
                message = body.get("message", body) if isinstance(body, dict) else body
                raise SimulationError(f"{name}: the worker answered {status}: {message}")
        return body


@dataclass
class SimulationReport:
    """What the simulation did, counted from the commands accepted, and the worker's final
    dose-escalation document."""

    patients: int
    seed: int
    screened: int = 0
    screen_failures: list[tuple[str, str]] = field(default_factory=list)
    enrolled: int = 0
    withdrawn: list[tuple[str, str]] = field(default_factory=list)
    treated: int = 0
    lots: int = 0
    failed_lots: list[str] = field(default_factory=list)
    out_of_specification: list[str] = field(default_factory=list)
    adverse_events: Counter = field(default_factory=Counter)
    worst_grades: dict[str, int] = field(default_factory=dict)
    dlts: int = 0
    reports_submitted: list[str] = field(default_factory=list)
    reviews: list[str] = field(default_factory=list)
    commands: int = 0
    seconds: float = 0.0
    last_day: int = 0
    escalation: dict = field(default_factory=dict)

    def summary(self) -> str:
        end = TRIAL_START.date().toordinal() + self.last_day
        grades = Counter(self.worst_grades.values())
        rec = self.escalation.get("recommendation") or {}
        levels = ", ".join(
            f"{lvl['dose_level']} {lvl['dlts']}/{lvl['evaluable']}"
            for lvl in self.escalation.get("levels", [])
            if lvl["evaluable"] or lvl["treated"]
        )
        final = rec.get("decision", "none")
        if rec.get("next_level"):
            final += f" to {rec['next_level']}"
        if rec.get("mtd_level"):
            final += f", MTD {rec['mtd_level']}"
        lines = [
            f"simulated trial: {self.patients} patients to treat, seed {self.seed}; business "
            f"calendar {TRIAL_START.date()} to {date.fromordinal(end)} ({self.last_day} days)",
            f"  patients: screened {self.screened}, screen failures {len(self.screen_failures)}"
            f", enrolled {self.enrolled}, withdrawn {len(self.withdrawn)}, treated "
            f"{self.treated} (maximum {self.escalation.get('design', {}).get('max_patients')})",
            "  screen failures: "
            + ("; ".join(f"{s} {why}" for s, why in self.screen_failures) or "none"),
            "  withdrawals: " + ("; ".join(f"{s} {why}" for s, why in self.withdrawn) or "none"),
            f"  lots: {self.lots}; manufacturing failure {', '.join(self.failed_lots) or 'none'}"
            f"; out of specification {', '.join(self.out_of_specification) or 'none'}",
            f"  adverse events: {sum(self.adverse_events.values())} ("
            + ", ".join(f"{term} {n}" for term, n in sorted(self.adverse_events.items()))
            + "); worst grades "
            + ", ".join(f"grade {g}: {n}" for g, n in sorted(grades.items()))
            + f"; DLTs {self.dlts}",
            "  expedited reports submitted: " + (", ".join(self.reports_submitted) or "none"),
            f"  DLTs per level (worker): {levels}",
            "  review decisions: " + "; ".join(self.reviews),
            f"  final recommendation: {final} ({rec.get('rule', '-')}) "
            f"[{rec.get('recommendation_id', '-')}]",
            f"  {self.commands} commands in {self.seconds:.1f} s",
        ]
        return "\n".join(lines)
