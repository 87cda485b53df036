"""Short shims from the signals of records and accounts to audit/services.py (STYLE.md)."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from audit import detection, services


def _rules_inline() -> bool:
    # On unless a benchmark turns them off to measure their cost (bench/detection.py).
    return bool(getattr(settings, "ANOMALY_RULES_INLINE", True))


def _accesses_judged_here() -> bool:
    # ANOMALY_RULES_AT: "sealer" judges them after sealing (audit/detection/nearline.py), not here.
    return detection.rules_at() == "request"


def on_patient_data_accessed(sender: Any, **kwargs: Any) -> None:
    patient_ids = kwargs.get("patient_ids") or (kwargs.get("patient_id"),)
    events = services.access_event_record(
        actor=kwargs.get("actor"),
        patient_ids=patient_ids,
        categories=kwargs.get("categories") or (kwargs["category"],),
        action=str(kwargs["action"]),
        purpose=str(kwargs.get("purpose", "")),
        explanation=str(kwargs.get("explanation", "")),
        detail=kwargs.get("detail"),
    )
    if _accesses_judged_here():
        detection.judge_new_accesses(kwargs.get("actor"), events, kwargs.get("patients") or ())


def on_patient_data_changed(sender: Any, **kwargs: Any) -> None:
    services.change_event_record(
        actor=kwargs.get("actor"),
        patient_id=kwargs.get("patient_id"),
        category=str(kwargs["category"]),
        action=str(kwargs["action"]),
        fields=kwargs.get("fields", ()),
        object_type=getattr(sender, "__name__", str(sender)),
        object_id=kwargs.get("object_id"),
    )


def on_patient_rows_changed(sender: Any, **kwargs: Any) -> None:
    services.change_event_groups_record(
        actor=kwargs.get("actor"),
        action=str(kwargs["action"]),
        groups=[
            (getattr(model, "__name__", str(model)), str(category), fields, rows)
            for model, category, fields, rows in kwargs["groups"]
        ],
    )


def on_disclosure_made(sender: Any, **kwargs: Any) -> None:
    events = services.access_event_record(
        actor=kwargs.get("actor"),
        patient_ids=(kwargs.get("patient_id"),),
        categories=(kwargs.get("category", "record"),),
        action="disclose",
        purpose=str(kwargs.get("purpose", "")),
        detail={"recipient": str(kwargs.get("recipient", ""))},
    )
    if _accesses_judged_here():
        detection.judge_new_accesses(kwargs.get("actor"), events)


def on_auth_event(sender: Any, **kwargs: Any) -> None:
    record = services.auth_event_record(
        event=kwargs["event"],
        actor=kwargs.get("actor"),
        target=kwargs.get("target"),
        username=kwargs.get("username", ""),
        ip=kwargs.get("ip"),
        user_agent=kwargs.get("user_agent", ""),
        detail=kwargs.get("detail", {}),
    )
    if _rules_inline():
        detection.judge_auth_event(record)


def on_break_glass_granted(sender: Any, **kwargs: Any) -> None:
    """Every emergency grant raises an alert for review (fails closed: no alert, no grant)."""
    detection.judge_new_grant(kwargs["grant"])
