"""Plain-text tables of the projections' documents, for people at a terminal."""

from __future__ import annotations

from collections.abc import Sequence


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[_text(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(out) if rows else line + "\n(none)"


def _text(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) >= 1e5 else f"{value:g}"
    if isinstance(value, list | tuple):
        return ", ".join(_text(v) for v in value) or "-"
    return str(value)


def cohorts(doc: dict) -> str:
    rows = [
        (
            c["cohort_id"],
            c["dose_level"],
            c["route"],
            c["status"],
            f"{c['slots_taken']}/{c['slots_planned']}",
            c["slots_free"],
            c["enrolled"],
        )
        for c in doc["cohorts"]
    ]
    text = "Cohorts\n" + table(
        ["cohort", "dose", "route", "status", "taken", "free", "subjects"], rows
    )
    waiting = [(w["position"], w["subject_id"], w.get("asked_for")) for w in doc["waiting_list"]]
    return text + "\n\nWaiting list\n" + table(["#", "subject", "asked for"], waiting)


def escalation(doc: dict) -> str:
    design = doc["design"]
    head = (
        f"Dose escalation ({design['design']}"
        # The document's target is the design's own (null for 3+3: decision 53).
        + (f", target {design['target_dlt_rate']}" if design["target_dlt_rate"] is not None
           else "")
        + f"), current level {doc['current_level']}"
    )
    levels = table(
        ["level", "cells/kg", "treated", "evaluable", "DLTs", "eliminated"],
        [
            (
                lv["dose_level"],
                lv["cells_per_kg"],
                lv["treated"],
                lv["evaluable"],
                lv["dlts"],
                lv["eliminated"],
            )
            for lv in doc["levels"]
        ],
    )
    rec = doc["recommendation"]
    if rec is None:
        now = "Recommendation: none yet (no DLT-evaluable patient)"
    else:
        now = (
            f"Recommendation {rec['recommendation_id']}: {rec['decision']}"
            + (f" to {rec['next_level']}" if rec["next_level"] else "")
            + (f" (MTD {rec['mtd_level']})" if rec["mtd_level"] else "")
            + f"\n  rule: {rec['rule']}\n  from {len(rec['evidence'])} DLT evaluations"
        )
    decisions = table(
        ["when", "decision", "cohort", "level", "by", "followed", "departure reason"],
        [
            (
                d["occurred_at"][:16],
                d["kind"],
                d["cohort_id"],
                d["dose_level"],
                d["decided_by"],
                d["followed"],
                d["departure_reason"],
            )
            for d in doc["decisions"]
        ],
    )
    return f"{head}\n{levels}\n\n{now}\n\nReview decisions\n{decisions}"


def lots(doc: dict) -> str:
    rows = [
        (
            lot["lot_id"],
            lot["subject_id"],
            lot["stage"],
            lot["chain_of_identity"]["status"],
            lot["chain_of_identity"]["hand_offs"],
            lot["vein_to_vein_days"],
            lot["out_of_specification"],
        )
        for lot in doc["lots"]
    ]
    lots_table = "Manufacturing pipeline\n" + table(
        ["lot", "subject", "stage", "chain of identity", "hand-offs", "vein-to-vein d", "OOS"],
        rows,
    )
    v2v = doc.get("vein_to_vein_days")
    if v2v is None:  # a later page of the list: the summary is on the first
        return lots_table
    return (
        lots_table
        + f"\n\nvein-to-vein: {v2v['infused_lots']} infused, median {_text(v2v['median'])} d"
    )


def safety(doc: dict) -> str:
    aes = doc["adverse_events"]
    head = (
        f"Safety as of {doc['as_of'][:16]}: {aes['total']} AEs, {aes['serious']} serious, "
        f"{aes['of_special_interest']} of special interest; by worst grade "
        + ", ".join(f"G{g}: {n}" for g, n in aes["by_worst_grade"].items())
        + (
            "\nENROLLMENT PAUSED by " + ", ".join(doc["paused_by"])
            if doc["enrollment_paused"]
            else ""
        )
    )
    windows = table(
        ["subject", "cohort", "infused", "window ends", "days left"],
        [
            (
                w["subject_id"],
                w["cohort_id"],
                w["infused_at"][:10],
                w["window_ends_at"][:10],
                w["days_left"],
            )
            for w in doc["open_dlt_windows"]
        ],
    )
    dlts = table(
        ["cohort", "level", "evaluable", "DLTs"],
        [
            (c, v["dose_level"], v["evaluable"], v["dlts"])
            for c, v in doc["dlts_per_cohort"].items()
        ],
    )
    reports = table(
        ["AE", "subject", "report", "due", "status", "days left"],
        [
            (r["ae_id"], r["subject_id"], r["report"], r["due_on"], r["status"], r["days_left"])
            for r in doc["expedited_reports"]
        ],
    )
    return (
        f"{head}\n\nOpen DLT windows\n{windows}\n\nDLTs per cohort\n{dlts}"
        f"\n\nExpedited reports\n{reports}"
    )


def timeline(doc: dict) -> str:
    parts = []
    for subject in doc["subjects"]:
        rows = [
            (
                e["occurred_at"][:16],
                e["context"],
                e["event_type"],
                f"{e['recorded_by']['user_id']} ({e['recorded_by']['role']})",
                e["reason"],
            )
            for e in subject["entries"]
        ]
        parts.append(
            f"Subject {subject['subject_id']}\n"
            + table(["when", "context", "event", "recorded by", "reason"], rows)
        )
    return "\n\n".join(parts) or "(no subject)"
