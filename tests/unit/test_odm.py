"""The audit trail as CDISC ODM 1.3.2: valid against the official schema (the XSD that the
odmlib package ships), one AuditRecord per event with who and when, signatures with their
meaning, and every OID the file uses defined inside it.

Source: CDISC, Specification for the Operational Data Model (ODM) version 1.3.2 (2013),
sections 2.8-2.11 and 3.1.2-3.1.4; the schema ODM1-3-2.xsd with ODM1-3-2-foundation.xsd."""

from __future__ import annotations

from datetime import UTC, datetime
from importlib.resources import as_file, files
from pathlib import Path

import pytest
from lxml import etree

from audit.odm import MDV_OID, ODM_NS, SYSTEM_LOCATION, to_odm
from audit.trail import Selection, build_trail
from events.envelope import Actor
from tests.unit.test_audit_trail import (
    QA,
    History,
    ae_regraded,
    ae_reported,
    cohort_opened,
    enrolled,
    registered,
    two_subjects,
)

NS = {"odm": ODM_NS}
CREATED = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
SPONSOR = Actor(user_id="sp-kim", role="sponsor")


class _LocalCopies(etree.Resolver):
    """Every schema the ODM XSD imports, by relative path or by URL, from the folder it ships
    in: validation never reaches the network."""

    def __init__(self, folder: Path):
        super().__init__()
        self.folder = folder

    def resolve(self, url, pubid, context):
        local = self.folder / Path(url or "").name
        return self.resolve_filename(str(local), context) if local.is_file() else None


def official_odm_schema() -> etree.XMLSchema:
    """ODM1-3-2.xsd as shipped in the odmlib package, with the schemas it imports."""
    with as_file(files("odmlib") / "schemas" / "odm" / "1.3.2") as folder:
        parser = etree.XMLParser(no_network=True)
        parser.resolvers.add(_LocalCopies(folder))
        return etree.XMLSchema(etree.parse(str(folder / "ODM1-3-2.xsd"), parser))


@pytest.fixture(scope="module")
def odm_schema() -> etree.XMLSchema:
    return official_odm_schema()


def odm(history: History, **selection) -> etree._Element:
    trail = build_trail(history.events, Selection(**selection))
    document = to_odm(trail, trial_id="NCT06623396", created_at=CREATED, source_version="0.1.0")
    return etree.fromstring(document)


def assert_valid(schema: etree.XMLSchema, root: etree._Element) -> None:
    assert schema.validate(root), "\n".join(str(error) for error in schema.error_log)


def signed_subject_history() -> History:
    h, marks = two_subjects()
    h.sign(marks["regraded"], printed_name="A. Ortega", meaning="approval")
    h.sign(marks["released"], signer=QA, printed_name="T. Nguyen", meaning="review")
    h.sign(marks["reported"], signed_hash="e" * 64, printed_name="B. Forger")
    return h


def group_of(root: etree._Element, event_id: str) -> etree._Element:
    (group,) = root.xpath(f"//odm:ItemGroupData[@ItemGroupRepeatKey='{event_id}']", namespaces=NS)
    return group


def test_a_subject_trail_validates_against_the_official_odm_1_3_2_schema(odm_schema):
    root = odm(signed_subject_history(), subject_id="MSK-0007")

    assert_valid(odm_schema, root)
    assert root.tag == f"{{{ODM_NS}}}ODM"
    assert root.get("ODMVersion") == "1.3.2"
    assert root.get("FileType") == "Transactional"
    assert root.get("CreationDateTime") == "2026-11-26T09:00:00Z"
    assert root.get("Granularity") == "SingleSubject"
    assert root.get("FileOID").startswith("trialops/NCT06623396/audit/subject-MSK-0007/")
    assert [child.tag.split("}")[1] for child in root] == ["Study", "AdminData", "ClinicalData"]
    (clinical,) = root.findall("odm:ClinicalData", NS)
    assert (clinical.get("StudyOID"), clinical.get("MetaDataVersionOID")) == (
        "NCT06623396",
        MDV_OID,
    )
    assert [s.get("SubjectKey") for s in clinical.findall("odm:SubjectData", NS)] == ["MSK-0007"]


def test_each_event_has_one_audit_record_with_its_actor_and_recorded_time(odm_schema):
    history = signed_subject_history()
    rows = build_trail(history.events, Selection(subject_id="MSK-0007")).rows
    root = odm(history, subject_id="MSK-0007")

    records = root.findall(".//odm:AuditRecord", NS)

    assert len(records) == len(rows) == 6
    found = {
        record.findtext("odm:SourceID", namespaces=NS): (
            record.find("odm:UserRef", NS).get("UserOID"),
            record.findtext("odm:DateTimeStamp", namespaces=NS),
        )
        for record in records
    }
    assert found == {
        row.event_id: (row.user_id, row.recorded_at.strftime("%Y-%m-%dT%H:%M:%SZ")) for row in rows
    }


def test_a_correction_keeps_the_values_before_and_after_and_gives_its_reason():
    h, marks = two_subjects()
    root = odm(h, subject_id="MSK-0007")

    group = group_of(root, str(marks["regraded"].envelope.event_id))
    values = {i.get("ItemOID"): i.get("Value") for i in group.findall("odm:ItemData", NS)}
    original = group_of(root, str(marks["reported"].envelope.event_id))

    assert group.findtext("odm:AuditRecord/odm:ReasonForChange", namespaces=NS) == (
        "echocardiogram reviewed: grade 2"
    )
    assert values["IT.AdverseEventRegraded.previous.grade"] == "3"
    assert values["IT.AdverseEventRegraded.new.grade"] == "2"
    assert values["IT.AdverseEventRegraded.new.serious_criteria"] == '["hospitalisation"]'
    assert original.find("odm:AuditRecord/odm:ReasonForChange", NS) is None
    assert original.find("odm:ItemData[@ItemOID='IT.AdverseEventReported.grade']", NS).get(
        "Value"
    ) == ("3")


def test_a_signed_event_carries_its_signature_and_a_mismatched_one_only_an_annotation():
    history = signed_subject_history()
    rows = {
        r.event_type: r for r in build_trail(history.events, Selection(subject_id="MSK-0007")).rows
    }
    root = odm(history, subject_id="MSK-0007")

    regraded = group_of(root, rows["AdverseEventRegraded"].event_id)
    signature = regraded.find("odm:Signature", NS)
    released = group_of(root, rows["LotReleased"].event_id).find("odm:Signature", NS)
    forged = group_of(root, rows["AdverseEventReported"].event_id)

    assert signature.find("odm:UserRef", NS).get("UserOID") == "dr-ortega"
    assert signature.find("odm:LocationRef", NS).get("LocationOID") == "MSK"
    assert signature.find("odm:SignatureRef", NS).get("SignatureOID") == "SD.APPROVAL"
    assert signature.findtext("odm:DateTimeStamp", namespaces=NS) == "2026-03-02T09:10:00Z"
    assert released.find("odm:SignatureRef", NS).get("SignatureOID") == "SD.REVIEW"
    assert released.find("odm:LocationRef", NS).get("LocationOID") == SYSTEM_LOCATION
    assert forged.find("odm:Signature", NS) is None
    assert forged.findtext("odm:Annotation/odm:Comment", namespaces=NS).startswith(
        "signature does not match the record"
    )
    users = {u.get("OID"): u for u in root.findall("odm:AdminData/odm:User", NS)}
    assert users["dr-ortega"].findtext("odm:FullName", namespaces=NS) == "A. Ortega"
    assert users["qa-nguyen"].findtext("odm:FullName", namespaces=NS) == "T. Nguyen"
    assert users["dr-ortega"].get("UserType") == "Investigator"
    meanings = {
        d.get("OID"): d.findtext("odm:Meaning", namespaces=NS)
        for d in root.findall("odm:AdminData/odm:SignatureDef", NS)
    }
    assert set(meanings) == {"SD.APPROVAL", "SD.REVIEW"}  # the forged one defines nothing
    assert all(
        d.get("Methodology") == "Electronic"
        for d in root.findall("odm:AdminData/odm:SignatureDef", NS)
    )


def test_every_oid_the_data_uses_is_defined_in_the_file():
    root = odm(signed_subject_history(), subject_id="MSK-0007")

    def defined(path: str) -> set[str]:
        return {e.get("OID") for e in root.findall(path, NS)}

    def used(tag: str, attribute: str) -> set[str]:
        return {e.get(attribute) for e in root.iter(f"{{{ODM_NS}}}{tag}")}

    version = "odm:Study/odm:MetaDataVersion/"
    assert used("UserRef", "UserOID") <= defined("odm:AdminData/odm:User")
    assert used("LocationRef", "LocationOID") | used("SiteRef", "LocationOID") <= defined(
        "odm:AdminData/odm:Location"
    )
    assert used("SignatureRef", "SignatureOID") <= defined("odm:AdminData/odm:SignatureDef")
    assert used("ItemData", "ItemOID") <= defined(version + "odm:ItemDef")
    assert used("ItemGroupData", "ItemGroupOID") <= defined(version + "odm:ItemGroupDef")
    assert used("FormData", "FormOID") <= defined(version + "odm:FormDef")
    assert used("StudyEventData", "StudyEventOID") <= defined(version + "odm:StudyEventDef")
    assert defined("odm:Study") == {"NCT06623396"}


def test_site_staff_act_at_the_subjects_site_and_the_subject_belongs_to_it():
    h = History()
    h.append("subject-MSK-0009", registered(9, site="SITE-02"))
    h.append("subject-MSK-0009", enrolled(9), SPONSOR)
    root = odm(h, subject_id="MSK-0009")

    locations = [
        r.find("odm:LocationRef", NS).get("LocationOID")
        for r in root.findall(".//odm:AuditRecord", NS)
    ]

    assert locations == ["SITE-02", SYSTEM_LOCATION]
    assert root.find(".//odm:SubjectData/odm:SiteRef", NS).get("LocationOID") == "SITE-02"


def test_a_cohort_trail_puts_the_events_without_a_subject_in_reference_data(odm_schema):
    h, _ = two_subjects()
    root = odm(h, cohort_id="DL1-IP")

    assert_valid(odm_schema, root)
    assert [child.tag.split("}")[1] for child in root] == [
        "Study",
        "AdminData",
        "ReferenceData",
        "ClinicalData",
    ]
    (opened,) = root.findall("odm:ReferenceData/odm:ItemGroupData", NS)
    assert opened.get("ItemGroupOID") == "IG.CohortOpened"
    assert opened.get("TransactionType") == "Insert"
    assert root.get("Granularity") is None
    subjects = root.findall("odm:ClinicalData/odm:SubjectData", NS)
    assert [s.get("SubjectKey") for s in subjects] == ["MSK-0007", "MSK-0008"]
    definition = root.find(
        "odm:Study/odm:MetaDataVersion/odm:ItemGroupDef[@OID='IG.CohortOpened']", NS
    )
    assert definition.get("IsReferenceData") == "Yes"


def test_a_second_signature_of_an_event_is_a_further_element_for_the_same_item_group(
    odm_schema,
):
    h = History()
    h.append("subject-MSK-0007", registered(7))
    report = h.append("ae-AE-0007-01", ae_reported(7))
    h.sign(report, meaning="responsibility")
    h.sign(report, signer=SPONSOR, printed_name="S. Kim", meaning="review")
    root = odm(h, subject_id="MSK-0007")

    assert_valid(odm_schema, root)
    groups = root.xpath(
        f"//odm:ItemGroupData[@ItemGroupRepeatKey='{report.envelope.event_id}']", namespaces=NS
    )
    assert len(groups) == 2
    first, second = groups
    assert first.find("odm:Signature/odm:SignatureRef", NS).get("SignatureOID") == (
        "SD.RESPONSIBILITY"
    )
    assert second.get("TransactionType") == "Update"
    assert second.find("odm:ItemData", NS) is None
    assert second.find("odm:Signature/odm:UserRef", NS).get("UserOID") == "sp-kim"


def test_nulls_are_marked_and_control_characters_do_not_break_the_xml(odm_schema):
    h = History()
    h.append("ae-AE-0007-01", ae_reported(7))
    h.append("ae-AE-0007-01", ae_regraded(7, grade=4), reason="bell\x07 in a reason")
    h.append("cohort-DL1-IP", cohort_opened())
    root = odm(h, subject_id="MSK-0007")

    assert_valid(odm_schema, root)
    assert root.findtext(".//odm:ReasonForChange", namespaces=NS) == "bell\ufffd in a reason"
    reported = root.find(".//odm:ItemGroupData[@ItemGroupOID='IG.AdverseEventReported']", NS)
    onset = reported.find("odm:ItemData[@ItemOID='IT.AdverseEventReported.onset_at']", NS)
    assert onset.get("Value") == "2026-03-02T09:00:00Z"
    item_types = {
        d.get("OID"): d.get("DataType")
        for d in root.findall("odm:Study/odm:MetaDataVersion/odm:ItemDef", NS)
    }
    assert item_types["IT.AdverseEventReported.grade"] == "integer"
    assert item_types["IT.AdverseEventReported.expected"] == "boolean"
    assert item_types["IT.OCCURRED_AT"] == "datetime"


def test_a_null_value_is_an_item_marked_is_null():
    h = History()
    h.append("subject-MSK-0007", registered(7))
    h.append(
        "subject-MSK-0007",
        enrolled(7),
        reason=None,
    )
    h.append("cohort-DL1-IP", cohort_opened())  # recommendation_id and departure_reason: None
    root = odm(h, cohort_id="DL1-IP")

    opened = root.find("odm:ReferenceData/odm:ItemGroupData", NS)
    nulls = {i.get("ItemOID") for i in opened.findall("odm:ItemData[@IsNull='Yes']", NS)}

    assert nulls == {
        "IT.CohortOpened.recommendation_id",
        "IT.CohortOpened.departure_reason",
    }
    assert all(i.get("Value") is None for i in opened.findall("odm:ItemData[@IsNull='Yes']", NS))
