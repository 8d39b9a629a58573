"""The packets a dose-escalation meeting and a safety review committee work from (issue 15):
pure builders fold the recorded events into a report model (``escalation_meeting``,
``safety_review``) with the event ids behind every figure; ``render`` turns a model into HTML
(Jinja2 templates shipped with the package) and a PDF (WeasyPrint)."""
