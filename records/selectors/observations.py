"""Observations as the chart shows them: vital signs grouped by recording time, other results apart,
and each vital sign's trend. Pure functions over rows the audited chart read already returned."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from django.utils import timezone

from records.models import Observation
from records.selectors.read_models import (
    ObservationRow,
    VitalColumn,
    VitalSet,
    VitalsTable,
    VitalTrend,
)
from records.terminology import VITAL_SIGNS

# A trend shows a vital sign's newest this many readings: a few days of four-hourly rounds, which is
# what a nurse compares against; older ones stay in the table, page by page.
TREND_POINTS = 30
# The newest vital-sign rows read for the trends, one query however long the stay (a full set is five
# rows, so this covers TREND_POINTS sets of every vital sign the form records).
TREND_SCAN = 5 * TREND_POINTS

VITALS_LABEL = Observation.Category.VITAL_SIGNS.label


def _column_key(row: ObservationRow) -> str:
    return row.loinc_code or row.display


def _columns(rows: Iterable[ObservationRow]) -> tuple[VitalColumn, ...]:
    """The vital signs the form records, in the form's order, then any others present (imported ones)."""
    known = [VitalColumn(loinc, test.name, test.unit) for loinc, test in VITAL_SIGNS.items()]
    seen = {c.key for c in known}
    extra: dict[str, VitalColumn] = {}
    for row in rows:
        key = _column_key(row)
        if key not in seen and key not in extra:
            extra[key] = VitalColumn(key, row.display, row.unit)
    return (*known, *sorted(extra.values(), key=lambda c: c.label.lower()))


def vitals_table(rows: Sequence[ObservationRow]) -> VitalsTable:
    """Split one page of observations: vital signs as one row per recording (time and who recorded it,
    newest first, one cell per vital sign), everything else (laboratory, imaging...) as it came."""
    vitals = [r for r in rows if r.category == VITALS_LABEL]
    results = tuple(r for r in rows if r.category != VITALS_LABEL)
    columns = _columns(vitals)
    index = {c.key: i for i, c in enumerate(columns)}
    groups: dict[tuple[Any, str], list[ObservationRow | None]] = {}
    for row in vitals:  # newest first already; dicts keep that order
        cells = groups.setdefault((row.effective_at, row.recorded_by), [None] * len(columns))
        position = index[_column_key(row)]
        if cells[position] is None:  # two values of one sign at one instant: the newest row wins
            cells[position] = row
    sets = tuple(VitalSet(at, by, tuple(cells)) for (at, by), cells in groups.items())
    used = [i for i, column in enumerate(columns) if any(s.cells[i] is not None for s in sets)]
    # Columns of the form stay even when empty on this page (the table keeps its shape); others only when used.
    keep = [i for i in range(len(columns)) if i < len(VITAL_SIGNS) or i in used]
    return VitalsTable(
        columns=tuple(columns[i] for i in keep),
        sets=tuple(VitalSet(s.effective_at, s.recorded_by, tuple(s.cells[i] for i in keep)) for s in sets),
        results=results,
    )


def _number(value: str) -> float | None:
    try:
        number = Decimal(value.strip())
    except (InvalidOperation, AttributeError):
        return None
    return float(number) if number.is_finite() else None


def trend_row(o: Observation) -> ObservationRow:
    """A vital-sign reading as the trend lines use it (value, flag, time, sign), for a row the chart's
    page does not show: its other encrypted values stay closed. The name and unit of a sign the form
    records come from records/terminology.py, so they are opened only for other (imported) signs."""
    known = o.loinc_code in VITAL_SIGNS
    return ObservationRow(
        o.pk,
        VITALS_LABEL,
        "" if known else o.display,
        o.value,
        "" if known else o.unit,
        o.loinc_code,
        o.effective_at,
        "",
        o.order_id,
        o.interpretation or "",
    )


def vital_trends(rows: Sequence[ObservationRow]) -> tuple[VitalTrend, ...]:
    """Each vital sign's newest TREND_POINTS numeric readings, oldest first, with its reference interval.

    ``rows`` are vital-sign rows newest first (the chart read's trend scan); a value that is not a number
    is left out of the line (it is still in the table).
    """
    points: dict[str, list[ObservationRow]] = {}
    labels: dict[str, tuple[str, str]] = {}
    for row in rows:
        key = _column_key(row)
        bucket = points.setdefault(key, [])
        labels.setdefault(key, (row.display, row.unit))
        if len(bucket) < TREND_POINTS and _number(row.value) is not None:
            bucket.append(row)
    order = {loinc: i for i, loinc in enumerate(VITAL_SIGNS)}
    trends = []
    for key in sorted(points, key=lambda k: (order.get(k, len(order)), labels[k][0].lower())):
        readings = list(reversed(points[key]))
        if not readings:
            continue
        test = VITAL_SIGNS.get(key)
        low, high = test.reference if test is not None else (None, None)
        label, unit = (test.name, test.unit) if test is not None else labels[key]
        trends.append(
            VitalTrend(
                key=key,
                label=label,
                unit=unit,
                readings=tuple(readings),
                low=float(low) if low is not None else None,
                high=float(high) if high is not None else None,
            )
        )
    return tuple(trends)


def trend_data(trends: Sequence[VitalTrend]) -> dict[str, Any]:
    """What static/js/vital-trends.js draws (through json_script): values, times and flags, no names."""
    return {
        "series": [
            {
                "key": t.key,
                "label": t.label,
                "unit": t.unit,
                "low": t.low,
                "high": t.high,
                "points": [
                    {
                        "at": timezone.localtime(r.effective_at).strftime("%d %b %H:%M"),
                        "value": _number(r.value),
                        "flag": r.interpretation,
                    }
                    for r in t.readings
                ],
            }
            for t in trends
        ]
    }
