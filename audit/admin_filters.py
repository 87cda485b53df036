"""List filters of the audit admin.

Every filter *validates* its value and refuses anything else (``IncorrectLookupParameters``, which the
admin turns into its "invalid filter" page), for two reasons: a value that filtered nothing would
silently show the whole trail, and the filters are written to the audit-of-the-audit event, which
must never carry free text that could be a patient identifier (audit/reports/).

The choice lists of text columns come from a cached ``SELECT DISTINCT``: Django's own
``AllValuesFieldListFilter`` runs that scan on every page view, which a table of millions of rows
cannot afford.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar, TypedDict, cast

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.core.cache import cache
from django.db.models import Exists, Model, OuterRef, QuerySet
from django.http import HttpRequest

from accounts.roles import DataCategory, Role
from accounts.signals import AuthEvent
from audit.guards import CLINICAL_TABLES
from audit.models import Alert, DirectChangeSeal, shows_section
from audit.reports import AUDIT_TRAIL_CATEGORY, day_bounds
from records.models import BreakGlassGrant

# Stands for the empty string in a query string (an event without a role, a purpose...).
EMPTY = "-"
VOCABULARY_SECONDS = 300
# A column with more distinct values than this is not a vocabulary; the list is cut there.
VOCABULARY_MAX = 200
_ID_RE = re.compile(r"^[0-9]{1,18}$")


def distinct_values(model: type[Model], field: str) -> list[str]:
    """The distinct values of ``model.field`` (at most VOCABULARY_MAX), cached for VOCABULARY_SECONDS."""
    key = f"audit:admin:vocabulary:{model._meta.label_lower}:{field}"
    values: list[str] | None = cache.get(key)
    if values is None:
        values = list(model._default_manager.order_by(field).values_list(field, flat=True).distinct()[:VOCABULARY_MAX])
        cache.set(key, values, VOCABULARY_SECONDS)
    return values


def _other_parameters(changelist: ChangeList, exclude: Sequence[str]) -> list[tuple[str, str]]:
    """The query string of the page minus ``exclude``, as (name, value) pairs for hidden form fields."""
    return [
        (name, value)
        for name, values in sorted(changelist.filter_params.items())
        if name not in exclude
        for value in values
    ]


# What the two input filters hand their own templates (templates/admin/audit/*_filter.html). Django's
# stubs type ``choices()`` for the admin's default template, a list of links; these are forms, so the
# overrides below yield these instead, as ``Any`` to the base class.


class InputChoice(TypedDict):
    """A typed-in id filter: its value and the page's other parameters (input_filter.html)."""

    parameter_name: str
    value: str
    placeholder: str
    hidden: list[tuple[str, str]]
    clear_query_string: str


class DateRangeChoice(TypedDict):
    """A from/to date filter (date_range_filter.html)."""

    parameter_from: str
    parameter_to: str
    value_from: str
    value_to: str
    hidden: list[tuple[str, str]]
    clear_query_string: str
    active: bool


class VocabularyFilter(admin.SimpleListFilter):
    """Exact match on a text column whose values form a small vocabulary (role, action, category...)."""

    field: ClassVar[str]
    # Values always offered (e.g. every role), with their labels; the column's own values are added.
    static_choices: ClassVar[Sequence[tuple[str, str]]] = ()
    from_database: ClassVar[bool] = True

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        choices = dict(self.static_choices)
        if self.from_database:
            for value in distinct_values(model_admin.model, self.field):
                choices.setdefault(value or EMPTY, value or "(none)")
        return sorted(choices.items(), key=lambda item: (item[0] == EMPTY, str(item[1]).lower()))

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value is None:
            return queryset
        if value not in {choice for choice, _ in self.lookup_choices}:
            raise IncorrectLookupParameters(f"Unknown value for the {self.parameter_name} filter.")
        return queryset.filter(**{self.field: "" if value == EMPTY else value})


class IdInputFilter(admin.SimpleListFilter):
    """A typed-in numeric id (actor, patient...): too many values for a list of links."""

    template = "admin/audit/input_filter.html"
    field: ClassVar[str]
    placeholder: ClassVar[str] = "id"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return []

    def has_output(self) -> bool:
        # Always shown, although it has no list of choices; Django would otherwise drop the filter
        # *and its value*, silently widening the list.
        return True

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = (self.value() or "").strip()
        if not value:
            return queryset
        if not _ID_RE.match(value):
            raise IncorrectLookupParameters(f"The {self.parameter_name} filter takes a number.")
        return self.filter_id(queryset, int(value))

    def filter_id(self, queryset: QuerySet[Any], value: int) -> QuerySet[Any]:
        return queryset.filter(**{self.field: value})

    def choices(self, changelist: ChangeList) -> Iterator[Any]:
        name = str(self.parameter_name)
        choice: InputChoice = {
            "parameter_name": name,
            "value": self.value() or "",
            "placeholder": self.placeholder,
            "hidden": _other_parameters(changelist, [name]),
            "clear_query_string": changelist.get_query_string(remove=[name]),
        }
        yield choice


class DateRangeFilter(admin.ListFilter):
    """From/To dates (inclusive) on the ``at`` column, in the current time zone."""

    title = "date range"
    template = "admin/audit/date_range_filter.html"
    field = "at"
    parameter_from = "at_from"
    parameter_to = "at_to"

    def __init__(self, request: HttpRequest, params: dict[str, list[str]], model: Any, model_admin: Any) -> None:
        # Since Django 5.0 the admin passes each parameter's list of values; the stubs still say str.
        super().__init__(request, cast("dict[str, str]", params), model, model_admin)
        for name in self._names():
            if name in params:
                self.used_parameters[name] = params.pop(name)[-1]

    def has_output(self) -> bool:
        return True

    def _names(self) -> list[str]:
        return [self.parameter_from, self.parameter_to]

    def expected_parameters(self) -> list[str | None]:
        return [*self._names()]

    def _value(self, name: str) -> str:
        value = self.used_parameters.get(name)
        return value if isinstance(value, str) else ""

    def _date(self, name: str) -> datetime.date | None:
        raw = self._value(name).strip()
        if not raw:
            return None
        try:
            return datetime.date.fromisoformat(raw)
        except ValueError:
            raise IncorrectLookupParameters(f"{name} takes a date (YYYY-MM-DD).") from None

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        start, end = day_bounds(self._date(self.parameter_from), self._date(self.parameter_to))
        if start is not None:
            queryset = queryset.filter(**{f"{self.field}__gte": start})
        if end is not None:
            queryset = queryset.filter(**{f"{self.field}__lt": end})
        return queryset

    def choices(self, changelist: ChangeList) -> Iterator[Any]:
        names = self._names()
        choice: DateRangeChoice = {
            "parameter_from": self.parameter_from,
            "parameter_to": self.parameter_to,
            "value_from": self._value(self.parameter_from),
            "value_to": self._value(self.parameter_to),
            "hidden": _other_parameters(changelist, names),
            "clear_query_string": changelist.get_query_string(remove=names),
            "active": any(self._value(name) for name in names),
        }
        yield choice


class ActorRoleFilter(VocabularyFilter):
    title = "actor role"
    parameter_name = field = "actor_role"
    # Operators (superusers) hold no role; the audit service records them as "operator".
    static_choices = (*((role.value, str(role.label)) for role in Role), ("operator", "Operator"))


class ActionFilter(VocabularyFilter):
    title = "action"
    parameter_name = field = "action"
    static_choices = (("view", "view"), ("export", "export"))


class CategoryFilter(VocabularyFilter):
    title = "data category"
    parameter_name = field = "category"
    # The trail's own category (audit/reports/) is offered before anyone has looked at the trail.
    static_choices = (
        *((category.value, category.value) for category in DataCategory),
        (AUDIT_TRAIL_CATEGORY, AUDIT_TRAIL_CATEGORY),
    )


class SectionFilter(CategoryFilter):
    """Access events that showed a section: any of those an event lists, not only its primary one.

    ``shows_section`` matches the quoted name in the stored list's text, which works on SQLite and
    PostgreSQL alike, and the primary ``category`` of events written before they listed sections.
    """

    title = "section shown"
    parameter_name = "section"

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value is None:
            return queryset
        if value not in {choice for choice, _ in self.lookup_choices}:
            raise IncorrectLookupParameters(f"Unknown value for the {self.parameter_name} filter.")
        return queryset.filter(shows_section(value))


class PurposeFilter(VocabularyFilter):
    title = "purpose"
    parameter_name = field = "purpose"


class ObjectTypeFilter(VocabularyFilter):
    title = "object type"
    parameter_name = field = "object_type"


class AuthEventFilter(VocabularyFilter):
    title = "event type"
    parameter_name = field = "event"
    static_choices = tuple((event.value, event.value) for event in AuthEvent)


class OperationFilter(VocabularyFilter):
    title = "operation"
    parameter_name = field = "operation"
    static_choices = tuple((op, op) for op in ("INSERT", "UPDATE", "DELETE", "TRUNCATE", "DDL"))


class TableFilter(VocabularyFilter):
    title = "table"
    parameter_name = field = "table_name"
    static_choices = tuple((table, table) for table in CLINICAL_TABLES)


class ActorIdFilter(IdInputFilter):
    title = "actor (user id)"
    parameter_name = field = "actor_id"
    placeholder = "user id"


class TargetIdFilter(IdInputFilter):
    title = "target account (user id)"
    parameter_name = field = "target_id"
    placeholder = "user id"


class PatientIdFilter(IdInputFilter):
    title = "patient (patient id)"
    parameter_name = field = "patient_id"
    placeholder = "patient id"


class MarkerActorFilter(ActorIdFilter):
    """The application user a direct change was made for: the actor of its *verified* marker.

    A marker is only taken at its word once the sealer has checked its MAC (audit/sealing.py): an
    unverified ``user:5`` typed in psql names nobody.
    """

    field = "actor_marker"

    def filter_id(self, queryset: QuerySet[Any], value: int) -> QuerySet[Any]:
        seals = DirectChangeSeal.objects.filter(direct_change_id=OuterRef("pk"), verified=True, actor=f"user:{value}")
        return queryset.filter(Exists(seals))


class DirectFilter(admin.SimpleListFilter):
    """Whether a direct change came from the application: its marker verified when it was sealed."""

    title = "made by"
    parameter_name = "direct"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("yes", "Outside the application"),
            ("no", "The application (verified marker)"),
            ("unsealed", "Not yet sealed"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value is None:
            return queryset
        seals = DirectChangeSeal.objects.filter(direct_change_id=OuterRef("pk"))
        if value == "yes":
            return queryset.filter(Exists(seals.filter(verified=False)))
        if value == "no":
            return queryset.filter(Exists(seals.filter(verified=True)))
        if value == "unsealed":
            return queryset.filter(~Exists(seals))
        raise IncorrectLookupParameters("Unknown value for the direct filter.")


def filter_parameters(list_filter: Sequence[Any]) -> set[str]:
    """The query-string names the given list filter classes read."""
    names: set[str] = set()
    for item in list_filter:
        if isinstance(item, type) and issubclass(item, DateRangeFilter):
            names.update((item.parameter_from, item.parameter_to))
        elif isinstance(item, type) and issubclass(item, admin.SimpleListFilter) and item.parameter_name:
            names.add(item.parameter_name)
        else:
            raise TypeError("The audit admin only uses its own, validating list filters.")
    return names


# --- Alerts and break-the-glass grants (read-only for compliance) -----------------------------------


class CreatedRangeFilter(DateRangeFilter):
    """From/To dates on when an alert was raised."""

    field = "created_at"
    parameter_from = "created_from"
    parameter_to = "created_to"


class GrantedRangeFilter(DateRangeFilter):
    """From/To dates on when a break-the-glass grant was given."""

    field = "granted_at"
    parameter_from = "granted_from"
    parameter_to = "granted_to"


class RuleFilter(VocabularyFilter):
    title = "rule"
    parameter_name = field = "rule"


class SeverityFilter(VocabularyFilter):
    title = "severity"
    parameter_name = field = "severity"
    from_database = False

    static_choices = tuple((str(value), str(label)) for value, label in Alert.Severity.choices)


class StatusFilter(VocabularyFilter):
    title = "status"
    parameter_name = field = "status"
    from_database = False

    static_choices = tuple((str(value), str(label)) for value, label in Alert.Status.choices)


class GrantReasonFilter(VocabularyFilter):
    title = "reason"
    parameter_name = field = "reason"
    from_database = False

    static_choices = tuple((str(value), str(label)) for value, label in BreakGlassGrant.Reason.choices)


class GrantUserFilter(IdInputFilter):
    title = "user id"
    parameter_name = field = "user_id"
    placeholder = "user id"
