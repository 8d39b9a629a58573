"""One cohort's answer from the cohort-occupancy view (``?cohort_id=``): what concerns the
cohort, read from its own key and the waiting subjects' keys, never the screening list.

The screening list keeps every subject ever screened; at a million events of history
(bench_projections) each cohort's answer carried 37 MB of it and took 2.4 to 3.2 s, where
issue 12 asks per-key queries to stay flat. No broker: the view's own ``_document`` over a
table as the worker keeps it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from events.enrollment import (
    CohortOpened,
    SubjectEnrolled,
    SubjectRegistered,
    SubjectScreenFailed,
    SubjectWaitlisted,
    SubjectWithdrawn,
)
from projections.base import fold
from projections.paging import NEXT, KeyOrder, StoredOrder, assemble
from projections.views import _document

from .test_board_detail import PROJECTIONS, rec

OCCUPANCY = PROJECTIONS["cohort-occupancy"]
AS_OF = datetime(2026, 6, 1, tzinfo=UTC)


class Table(dict):
    """A worker's table (key -> stored value) that remembers every key whose value was read."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> Any:
        self.read.add(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def items(self) -> Iterator[tuple[str, Any]]:  # type: ignore[override]
        self.read |= set(self)
        return iter(list(super().items()))

    def values(self) -> Iterator[Any]:  # type: ignore[override]
        self.read |= set(self)
        return iter(list(super().values()))


def history() -> list:
    def opened(cohort_id: str, level: str) -> Any:
        return rec(CohortOpened(cohort_id=cohort_id, dose_level=level, dose_cells_per_kg=1e6,
                                route="intraperitoneal", capacity=1), 0, f"cohort-{cohort_id}")

    def subject(n: int, *then: Any) -> list:
        sid, hours = f"MSK-{n:04d}", n
        return [rec(SubjectRegistered(subject_id=sid, site_id="MSK"), hours, f"subject-{sid}"),
                *(rec(event, hours + 0.5, f"subject-{sid}") for event in then)]

    return [
        opened("DL1-IP", "DL1"), opened("DL2-IP", "DL2"),
        *subject(1, SubjectEnrolled(subject_id="MSK-0001", cohort_id="DL1-IP", slot=1)),
        *subject(2, SubjectWaitlisted(subject_id="MSK-0002", cohort_id="DL1-IP", position=1)),
        *subject(3, SubjectWaitlisted(subject_id="MSK-0003", cohort_id="DL2-IP", position=2)),
        *subject(4, SubjectWaitlisted(subject_id="MSK-0004", cohort_id="DL1-IP", position=3)),
        *subject(5, SubjectWaitlisted(subject_id="MSK-0005", cohort_id="DL1-IP", position=4),
                 SubjectWithdrawn(subject_id="MSK-0005", reason_code="consent-withdrawn")),
        *(event for n in range(6, 40) for event in subject(
            n, SubjectScreenFailed(subject_id=f"MSK-{n:04d}", stage="screening",
                                   reason_code="investigator-decision"))),
        *subject(40),
    ]


def answer(table: Table, cohort_id: str) -> Any:
    return _document(OCCUPANCY, table, {"cohort_id": cohort_id}, AS_OF, (KeyOrder(), 0))


def test_a_cohorts_answer_is_its_part_of_the_whole_document_without_the_screening_list():
    states = fold(OCCUPANCY, history())
    whole = OCCUPANCY.render(states)
    # everyone not enrolled: 34 screen failures, 3 waiting, 1 withdrawn, 1 only registered
    assert len(whole["screening"]) == 39

    got = answer(Table({key: {"state": s} for key, s in states.items()}), "DL1-IP")

    assert got == OCCUPANCY.select(whole, "DL1-IP")
    assert set(got) == {"projection", "cohorts", "waiting_list"}
    (cohort,) = got["cohorts"]
    assert (cohort["cohort_id"], cohort["enrolled"], cohort["waiting_list"]) == (
        "DL1-IP", ["MSK-0001"], ["MSK-0002", "MSK-0004"])
    assert [(w["position"], w["subject_id"]) for w in got["waiting_list"]] == [
        (1, "MSK-0002"), (2, "MSK-0003"), (3, "MSK-0004")]


def test_a_cohorts_answer_reads_its_cohort_and_the_waiting_subjects_only():
    states = fold(OCCUPANCY, history())
    table = Table({key: {"state": s} for key, s in states.items()})
    whole = OCCUPANCY.render(states)
    # The table's keys in the view's kept order: passed over while the table changes (a new
    # version each time), sorted once and searched when it is quiet (the same version again).
    order = KeyOrder()
    for version in (1, 2, 2, 2):
        table.read.clear()
        got = _document(OCCUPANCY, table, {"cohort_id": "DL2-IP"}, AS_OF, (order, version))

        assert got == OCCUPANCY.select(whole, "DL2-IP")
        assert table.read == {"cohort:DL2-IP", "waiting:MSK-0002", "waiting:MSK-0003",
                              "waiting:MSK-0004"}
    assert order.sorted_at == 2


def test_an_unknown_cohort_has_no_answer():
    states = fold(OCCUPANCY, history())
    assert answer(Table({key: {"state": s} for key, s in states.items()}), "DL9-IP") is None


def test_the_whole_view_pages_the_screening_list_and_its_first_page_carries_the_rest():
    """Decision 85: the view without a filter is a page of the screening list; the first page
    carries the cohorts and the waiting list, read from their own keys, whichever way the
    table's keys are found (kept sorted by the view, or in the table's own order on disk)."""
    states = fold(OCCUPANCY, history())
    table = Table({key: {"state": s} for key, s in states.items()})
    whole = OCCUPANCY.render(states)
    screening = sorted(k for k in states if k.startswith("screening:"))
    ordered = sorted(table)
    for order in ((KeyOrder(), 1), (StoredOrder(lambda start: (k for k in ordered
                                                                 if k >= start)), None)):
        table.read.clear()
        first = _document(OCCUPANCY, table, {"limit": "5"}, AS_OF, order)
        assert table.read == {"cohort:DL1-IP", "cohort:DL2-IP", "waiting:MSK-0002",
                              "waiting:MSK-0003", "waiting:MSK-0004", *screening[:5]}
        pages = [first]
        while pages[-1][NEXT]:
            pages.append(_document(OCCUPANCY, table, {"limit": "5", "cursor": pages[-1][NEXT]},
                                   AS_OF, order))
        assert OCCUPANCY.listing is not None
        assert assemble(OCCUPANCY.listing, pages) == whole
        assert len(pages) == -(-len(screening) // 5)
