"""Every projection trialops serves and replays, by name."""

from __future__ import annotations

from projections import cohort_occupancy, patient_timeline
from projections.base import Projection

PROJECTIONS: dict[str, Projection] = {
    p.name: p for p in (cohort_occupancy.PROJECTION, patient_timeline.PROJECTION)
}


def get(name: str) -> Projection:
    try:
        return PROJECTIONS[name]
    except KeyError:
        raise KeyError(
            f"unknown projection {name!r}; known: {', '.join(sorted(PROJECTIONS))}"
        ) from None
