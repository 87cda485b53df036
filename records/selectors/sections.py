"""Several small sections of one patient's record in one query (issue 11).

A chart showed each section with its own query (stays, conditions, allergies, medications, doses
given, orders, images, procedures, immunizations...): a dozen round trips per page. Here every
section is one branch of a ``UNION ALL``: each branch keeps its own filter, order and limit (on
PostgreSQL the branch ordered and limited in parentheses; SQLite refuses that in a compound
statement, so there the branch reads the primary keys of a limited, ordered subquery), tags its
rows with the section's name and lays its columns out over typed slots shared by all branches
(whole numbers, row identities, text, instants, dates, flags, JSON), padded with NULLs of the
slot's type. One statement, whatever the number of sections or rows.

Encrypted columns come back as the stored token, never opened by the union: a slot holds values of
several tables, so no single field could decrypt it. Each token is wrapped again in a ``Sealed``
of *its own* field (table and column) and opened with *its own* row's ``row_uid`` (the row it sits
in, or the joined row it belongs to), exactly as a model instance would (healthcrypt/fields.py):
a value copied to another row or column fails loudly here too.

Callers run this only after the access is recorded (the read path's order: policy, event, rules,
then decryption); nothing here checks a policy.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import F, QuerySet, Value
from django.db.models.expressions import RawSQL

from healthcrypt import shaped
from healthcrypt.fields import EncryptedField, Sealed
from records.models import FREQUENCY_LABELS, Encounter, Medication, Order
from records.selectors.access import _labels
from records.selectors.read_models import AllergyRow, ConditionRow, EncounterRow, MedicationRow, OrderRow

logger = logging.getLogger(__name__)

# The slot kinds, in the order their columns appear after the tag, and the field that reads them.
_KINDS: dict[str, models.Field[Any, Any]] = {
    "int": models.BigIntegerField(),
    "uuid": models.UUIDField(),
    "text": models.TextField(),
    "datetime": models.DateTimeField(),
    "date": models.DateField(),
    "bool": models.BooleanField(),
    "json": models.JSONField(),
}
# A column: a field path as in ``values()``, or a name and an expression computed by the database.
Column = str | tuple[str, Any]


@dataclass(frozen=True)
class Section:
    """One section of a record: its rows (filtered), their order, how many, and the columns wanted.

    ``columns`` are field paths as in ``values()`` (``"display"``, ``"attending__last_name"``), or
    ``(name, expression)`` for a value the database computes (never an encrypted one); the primary
    key, the ``row_uid`` of every row an encrypted column belongs to and the ordering's fields are
    added when missing. ``limit`` None: every row the filter finds (a filter that bounds them).
    """

    name: str
    rows: QuerySet[Any]
    ordering: tuple[str, ...]
    limit: int | None
    columns: tuple[Column, ...]


def _field(model: type[models.Model], path: str) -> models.Field[Any, Any]:
    *relations, last = path.split("__")
    for name in relations:
        relation = model._meta.get_field(name)
        assert relation.related_model is not None  # noqa: S101 (a path through a foreign key)
        model = relation.related_model  # type: ignore[assignment]
    field = model._meta.get_field("id" if last == "pk" else last)
    assert isinstance(field, models.Field)  # noqa: S101 (a concrete column)
    return field


def _kind(field: models.Field[Any, Any]) -> str:
    if isinstance(field, EncryptedField):
        return "text"  # the token, opened later with its own field and row
    if isinstance(field, models.ForeignKey):
        field = field.target_field
    internal = field.get_internal_type()
    if internal == "DateTimeField":
        return "datetime"
    if internal == "DateField":
        return "date"
    if internal == "UUIDField":
        return "uuid"
    if internal == "BooleanField":
        return "bool"
    if internal == "JSONField":
        return "json"
    if internal.endswith("AutoField") or internal.endswith("IntegerField"):
        return "int"
    if internal in ("CharField", "TextField"):
        return "text"
    raise TypeError(f"{field} cannot take part in a section union ({internal})")


def _owner(path: str) -> str:
    """The path of the ``row_uid`` of the row that ``path``'s column belongs to."""
    prefix, _, _ = path.rpartition("__")
    return f"{prefix}__row_uid" if prefix else "row_uid"


def _pk_of(path: str) -> str:
    prefix, _, _ = path.rpartition("__")
    return f"{prefix}__id" if prefix else "id"


@dataclass(frozen=True)
class _Layout:
    columns: tuple[str, ...]
    fields: tuple[models.Field[Any, Any], ...]
    slots: tuple[int, ...]  # the position of each column in the union's row


def _columns(section: Section) -> tuple[dict[str, Any], dict[str, models.Field[Any, Any]]]:
    """The section's columns: name -> what to select, and name -> the field that reads it."""
    model = section.rows.model
    computed = {c[0]: c[1] for c in section.columns if isinstance(c, tuple)}
    paths = ["id", *(c for c in section.columns if isinstance(c, str)), *(o.lstrip("-") for o in section.ordering)]
    for path in list(paths):
        if path not in computed and isinstance(_field(model, path), EncryptedField):
            paths += [_owner(path), _pk_of(path)]
    select: dict[str, Any] = {}
    fields: dict[str, models.Field[Any, Any]] = {}
    for path in dict.fromkeys("id" if c == "pk" else c for c in paths):
        if path in computed:
            continue
        select[path], fields[path] = F(path), _field(model, path)
    for name, expression in computed.items():
        select[name], fields[name] = expression, expression.output_field
    return select, fields


def sections_read(sections: Sequence[Section]) -> dict[str, list[dict[str, Any]]]:
    """The rows of every section, by name, in each section's order: one query.

    Each row is a dict from column path to value, encrypted values opened (see the module's doc).
    A section with no rows is an empty list.
    """
    found = _empty(sections)
    if not sections:
        return found
    union, layouts = _union(sections)
    return _collect(union, layouts, sections, found)


def _empty(sections: Sequence[Section]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {s.name: [] for s in sections}
    if len(found) != len(sections):
        raise ValueError("Every section of a union needs a name of its own (its rows are told apart by it).")
    return found


def _collect(
    rows: Iterable[Sequence[Any]],
    layouts: Mapping[str, tuple[Section, _Layout]],
    sections: Sequence[Section],
    found: dict[str, list[dict[str, Any]]],
) -> dict[str, list[dict[str, Any]]]:
    for row in rows:
        section, layout = layouts[row[0]]
        found[section.name].append(_row(row, layout))
    for section in sections:
        found[section.name] = _ordered(found[section.name], section.ordering)
    return found


def _union(sections: Sequence[Section]) -> tuple[QuerySet[Any], dict[str, tuple[Section, _Layout]]]:
    """The sections' ``UNION ALL`` (not run yet) and how to read each branch's rows."""
    prepared = []
    widths = dict.fromkeys(_KINDS, 0)
    for section in sections:
        select, by_name = _columns(section)
        columns, fields = tuple(select), tuple(by_name.values())
        kinds = tuple(_kind(f) for f in fields)
        for kind in _KINDS:
            widths[kind] = max(widths[kind], kinds.count(kind))
        prepared.append((section, select, fields, kinds))
    offsets: dict[str, int] = {}
    position = 1  # 0 is the tag
    for kind in _KINDS:
        offsets[kind] = position
        position += widths[kind]
    parts = []
    layouts: dict[str, tuple[Section, _Layout]] = {}
    for index, (section, select, fields, kinds) in enumerate(prepared):
        columns = tuple(select)
        # The padding: NULLs of the slot's type in the first branch (PostgreSQL types a union's columns
        # from its first branches: two untyped NULLs would make a text column), untyped after it.
        # Written as SQL rather than Cast(): building ~200 expressions was a measurable part of a page.
        connection = connections[section.rows.db]
        expressions: list[Any] = [Value(section.name, output_field=models.CharField())]
        expressions += [_null(_KINDS[k], connection, typed=index == 0) for k in _KINDS for _ in range(widths[k])]
        used = dict.fromkeys(_KINDS, 0)
        slots = []
        for column, kind in zip(columns, kinds, strict=True):
            slot = offsets[kind] + used[kind]
            used[kind] += 1
            # A field path as it is (the cheapest to build); the union reads every branch with the
            # first branch's converters, and _row undoes an encrypted field's (see _raw).
            expressions[slot] = column if isinstance(select[column], F) else select[column]
            slots.append(slot)
        layouts[section.name] = (section, _Layout(columns, fields, tuple(slots)))
        if section.limit is None:
            parts.append(section.rows.order_by().values_list(*expressions))
        elif connection.features.supports_slicing_ordering_in_compound:
            # PostgreSQL: the branch itself ordered and limited, in parentheses.
            parts.append(section.rows.order_by(*section.ordering).values_list(*expressions)[: section.limit])
        else:
            # SQLite refuses ORDER BY and LIMIT in a compound's branches: the limited, ordered primary
            # keys as a subquery instead (one more query to build, the same rows).
            limited = section.rows.order_by(*section.ordering).values("pk")[: section.limit]
            rows = section.rows.model._base_manager.filter(pk__in=limited)
            parts.append(rows.order_by().values_list(*expressions))
    union = parts[0].union(*parts[1:], all=True) if len(parts) > 1 else parts[0]
    return union, layouts


# --- The same union compiled once per shape ---------------------------------------------------------
#
# Building and compiling the union (a dozen branches of ~40 expressions) cost more than running it:
# most of a chart's read time under load (issue 11). The chart and the emergency summary ask for the
# same few shapes over and over, differing only in the patient and the clock, so a shape is compiled
# once with placeholder values and its SQL kept (healthcrypt/shaped.py). A shape whose placeholders do
# not all come out as parameters (inlined in the SQL text, or missing) is never kept: it is read the
# ordinary way.

_STATEMENTS = "_healthcrypt_section_statements"
# The placeholders' values (healthcrypt/shaped.py), named here for the tests.
PATIENT_PLACEHOLDER = shaped.PLACEHOLDERS["patient_id"][0]
NOW_PLACEHOLDER = shaped.PLACEHOLDERS["now"][0]


@dataclass(frozen=True)
class _Statement:
    compiled: shaped.Compiled
    layouts: Mapping[str, tuple[Section, _Layout]]
    sections: tuple[Section, ...]


def _statement(sections: Sequence[Section], names: Sequence[str], alias: str) -> _Statement | None:
    """Compile the union of ``sections`` (built with the placeholders of ``names``) for reuse, or None."""
    if not sections:
        return None
    union, layouts = _union(sections)
    # Other placeholders may go unused (the care team's clock, when the care team is not shown); the
    # patient never: a shape that does not bind the patient would show one patient's rows to all.
    compiled = shaped.compile_shape(union, names, required=("patient_id",), alias=alias)
    if compiled is None:
        logger.warning("A section union's placeholders are not all parameters; it is not kept (%s)", sorted(layouts))
        return None
    return _Statement(compiled, layouts, tuple(sections))


def sections_read_shaped(
    key: Hashable, build: Callable[..., Sequence[Section]], values: Mapping[str, Any], *, alias: str = DEFAULT_DB_ALIAS
) -> dict[str, list[dict[str, Any]]]:
    """:func:`sections_read` of ``build(**values)``, compiled once per ``key`` (see above).

    ``build`` must return the same sections, in the same order, for any values of its keyword
    arguments (names of ``healthcrypt.shaped.PLACEHOLDERS``); ``key`` names everything else that shapes
    them (which sections, which scope). The result is the same as ``sections_read(build(**values))``.
    ``values`` must hold ``patient_id``: a shape that does not filter by it is never kept.
    """
    statements: dict[Hashable, _Statement | None] = shaped.kept(alias, _STATEMENTS)
    if key not in statements:
        statements[key] = _statement(build(**shaped.placeholders(values)), tuple(values), alias)
    statement = statements[key]
    if statement is None:
        return sections_read(build(**values))
    rows = statement.compiled.converted(values, connections[alias])
    return _collect(rows, statement.layouts, statement.sections, _empty(statement.sections))


def _null(field: models.Field[Any, Any], connection: BaseDatabaseWrapper, *, typed: bool) -> RawSQL:
    # No input reaches this SQL: the type's name is Django's own for the slot's field on this database.
    sql = f"CAST(NULL AS {field.db_type(connection)})" if typed else "NULL"
    return RawSQL(sql, (), output_field=field)  # noqa: S611


def _raw(value: Any) -> Any:
    """A value as the database returned it: a text slot whose first branch held an encrypted column
    comes back wrapped by that column's converter, for every branch; the token (or plain text) inside
    is what this row holds."""
    return value.token if isinstance(value, Sealed) else value


def _row(row: Sequence[Any], layout: _Layout) -> dict[str, Any]:
    values = {c: _raw(row[s]) for c, s in zip(layout.columns, layout.slots, strict=True)}
    opened = dict(values)
    for column, f in zip(layout.columns, layout.fields, strict=True):
        token = values[column]
        if isinstance(f, EncryptedField) and token is not None:
            opened[column] = Sealed(token, f).open(row_uid=values[_owner(column)], pk=values[_pk_of(column)])
    return opened


def _ordered(rows: list[dict[str, Any]], ordering: tuple[str, ...]) -> list[dict[str, Any]]:
    """``rows`` in ``ordering`` (as ``order_by``'s), sorted here: a union has one order for all branches."""
    for key in reversed(ordering):
        rows.sort(key=_sort_key(key.lstrip("-")), reverse=key.startswith("-"))
    return rows


def _sort_key(name: str) -> Callable[[Mapping[str, Any]], tuple[bool, Any]]:
    # NULLs after the values going up, before them going down (PostgreSQL's default).
    return lambda row: (True, 0) if row[name] is None else (False, row[name])


def label(model: type[models.Model], field_name: str, values: Mapping[str, Any], path: str | None = None) -> str:
    """A choice column's label for a row of :func:`sections_read` (as ``get_FOO_display``)."""
    value = values[path or field_name]
    return _labels(model, field_name).get(value, value)  # type: ignore[no-any-return]


def staff_name(values: Mapping[str, Any], relation: str) -> str:
    """``User.display_name`` of a joined staff member of a row (first and last name, else username)."""
    username = values.get(f"{relation}__username")
    if username is None:
        return ""
    full = f"{values.get(f'{relation}__first_name') or ''} {values.get(f'{relation}__last_name') or ''}".strip()
    return full or str(username)


def staff(relation: str) -> tuple[str, ...]:
    """The columns :func:`staff_name` reads."""
    return tuple(f"{relation}__{name}" for name in ("first_name", "last_name", "username"))


# --- The rows of the record's sections, from a row of sections_read ---------------------------------


ENCOUNTER_COLUMNS = (
    "kind",
    "status",
    "department__name",
    *staff("attending"),
    "starts_at",
    "ends_at",
    "reason",
    "type_display",
)
CONDITION_COLUMNS = ("display", "code", "clinical_status", "onset_date", "abatement_date")
ALLERGY_COLUMNS = ("substance", "reaction", "severity", "recorded_at", "code")
MEDICATION_COLUMNS = (
    "display",
    "code",
    "dosage",
    "status",
    *staff("prescribed_by"),
    "prescribed_at",
    "allergy_override_reason",
    "frequency",
)
ORDER_COLUMNS = (
    "patient_id",
    "kind",
    "status",
    "priority",
    "description",
    "code",
    "reason",
    "department__name",
    *staff("ordered_by"),
    "ordered_at",
    "completed_at",
)


def encounter_row(r: Mapping[str, Any]) -> EncounterRow:
    return EncounterRow(
        r["id"],
        label(Encounter, "kind", r),
        label(Encounter, "status", r),
        r["department__name"] or "",
        staff_name(r, "attending"),
        r["starts_at"],
        r["ends_at"],
        r["reason"],
        r["type_display"],
    )


def condition_row(r: Mapping[str, Any]) -> ConditionRow:
    return ConditionRow(r["id"], r["display"], r["code"], r["clinical_status"], r["onset_date"], r["abatement_date"])


def allergy_row(r: Mapping[str, Any]) -> AllergyRow:
    return AllergyRow(r["id"], r["substance"], r["reaction"], r["severity"], r["recorded_at"], r["code"] or "")


def medication_row(r: Mapping[str, Any]) -> MedicationRow:
    return MedicationRow(
        r["id"],
        r["display"],
        r["code"],
        r["dosage"],
        label(Medication, "status", r),
        staff_name(r, "prescribed_by"),
        r["prescribed_at"],
        r["allergy_override_reason"] or "",
        FREQUENCY_LABELS.get(r["frequency"] or "", ""),
    )


def order_row(r: Mapping[str, Any]) -> OrderRow:
    return OrderRow(
        r["id"],
        r["patient_id"],
        label(Order, "kind", r),
        r["status"],
        r["priority"],
        label(Order, "priority", r),
        r["description"],
        r["code"],
        r["reason"],
        r["department__name"],
        staff_name(r, "ordered_by"),
        r["ordered_at"],
        r["completed_at"],
    )
