"""The audit trail as CDISC ODM 1.3.2 XML (Specification for the Operational Data Model, version
1.3.2, CDISC 2013), written with the standard library.

The mapping, kept as plain as the model allows:

- An event is an entity of its own, inserted once and never changed (a correction is another
  event). So each event is one ``ItemGroupData`` (``ItemGroupOID`` "IG.<event type>",
  ``ItemGroupRepeatKey`` = event id) with one ``AuditRecord``: ``UserRef`` = the actor's user
  id, ``LocationRef``, ``DateTimeStamp`` = recorded time, ``ReasonForChange`` = the envelope's
  reason, ``SourceID`` = event id. Its ``ItemData`` are the envelope's stream, sequence number,
  business time, actor role and hash, then every payload field (nested objects flattened with
  dots, so a correction carries ``previous.grade`` and ``new.grade``; lists as JSON text; a
  null as ``IsNull="Yes"``).
- The file is ``Transactional`` (ODM 1.3.2 section 2.8: a Snapshot "does not show how it got
  to be in that state over time"; an audit trail is exactly that), every entity an ``Insert``.
- A subject's events sit in ``SubjectData`` > ``StudyEventData`` "SE.TRIALOPS" (the event log)
  > ``FormData`` "F.<CONTEXT>", in recorded order. Events that name no subject (a cohort opened)
  are trial-level facts: they go to ``ReferenceData``.
- A valid electronic signature is the item group's ``Signature`` (``UserRef``, ``LocationRef``,
  ``SignatureRef`` to a ``SignatureDef`` per meaning, ``DateTimeStamp`` = signed time). ODM
  allows one per element: a second signature of the same event is a further ``ItemGroupData``
  for the same entity (``TransactionType="Update"``, no items) carrying it. A signature that does
  not match its record is not presented as a signature: it becomes an ``Annotation``.
- The envelope does not say where an action was taken. ``LocationRef`` is the subject's site
  (from its ``SubjectRegistered``) for site staff (investigator, site coordinator), else
  "TRIALOPS", the system of record.
- ``Study`` carries a ``MetaDataVersion`` defining every event, form, item group and item used,
  and ``AdminData`` every user, location and signature meaning referenced, so each OID in the
  file resolves inside it (section 2.11).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import orjson

from audit.trail import SignatureMark, Trail, TrailRow, iso

ODM_NS = "http://www.cdisc.org/ns/odm/v1.3"
MDV_OID = "MDV.TRIALOPS.1"
STUDY_EVENT_OID = "SE.TRIALOPS"
SYSTEM_LOCATION = "TRIALOPS"
SITE_ROLES = frozenset({"investigator", "site_coordinator"})
USER_TYPES = {
    "investigator": "Investigator",
    "site_coordinator": "Investigator",
    "sponsor": "Sponsor",
    "safety_officer": "Sponsor",
}
MEANINGS = {
    "review": "Reviewed: the signer has reviewed this record",
    "approval": "Approved: the signer approves this record",
    "responsibility": "Responsibility: the signer takes responsibility for this record",
}
LEGAL_REASON = (
    "Electronic signature under 21 CFR Part 11 (11.50, 11.100, 11.200): the signer "
    "re-authenticated with their own credentials; the signature is linked to the record by "
    "its SHA-256 hash and is the legally binding equivalent of a handwritten signature."
)
_ENVELOPE_ITEMS = (
    ("IT.STREAM_ID", "stream_id", "text"),
    ("IT.STREAM_SEQ", "stream_seq", "integer"),
    ("IT.OCCURRED_AT", "occurred_at", "datetime"),
    ("IT.ACTOR_ROLE", "actor_role", "text"),
    ("IT.EVENT_HASH", "hash", "text"),
)
_ENVELOPE_OIDS = frozenset(oid for oid, _name, _type in _ENVELOPE_ITEMS)
# XML 1.0 refuses most control characters, even escaped; a free-text reason might carry one.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")

ET.register_namespace("", ODM_NS)


def to_odm(trail: Trail, *, trial_id: str, created_at: datetime, source_version: str = "") -> bytes:
    """ODM 1.3.2 XML (UTF-8, with declaration) of ``trail``. ``created_at`` must come after
    every time stamp in the trail (section 2.10)."""
    doc = _Document(trail, trial_id)
    attributes = {
        "FileType": "Transactional",
        "FileOID": _file_oid(trail, trial_id, created_at),
        "CreationDateTime": iso(created_at),
        "ODMVersion": "1.3.2",
        "Description": f"trialops audit trail of {trail.selection.describe()}",
        "Originator": "trialops",
        "SourceSystem": "trialops",
    }
    if source_version:
        attributes["SourceSystemVersion"] = source_version
    if trail.selection.subject_id is not None:
        attributes["Granularity"] = "SingleSubject"
    root = _el(None, "ODM", **attributes)
    reference = doc.reference_data()
    clinical = doc.clinical_data()
    root.append(doc.study())
    root.append(doc.admin_data())
    if reference is not None:
        root.append(reference)
    root.append(clinical)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


class _Document:
    """Builds the data first, collecting every definition it references, then the definitions."""

    def __init__(self, trail: Trail, trial_id: str):
        self.trail = trail
        self.trial_id = trial_id
        self.forms: dict[str, list[str]] = {}  # form OID -> item group OIDs
        self.groups: dict[str, list[str]] = {}  # item group OID -> item OIDs
        self.reference_groups: set[str] = set()
        self.items: dict[str, tuple[str, set[str]]] = {
            oid: (name, {data_type}) for oid, name, data_type in _ENVELOPE_ITEMS
        }
        self.roles: dict[str, set[str]] = defaultdict(set)  # user id -> roles acted in
        self.printed_names: dict[str, str] = {}
        self.locations: set[str] = set()
        self.meanings: set[str] = set()

    # ------------------------------------------------------------ data

    def clinical_data(self) -> ET.Element:
        clinical = _el(None, "ClinicalData", StudyOID=self.trial_id, MetaDataVersionOID=MDV_OID)
        by_subject: dict[str, list[TrailRow]] = defaultdict(list)
        for row in self.trail.rows:
            if row.subject_id is not None:
                by_subject[row.subject_id].append(row)
        for subject_id, rows in by_subject.items():
            subject = _el(clinical, "SubjectData", SubjectKey=subject_id, TransactionType="Insert")
            site = self.trail.sites.get(subject_id)
            if site is not None:
                self.locations.add(site)
                _el(subject, "SiteRef", LocationOID=site)
            event = _el(subject, "StudyEventData", StudyEventOID=STUDY_EVENT_OID)
            by_form: dict[str, list[TrailRow]] = defaultdict(list)
            for row in rows:
                by_form[f"F.{row.context.upper()}"].append(row)
            for form_oid, form_rows in by_form.items():
                form = _el(event, "FormData", FormOID=form_oid)
                for row in form_rows:
                    group_oid = self._item_group(form, row, reference=False)
                    groups = self.forms.setdefault(form_oid, [])
                    if group_oid not in groups:
                        groups.append(group_oid)
        return clinical

    def reference_data(self) -> ET.Element | None:
        rows = [row for row in self.trail.rows if row.subject_id is None]
        if not rows:
            return None
        reference = _el(None, "ReferenceData", StudyOID=self.trial_id, MetaDataVersionOID=MDV_OID)
        for row in rows:
            self.reference_groups.add(self._item_group(reference, row, reference=True))
        return reference

    def _item_group(self, parent: ET.Element, row: TrailRow, *, reference: bool) -> str:
        group_oid = f"IG.{row.event_type}"
        key = {"ItemGroupOID": group_oid, "ItemGroupRepeatKey": row.event_id}
        # A top-level data element must state its transaction type (section 2.9).
        group = _el(
            parent, "ItemGroupData", **key, **({"TransactionType": "Insert"} if reference else {})
        )
        audit = _el(group, "AuditRecord")
        _el(audit, "UserRef", UserOID=self._user(row.user_id, row.role))
        _el(audit, "LocationRef", LocationOID=self._location(row.role, row.subject_id))
        _el(audit, "DateTimeStamp", text=iso(row.recorded_at))
        if row.reason:
            _el(audit, "ReasonForChange", text=row.reason)
        _el(audit, "SourceID", text=row.event_id)
        signatures = [mark for mark in row.signatures if mark.valid]
        if signatures:
            self._signature(group, signatures[0], row.subject_id)
        for number, flag in enumerate(row.flags, start=1):
            _el(_el(group, "Annotation", SeqNum=str(number)), "Comment", text=flag)
        item_oids = self.groups.setdefault(group_oid, [])
        for item_oid, name, value in _items(row):
            if item_oid not in item_oids:
                item_oids.append(item_oid)
            self._define_item(item_oid, name, value)
            if value is None:
                _el(group, "ItemData", ItemOID=item_oid, IsNull="Yes")
            else:
                _el(group, "ItemData", ItemOID=item_oid, Value=_value(value))
        for mark in signatures[1:]:
            again = _el(parent, "ItemGroupData", **key, TransactionType="Update")
            self._signature(again, mark, row.subject_id)
        return group_oid

    def _signature(self, parent: ET.Element, mark: SignatureMark, subject_id: str | None) -> None:
        signature = _el(parent, "Signature")
        _el(signature, "UserRef", UserOID=self._user(mark.signer_id, mark.role, mark.printed_name))
        _el(signature, "LocationRef", LocationOID=self._location(mark.role, subject_id))
        self.meanings.add(mark.meaning)
        _el(signature, "SignatureRef", SignatureOID=_signature_oid(mark.meaning))
        _el(signature, "DateTimeStamp", text=iso(mark.signed_at))

    def _user(self, user_id: str, role: str, printed_name: str | None = None) -> str:
        self.roles[user_id].add(role)
        if printed_name:
            self.printed_names[user_id] = printed_name
        return user_id

    def _location(self, role: str, subject_id: str | None) -> str:
        site = self.trail.sites.get(subject_id) if subject_id is not None else None
        location = site if site is not None and role in SITE_ROLES else SYSTEM_LOCATION
        self.locations.add(location)
        return location

    def _define_item(self, oid: str, name: str, value: Any) -> None:
        if oid in _ENVELOPE_OIDS:
            return  # their types are fixed
        _name, types = self.items.setdefault(oid, (name, set()))
        if value is not None:
            types.add(_data_type(value))

    # ------------------------------------------------------------ definitions

    def study(self) -> ET.Element:
        study = _el(None, "Study", OID=self.trial_id)
        variables = _el(study, "GlobalVariables")
        _el(variables, "StudyName", text=self.trial_id)
        _el(variables, "StudyDescription", text=f"Trial {self.trial_id}: the trialops event log")
        _el(variables, "ProtocolName", text=self.trial_id)
        version = _el(
            study,
            "MetaDataVersion",
            OID=MDV_OID,
            Name="trialops event log",
            Description="One item group per event type; one item per envelope or payload field",
        )
        if self.forms:
            protocol = _el(version, "Protocol")
            _el(protocol, "StudyEventRef", StudyEventOID=STUDY_EVENT_OID, Mandatory="No")
            event = _el(
                version,
                "StudyEventDef",
                OID=STUDY_EVENT_OID,
                Name="Event log",
                Repeating="No",
                Type="Common",
            )
            for form_oid in self.forms:
                _el(event, "FormRef", FormOID=form_oid, Mandatory="No")
        for form_oid, group_oids in self.forms.items():
            context = form_oid.removeprefix("F.").lower()
            form = _el(version, "FormDef", OID=form_oid, Name=f"{context} events", Repeating="No")
            for group_oid in group_oids:
                _el(form, "ItemGroupRef", ItemGroupOID=group_oid, Mandatory="No")
        for group_oid, item_oids in self.groups.items():
            extra = {"IsReferenceData": "Yes"} if group_oid in self.reference_groups else {}
            name = group_oid.removeprefix("IG.")
            group = _el(version, "ItemGroupDef", OID=group_oid, Name=name, Repeating="Yes", **extra)
            for item_oid in item_oids:
                _el(group, "ItemRef", ItemOID=item_oid, Mandatory="No")
        used = {oid for oids in self.groups.values() for oid in oids}
        for item_oid, (name, types) in self.items.items():
            if item_oid in used:
                data_type = types.pop() if len(types) == 1 else "text"
                _el(version, "ItemDef", OID=item_oid, Name=name, DataType=data_type)
        return study

    def admin_data(self) -> ET.Element:
        admin = _el(None, "AdminData", StudyOID=self.trial_id)
        for user_id in sorted(self.roles):
            roles = sorted(self.roles[user_id])
            types = {USER_TYPES.get(role, "Other") for role in roles}
            extra = {"UserType": types.pop()} if len(types) == 1 else {}
            element = _el(admin, "User", OID=user_id, **extra)
            _el(element, "LoginName", text=user_id)
            _el(element, "DisplayName", text=f"{user_id} ({', '.join(roles)})")
            if user_id in self.printed_names:
                _el(element, "FullName", text=self.printed_names[user_id])
        effective = min((row.recorded_at for row in self.trail.rows), default=None)
        for location in sorted(self.locations):
            kind = "Other" if location == SYSTEM_LOCATION else "Site"
            element = _el(admin, "Location", OID=location, Name=location, LocationType=kind)
            _el(
                element,
                "MetaDataVersionRef",
                StudyOID=self.trial_id,
                MetaDataVersionOID=MDV_OID,
                EffectiveDate=(effective.date().isoformat() if effective else "1970-01-01"),
            )
        for meaning in sorted(self.meanings):
            element = _el(
                admin, "SignatureDef", OID=_signature_oid(meaning), Methodology="Electronic"
            )
            _el(element, "Meaning", text=MEANINGS.get(meaning, meaning))
            _el(element, "LegalReason", text=LEGAL_REASON)
        return admin


def _items(row: TrailRow) -> list[tuple[str, str, Any]]:
    """(item OID, name, value) of the envelope's fields, then of the payload's (flattened)."""
    envelope = {
        "IT.STREAM_ID": row.stream_id,
        "IT.STREAM_SEQ": row.stream_seq,
        "IT.OCCURRED_AT": iso(row.occurred_at),
        "IT.ACTOR_ROLE": row.role,
        "IT.EVENT_HASH": row.hash,
    }
    items = [(oid, name, envelope[oid]) for oid, name, _type in _ENVELOPE_ITEMS]
    for path, value in _flatten(row.payload):
        items.append((f"IT.{row.event_type}.{path}", path, value))
    return items


def _flatten(document: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    flat: list[tuple[str, Any]] = []
    for name, value in document.items():
        if isinstance(value, dict) and value:
            flat += _flatten(value, f"{prefix}{name}.")
        else:
            flat.append((f"{prefix}{name}", value))
    return flat


def _data_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "double"
    return "text"


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def _signature_oid(meaning: str) -> str:
    return f"SD.{meaning.upper()}"


def _file_oid(trail: Trail, trial_id: str, created_at: datetime) -> str:
    keys = "/".join(f"{name.removesuffix('_id')}-{v}" for name, v in trail.selection.keys().items())
    stamp = created_at.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return f"trialops/{trial_id}/audit/{keys}/{stamp}"


def _el(
    parent: ET.Element | None, tag: str, text: str | None = None, **attributes: str
) -> ET.Element:
    name = f"{{{ODM_NS}}}{tag}"
    clean = {key: _NOT_XML.sub("\ufffd", value) for key, value in attributes.items()}
    element = ET.Element(name, clean) if parent is None else ET.SubElement(parent, name, clean)
    if text is not None:
        element.text = _NOT_XML.sub("\ufffd", text)
    return element
