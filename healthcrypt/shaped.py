"""A query compiled once per shape, bound per call (issue 11).

Building a Django query with subqueries and compiling it to SQL can cost more than running it: the
chart's sections (records/selectors/sections.py) and the policy's relationship query
(records/permissions.py ``chart_access``) are asked for the same few shapes over and over, differing
only in a few values (the patient, the user, the department, the clock). So a shape is built once
with *placeholder* values, compiled, and its SQL kept per process and database connection; each call
then puts the real values at the placeholders' parameter positions and converts the rows with the
compiler that made the SQL.

The danger is a value that does not come out as a parameter: baked into the query by its builder,
or inlined in the SQL text. Kept, such a shape would answer every caller with the first caller's
patient. So a shape is kept only when every placeholder its caller requires is found among the
parameters and none appears in the SQL text; otherwise :func:`compile_shape` returns None and the
caller runs its query the ordinary way.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable, Collection, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from django.core.exceptions import EmptyResultSet
from django.db import connections, models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import QuerySet
from django.db.models.query import get_related_populators  # type: ignore[attr-defined]  # not in the stubs
from django.db.models.sql.compiler import SQLCompiler

logger = logging.getLogger(__name__)

# Values no real row or request can have: negative ids (distinct, so that each is found at its own
# positions) and an instant in 1901.
PLACEHOLDERS: dict[str, tuple[Any, models.Field[Any, Any]]] = {
    "patient_id": (-7_351_942_017, models.BigIntegerField()),
    "user_id": (-7_351_942_031, models.BigIntegerField()),
    "department_id": (-7_351_942_047, models.BigIntegerField()),
    "now": (datetime.datetime(1901, 2, 3, 4, 5, 6, 789012, tzinfo=datetime.UTC), models.DateTimeField()),
}


def placeholders(names: Collection[str]) -> dict[str, Any]:
    """The placeholder value of each name, to build a shape with."""
    return {name: PLACEHOLDERS[name][0] for name in names}


def _adapt(name: str, value: Any, connection: BaseDatabaseWrapper) -> Any:
    return PLACEHOLDERS[name][1].get_db_prep_value(value, connection, prepared=False)


@dataclass(frozen=True)
class Compiled:
    """A shape's SQL, its parameters with placeholders in them, and where each placeholder sits."""

    sql: str
    params: tuple[Any, ...]
    bindings: tuple[tuple[int, str], ...]  # parameter position -> placeholder name
    compiler: SQLCompiler

    def execute(self, values: Mapping[str, Any], connection: BaseDatabaseWrapper) -> list[Sequence[Any]]:
        """The shape's rows (as the database returns them) for ``values``."""
        params = list(self.params)
        for position, name in self.bindings:
            params[position] = _adapt(name, values[name], connection)
        with connection.cursor() as cursor:
            cursor.execute(self.sql, params)
            rows: list[Sequence[Any]] = cursor.fetchall()
            return rows

    def converted(self, values: Mapping[str, Any], connection: BaseDatabaseWrapper) -> Iterator[Sequence[Any]]:
        """The rows for ``values``, each column converted by its field as the ORM would."""
        return self.compiler.results_iter(results=[self.execute(values, connection)], tuple_expected=True)

    @cached_property
    def model_plan(self) -> tuple[Any, int, int, list[str], list[Any]]:
        """How a row becomes a model instance (Django's ModelIterable): the model, where its columns
        start and end, their attribute names, the ``select_related`` populators; worked out once."""
        compiler = self.compiler
        klass_info = compiler.klass_info
        if klass_info is None:
            raise TypeError("instances reads a model query's rows")
        start, end = klass_info["select_fields"][0], klass_info["select_fields"][-1] + 1
        attnames = [column[0].target.attname for column in compiler.select[start:end]]
        populators = get_related_populators(klass_info, compiler.select, compiler.using)
        return klass_info["model"], start, end, attnames, populators


def compile_shape(
    query: QuerySet[Any], names: Collection[str], *, required: Collection[str], alias: str
) -> Compiled | None:
    """Compile ``query`` (built with the placeholders of ``names``) for reuse, or None when it cannot be
    kept: a ``required`` placeholder is not a parameter, or a placeholder is written into the SQL."""
    connection = connections[alias]
    compiler = query.query.get_compiler(using=alias)
    try:
        sql, params = compiler.as_sql()
    except EmptyResultSet:
        return None
    adapted = {name: _adapt(name, PLACEHOLDERS[name][0], connection) for name in names}
    bindings = tuple(
        (position, name) for position, param in enumerate(params) for name, value in adapted.items() if param == value
    )
    found = {name for _, name in bindings}
    inlined = any(str(value) in sql for value in adapted.values())
    if not set(required) <= found or inlined:
        return None
    return Compiled(sql, tuple(params), bindings, compiler)


def kept(alias: str, cache: str) -> dict[Hashable, Any]:
    """The shapes kept under ``cache`` for this process's connection ``alias``."""
    shapes: dict[Hashable, Any] = connections[alias].__dict__.setdefault(cache, {})
    return shapes


def shape(
    cache: str, key: Hashable, build: Callable[..., QuerySet[Any]], values: Mapping[str, Any], *, alias: str
) -> Compiled | None:
    """The shape ``key`` kept under ``cache``, compiled at its first use from ``build`` called with the
    placeholders of ``values`` (every one of them required as a parameter); None when it cannot be
    kept (logged once), and the caller then runs ``build(**values)`` the ordinary way."""
    shapes = kept(alias, cache)
    if key not in shapes:
        shapes[key] = compile_shape(build(**placeholders(values)), values, required=values, alias=alias)
        if shapes[key] is None:
            logger.warning("A query's values are not all parameters; its shape is not kept (%s)", key)
    compiled: Compiled | None = shapes[key]
    return compiled


def instances(compiled: Compiled, values: Mapping[str, Any], alias: str) -> list[Any]:
    """The rows of a compiled model query as model instances, with their ``select_related`` rows and
    annotations: what iterating the query would give (Django's ModelIterable, without the related
    objects a queryset may be told it already knows, which a kept shape never is)."""
    model, start, end, attnames, populators = compiled.model_plan
    annotations = compiled.compiler.annotation_col_map.items()
    found = []
    for row in compiled.converted(values, connections[alias]):
        instance = model.from_db(alias, attnames, row[start:end])
        for populator in populators:
            populator.populate(row, instance)
        for name, position in annotations:
            setattr(instance, name, row[position])
        found.append(instance)
    return found


def first_instance(compiled: Compiled, values: Mapping[str, Any], alias: str) -> Any:
    """The first instance :func:`instances` reads, or None: ``QuerySet.first()`` for a query whose
    filter finds at most one row (its SQL has no ORDER BY or LIMIT of ``first()``'s)."""
    found = instances(compiled, values, alias)
    return found[0] if found else None
