"""The audit trail built from recorded events, without a broker: what a subject, a lot or a
cohort trail holds; the recorded-time window; corrections next to the originals they correct;
signatures on the records they sign; and the table, CSV and JSON renderings.

Sources: 21 CFR 11.10(e) (time-stamped audit trails; changes shall not obscure previously
recorded information) and 21 CFR 11.50 (signature manifestation: printed name, date and time,
meaning)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import orjson
import pytest
from typer.testing import CliRunner

from audit.export import CSV_COLUMNS as EXPORT_COLUMNS
from audit.export import ExportStats, csv_row, envelope_from_csv, jsonl_line, select
from audit.trail import (
    CSV_COLUMNS,
    SIGNATURE_MISMATCH,
    Selection,
    SelectionError,
    build_trail,
    to_csv,
    to_json,
    to_table,
)
from events.dosing import InfusionRecorded
from events.enrollment import CohortOpened, SubjectEnrolled, SubjectRegistered
from events.envelope import GENESIS_HASH, Actor, seal, to_bytes
from events.manufacturing import LotReleased
from events.registry import EventPayload, Recorded, read
from events.safety import AdverseEventRegraded, AdverseEventReported, Assessment
from events.signatures import Meaning, RecordSigned
from trialops.cli_audit import audit_app, export_app

TRIAL = "NCT06623396"
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
INVESTIGATOR = Actor(user_id="dr-ortega", role="investigator")
COORDINATOR = Actor(user_id="sc-lee", role="site_coordinator")
QA = Actor(user_id="qa-nguyen", role="manufacturing_qa")


class History:
    """Sealed, hash-chained events in memory, one minute apart, as the services append them."""

    def __init__(self) -> None:
        self.heads: dict[str, tuple[int, str]] = {}
        self.clock = START
        self.events: list[Recorded] = []

    def append(
        self, stream_id: str, payload: EventPayload, /, actor: Actor = INVESTIGATOR, **overrides
    ) -> Recorded:
        seq, prev = self.heads.get(stream_id, (0, GENESIS_HASH))
        self.clock += timedelta(minutes=1)
        fields = {
            "event_id": uuid4(),
            "event_type": payload.event_type,
            "schema_version": payload.schema_version,
            "trial_id": TRIAL,
            "stream_id": stream_id,
            "stream_seq": seq + 1,
            "occurred_at": self.clock,
            "recorded_at": self.clock,
            "actor": actor,
            "reason": None,
            "correlation_id": uuid4(),
            "causation_id": None,
            "prev_hash": prev,
            "payload": payload.model_dump(mode="json"),
        }
        envelope = seal(**{**fields, **overrides})
        self.heads[stream_id] = (envelope.stream_seq, envelope.hash)
        recorded = read(envelope)
        self.events.append(recorded)
        return recorded

    def sign(
        self,
        signed: Recorded,
        *,
        signer: Actor = INVESTIGATOR,
        printed_name: str = "A. Ortega",
        meaning: Meaning = "approval",
        signed_hash: str | None = None,
    ) -> Recorded:
        payload = RecordSigned(
            signed_event_id=signed.envelope.event_id,
            signed_event_type=signed.envelope.event_type,
            signed_hash=signed_hash or signed.envelope.hash,
            signer_id=signer.user_id,
            printed_name=printed_name,
            role=signer.role,
            meaning=meaning,
            signed_at=self.clock + timedelta(minutes=1),
        )
        return self.append(signed.envelope.stream_id, payload, signer)


def registered(n: int, site: str = "MSK") -> SubjectRegistered:
    return SubjectRegistered(subject_id=f"MSK-{n:04d}", site_id=site)


def enrolled(n: int, cohort: str = "DL1-IP", slot: int = 1) -> SubjectEnrolled:
    return SubjectEnrolled(subject_id=f"MSK-{n:04d}", cohort_id=cohort, slot=slot)


def cohort_opened(cohort: str = "DL1-IP") -> CohortOpened:
    return CohortOpened(
        cohort_id=cohort,
        dose_level=cohort.split("-")[0],
        dose_cells_per_kg=1e6,
        route="intraperitoneal",
        capacity=3,
    )


def lot_released(n: int) -> LotReleased:
    return LotReleased(
        lot_id=f"LOT-{n:04d}-A",
        subject_id=f"MSK-{n:04d}",
        coi_id=f"COI-MSK-{n:04d}-01",
        total_car_t_cells=2.1e9,
        conditional=False,
    )


def infused(n: int, cohort: str = "DL1-IP") -> InfusionRecorded:
    return InfusionRecorded(
        subject_id=f"MSK-{n:04d}",
        lot_id=f"LOT-{n:04d}-A",
        cohort_id=cohort,
        dose_level="DL1",
        target_cells_per_kg=1e6,
        weight_kg=70.0,
        cells_infused=7.0e7,
        received_cells_per_kg=1e6,
        counted_dose_level="DL1",
        route="intraperitoneal",
        infused_at=START + timedelta(days=1),
    )


ASSESSED = Assessment(
    grade=3, serious_criteria=("hospitalisation",), attribution="probable", expected=False
)


def ae_reported(n: int) -> AdverseEventReported:
    return AdverseEventReported(
        ae_id=f"AE-{n:04d}-01",
        subject_id=f"MSK-{n:04d}",
        term="Pericarditis",
        grade=ASSESSED.grade,
        onset_at=START,
        serious_criteria=ASSESSED.serious_criteria,
        attribution=ASSESSED.attribution,
        expected=ASSESSED.expected,
        sponsor_received_at=START,
        special_interest="serositis",
        haematological=False,
        conditioning_lab_effect=False,
        ctcae_version="5.0",
    )


def ae_regraded(n: int, **new) -> AdverseEventRegraded:
    return AdverseEventRegraded(
        ae_id=f"AE-{n:04d}-01",
        subject_id=f"MSK-{n:04d}",
        effective_at=START,
        previous=ASSESSED,
        new=ASSESSED.model_copy(update=new),
    )


def two_subjects() -> tuple[History, dict[str, Recorded]]:
    """Subject 7 registered, enrolled into DL1-IP, its lot released, infused, an AE reported
    and regraded; subject 8 registered and enrolled into the same cohort."""
    h = History()
    marks = {"opened": h.append("cohort-DL1-IP", cohort_opened())}
    marks["registered"] = h.append("subject-MSK-0007", registered(7))
    h.append("subject-MSK-0008", registered(8, site="SITE-02"))
    marks["enrolled"] = h.append("subject-MSK-0007", enrolled(7))
    h.append("subject-MSK-0008", enrolled(8, slot=2))
    marks["released"] = h.append("lot-LOT-0007-A", lot_released(7), QA)
    marks["infused"] = h.append("subject-MSK-0007", infused(7))
    marks["reported"] = h.append("ae-AE-0007-01", ae_reported(7))
    marks["regraded"] = h.append(
        "ae-AE-0007-01", ae_regraded(7, grade=2), reason="echocardiogram reviewed: grade 2"
    )
    return h, marks


# ---------------------------------------------------------------- selection


def test_a_subject_trail_holds_every_event_naming_the_subject_across_contexts_in_order():
    h, _ = two_subjects()

    trail = build_trail(h.events, Selection(subject_id="MSK-0007"))

    assert [(r.context, r.event_type) for r in trail.rows] == [
        ("enrollment", "SubjectRegistered"),
        ("enrollment", "SubjectEnrolled"),
        ("manufacturing", "LotReleased"),
        ("dosing", "InfusionRecorded"),
        ("safety", "AdverseEventReported"),
        ("safety", "AdverseEventRegraded"),
    ]
    assert trail.sites == {"MSK-0007": "MSK", "MSK-0008": "SITE-02"}


def test_a_lot_trail_holds_the_events_naming_the_lot():
    h, marks = two_subjects()

    trail = build_trail(h.events, Selection(lot_id="LOT-0007-A"))

    assert [r.event_id for r in trail.rows] == [
        str(marks["released"].envelope.event_id),
        str(marks["infused"].envelope.event_id),
    ]
    assert trail.rows[0].user_id == "qa-nguyen" and trail.rows[0].role == "manufacturing_qa"


def test_a_cohort_trail_holds_its_opening_and_every_subject_enrolled_into_or_treated_in_it():
    h, _ = two_subjects()

    trail = build_trail(h.events, Selection(cohort_id="DL1-IP"))

    assert [(r.event_type, r.subject_id) for r in trail.rows] == [
        ("CohortOpened", None),
        ("SubjectEnrolled", "MSK-0007"),
        ("SubjectEnrolled", "MSK-0008"),
        ("InfusionRecorded", "MSK-0007"),
    ]


def test_every_id_given_must_match():
    h, _ = two_subjects()

    trail = build_trail(h.events, Selection(subject_id="MSK-0008", cohort_id="DL1-IP"))

    assert [r.event_type for r in trail.rows] == ["SubjectEnrolled"]


def test_the_window_is_on_recorded_time_and_includes_both_ends():
    h, marks = two_subjects()
    enrolled_at = marks["enrolled"].envelope.recorded_at
    infused_at = marks["infused"].envelope.recorded_at

    trail = build_trail(
        h.events, Selection(subject_id="MSK-0007", start=enrolled_at, end=infused_at)
    )

    assert [r.event_type for r in trail.rows] == [
        "SubjectEnrolled",
        "LotReleased",
        "InfusionRecorded",
    ]


def test_an_event_recorded_late_is_in_the_window_of_its_recording_not_of_its_occurrence():
    h = History()
    h.append("subject-MSK-0007", registered(7))
    late = h.append(
        "subject-MSK-0007",
        enrolled(7),
        occurred_at=START - timedelta(days=3),  # happened before, entered now
    )
    window = Selection(subject_id="MSK-0007", start=START - timedelta(days=4), end=START)

    assert build_trail(h.events, window).rows == []
    rows = build_trail(h.events, Selection(subject_id="MSK-0007")).rows
    assert rows[1].occurred_at == START - timedelta(days=3)
    assert rows[1].recorded_at == late.envelope.recorded_at


def test_events_given_out_of_order_come_out_in_recorded_order():
    h, _ = two_subjects()

    trail = build_trail(reversed(h.events), Selection(subject_id="MSK-0007"))

    times = [r.recorded_at for r in trail.rows]
    assert times == sorted(times) and len(times) == 6


@pytest.mark.parametrize(
    "selection",
    [
        {},
        {"start": START},
        {"subject_id": "MSK-0007", "start": START, "end": START - timedelta(seconds=1)},
        {"subject_id": "MSK-0007", "start": datetime(2026, 3, 2, 9, 0)},
    ],
    ids=["nothing-selected", "only-a-window", "window-ends-first", "naive-time"],
)
def test_a_selection_that_cannot_be_made_is_refused(selection):
    with pytest.raises(SelectionError):
        Selection(**selection)


# ---------------------------------------------------------------- corrections


def test_a_regrade_lists_what_it_changed_and_the_original_report_is_kept_as_recorded():
    h, marks = two_subjects()

    rows = build_trail(h.events, Selection(subject_id="MSK-0007")).rows
    original, correction = rows[-2], rows[-1]

    assert original.event_id == str(marks["reported"].envelope.event_id)
    assert original.payload["grade"] == 3 and original.changes is None
    assert "grade=3" in original.summary
    assert correction.changes == {"grade": {"from": 3, "to": 2}}
    assert correction.reason == "echocardiogram reviewed: grade 2"
    assert "grade 3 -> 2" in correction.summary
    assert correction.payload["previous"]["grade"] == 3  # the full correction is still there


def test_a_regrade_of_several_values_lists_each_change_and_only_those():
    h = History()
    h.append("ae-AE-0007-01", ae_reported(7))
    h.append(
        "ae-AE-0007-01",
        ae_regraded(7, attribution="unlikely", serious_criteria=()),
        reason="reassessed",
    )

    correction = build_trail(h.events, Selection(subject_id="MSK-0007")).rows[-1]

    assert correction.changes == {
        "serious_criteria": {"from": ["hospitalisation"], "to": []},
        "attribution": {"from": "probable", "to": "unlikely"},
    }


# ---------------------------------------------------------------- signatures


def test_a_signature_is_shown_on_the_record_it_signs_and_is_not_a_row_of_its_own():
    h, marks = two_subjects()
    h.sign(marks["regraded"], printed_name="A. Ortega", meaning="approval")

    rows = build_trail(h.events, Selection(subject_id="MSK-0007")).rows

    assert "RecordSigned" not in {r.event_type for r in rows}
    signed = rows[-1]
    assert [m.as_dict() | {"signature_event_id": "-"} for m in signed.signatures] == [
        {
            "printed_name": "A. Ortega",
            "signer_id": "dr-ortega",
            "role": "investigator",
            "meaning": "approval",
            "signed_at": "2026-03-02T09:10:00Z",
            "signature_event_id": "-",
            "valid": True,
            "problem": None,
        }
    ]
    assert signed.flags == ()
    assert all(not r.signatures for r in rows[:-1])


def test_a_signature_whose_hash_is_not_the_records_is_flagged():
    h, marks = two_subjects()
    h.sign(marks["reported"], signed_hash="f" * 64)

    rows = build_trail(h.events, Selection(subject_id="MSK-0007")).rows
    reported = next(r for r in rows if r.event_type == "AdverseEventReported")

    assert reported.signatures[0].valid is False
    assert len(reported.flags) == 1
    assert reported.flags[0].startswith(SIGNATURE_MISMATCH)


def test_a_signature_recorded_after_the_window_is_not_shown():
    h, marks = two_subjects()
    h.sign(marks["regraded"])

    window = Selection(subject_id="MSK-0007", end=marks["regraded"].envelope.recorded_at)
    rows = build_trail(h.events, window).rows

    assert rows[-1].event_type == "AdverseEventRegraded" and rows[-1].signatures == ()


def test_a_signature_of_a_record_missing_from_the_log_is_reported():
    h, marks = two_subjects()
    signature = h.sign(marks["regraded"])
    without_the_record = [r for r in h.events if r is not marks["regraded"]]

    trail = build_trail(without_the_record, Selection(subject_id="MSK-0007"))

    assert len(trail.problems) == 1
    assert str(signature.envelope.event_id) in trail.problems[0]
    assert "not in the log" in trail.problems[0]


# ---------------------------------------------------------------- renderings


def signed_history() -> list:
    h, marks = two_subjects()
    h.sign(marks["regraded"], printed_name="A. Ortega")
    h.sign(marks["reported"], signed_hash="e" * 64, printed_name="B. Forger")
    return build_trail(h.events, Selection(subject_id="MSK-0007")).rows


def test_csv_has_one_line_per_event_with_changes_signatures_and_flags_as_json():
    rows = signed_history()

    lines = list(csv.DictReader(io.StringIO(to_csv(rows))))

    assert tuple(lines[0]) == CSV_COLUMNS
    assert len(lines) == len(rows) == 6
    registered_line, reported_line, regraded_line = lines[0], lines[-2], lines[-1]
    assert registered_line["changes"] == registered_line["signatures"] == ""
    assert registered_line["reason"] == ""
    assert orjson.loads(regraded_line["changes"]) == {"grade": {"from": 3, "to": 2}}
    assert orjson.loads(regraded_line["signatures"])[0]["printed_name"] == "A. Ortega"
    assert regraded_line["reason"] == "echocardiogram reviewed: grade 2"
    assert orjson.loads(reported_line["flags"])[0].startswith(SIGNATURE_MISMATCH)
    assert regraded_line["stream_seq"] == "2" and regraded_line["user_id"] == "dr-ortega"


def test_json_is_a_list_of_rows_with_the_full_payload():
    rows = signed_history()

    document = orjson.loads(to_json(rows))

    assert isinstance(document, list) and len(document) == 6
    last = document[-1]
    assert last["event_type"] == "AdverseEventRegraded"
    assert last["changes"] == {"grade": {"from": 3, "to": 2}}
    assert last["signatures"][0]["meaning"] == "approval"
    assert last["payload"]["new"]["grade"] == 2
    assert last["recorded_at"] == "2026-03-02T09:09:00Z"
    assert document[-2]["flags"][0].startswith(SIGNATURE_MISMATCH)


def test_the_table_shows_a_line_per_event_and_below_it_changes_signatures_and_flags():
    rows = signed_history()

    text = to_table(rows)
    lines = text.splitlines()

    assert lines[0].split()[:4] == ["RECORDED", "(UTC)", "OCCURRED", "(UTC)"]
    assert lines[1].startswith("2026-03-02 09:02:00  2026-03-02 09:02:00  enrollment")
    assert "changed grade: 3 -> 2" in text
    assert "signed by A. Ortega (dr-ortega, investigator), meaning approval" in text
    assert f"! {SIGNATURE_MISMATCH}" in text
    assert to_table([]).splitlines()[-1] == "(no events)"


# ---------------------------------------------------------------- export (pure part)


def test_a_csv_export_line_rebuilds_the_envelope_and_its_hash_verifies():
    _history, marks = two_subjects()
    envelope = marks["regraded"].envelope

    line = dict(zip(EXPORT_COLUMNS, csv_row(envelope), strict=True))

    rebuilt = envelope_from_csv(line)
    assert rebuilt == envelope and rebuilt.hash_is_valid()


def test_a_subject_export_holds_its_events_and_their_signatures_and_skips_the_unreadable():
    h, marks = two_subjects()
    h.sign(marks["registered"])
    h.sign(marks["opened"])  # a cohort's signature: not the subject's
    wire = [(f"t@0:{n}", to_bytes(r.envelope)) for n, r in enumerate(h.events)]
    wire.insert(3, ("t@0:poison", b"\x00not an event"))
    stats = ExportStats()

    selected = list(select(wire, stats, subject_id="MSK-0007"))

    types = [envelope.event_type for _value, envelope in selected]
    assert types == [
        "SubjectRegistered",
        "SubjectEnrolled",
        "LotReleased",
        "InfusionRecorded",
        "AdverseEventReported",
        "AdverseEventRegraded",
        "RecordSigned",
    ]
    assert (stats.read, stats.exported, stats.unreadable) == (
        12,
        7,
        ["t@0:poison: JSONDecodeError"],
    )
    assert all(jsonl_line(value, env) == value + b"\n" for value, env in selected)


def test_a_long_export_reports_its_progress_every_10000_events():
    seen: list[int] = []
    wire = [(f"t@0:{n}", b"not an event") for n in range(25_000)]

    list(select(wire, ExportStats(), progress=lambda stats: seen.append(stats.read)))

    assert seen == [10_000, 20_000]


# ---------------------------------------------------------------- command line (no broker)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["trail"], "choose what to audit: --subject ID, --lot ID, --cohort ID or --user ID"),
        (["trail", "--subject", "MSK-0007", "--from", "2026-03-02T09:00"], "has no time zone"),
        (["trail", "--lot", "LOT-0007-A", "--to", "yesterday"], "is not an ISO 8601 time"),
        (
            [
                "trail",
                "--cohort",
                "DL1-IP",
                "--from",
                "2026-03-03T00:00Z",
                "--to",
                "2026-03-02T00:00Z",
            ],
            "is after --to",
        ),
    ],
    ids=["no-selection", "naive-time", "not-a-time", "window-ends-first"],
)
def test_bad_trail_arguments_exit_2_with_a_message(arguments, message):
    result = CliRunner().invoke(audit_app, arguments)

    assert result.exit_code == 2
    assert message in result.stderr


def test_export_refuses_an_unknown_format():
    result = CliRunner().invoke(export_app, ["--format", "xml"])

    assert result.exit_code == 2


# ---------------------------------------------------------------- access (ICH E6(R3) 4.2.2)


def test_a_user_trail_shows_what_they_recorded_and_every_change_to_their_access():
    from events.access import RoleGranted, RoleRevoked, UserAdded

    admin = Actor(user_id="it-admin", role="administrator")
    hashed = "scrypt$16384$8$1$" + "a" * 32 + "$" + "b" * 64
    h = History()
    h.append("user-sc-lee", UserAdded(user_id="sc-lee", role="site_coordinator",
                                      token_hash=hashed), actor=admin)
    h.append("subject-MSK-0009", SubjectRegistered(subject_id="MSK-0009", site_id="MSK"),
             actor=COORDINATOR)
    h.append("subject-MSK-0010", SubjectRegistered(subject_id="MSK-0010", site_id="MSK"),
             actor=INVESTIGATOR)
    h.append("user-sc-lee", RoleGranted(user_id="sc-lee", role="investigator",
                                        previous_role="site_coordinator"), actor=admin)
    h.append("user-sc-lee", RoleRevoked(user_id="sc-lee", role="investigator"), actor=admin)

    rows = build_trail(h.events, Selection(user_id="sc-lee")).rows

    assert [r.event_type for r in rows] == [
        "UserAdded", "SubjectRegistered", "RoleGranted", "RoleRevoked"
    ]
    assert [r.user_id for r in rows] == ["it-admin", "sc-lee", "it-admin", "it-admin"]
    assert hashed not in to_table(rows) and hashed.encode() not in to_json(rows)
