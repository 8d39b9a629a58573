"""A packet as HTML (Jinja2, templates shipped in ``audit/reports/templates``) and as a PDF
(WeasyPrint). The figures' event ids become numbered notes at the end of the document."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from audit.reports.escalation_meeting import EscalationMeeting
from audit.reports.facts import ATTRIBUTIONS, GRADES
from audit.reports.safety_review import SafetyReview

Report = EscalationMeeting | SafetyReview


class Notes:
    """The event ids behind the figures, numbered in the order the figures are rendered; the
    same set of ids gets the same number."""

    def __init__(self) -> None:
        self.items: list[tuple[str, ...]] = []

    def note(self, events: Iterable[str]) -> int | None:
        ids = tuple(events)
        if not ids:
            return None
        if ids not in self.items:
            self.items.append(ids)
        return self.items.index(ids) + 1


def html(report: Report, generated_at: str) -> str:
    """The packet's HTML. ``generated_at`` is printed as given (the builder reads no clock)."""
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    environment = Environment(
        loader=PackageLoader("audit.reports", "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    notes = Notes()
    context: dict[str, Any] = {
        "report": report,
        "generated_at": generated_at,
        "note": notes.note,
        "notes": notes,
        "grades": GRADES,
        "attributions": ATTRIBUTIONS,
    }
    return environment.get_template(report.template).render(context)


def write_pdf(report: Report, path: Path, generated_at: str) -> int:
    """Render the packet to a PDF at ``path``; the number of pages."""
    from weasyprint import HTML

    document = HTML(string=html(report, generated_at)).render()
    document.write_pdf(path)
    return len(document.pages)
