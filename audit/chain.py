"""Tamper evidence for the audit trail: a MAC on every event, and HMAC hash chains sealed off the request path.

Two steps (docs/decisions/0006-audit-chain.md):

1. **Writing** (the request): an event row is inserted with a random ``nonce`` and ``mac = HMAC(key,
   canonical(row))`` and no place in a chain (``seq`` NULL, ``hash`` empty). No shared row is read or
   locked, so concurrent requests never wait for each other. The mac proves the application wrote the
   row (the key is not in the database); a unique index on it refuses a copy of a genuine row.
2. **Sealing** (``manage.py seal_audit --loop`` beside the web workers, or right after each commit on
   SQLite: audit/sealer.py): committed unsealed rows are linked, in batches, onto their stream's
   chain: ``hash = HMAC(key, "link" | mac | prev_hash | stream | partition | seq)``. The append-only
   triggers allow exactly this one UPDATE of an unsealed row's chain columns, nothing else.

``AuditChainHead`` holds each chain's last ``seq`` and ``hash``. A changed row breaks its mac, a
deleted sealed row leaves a gap in ``seq``, an inserted row has no valid mac, a removed tail no longer
reaches the head, and a row left unsealed longer than the sealing delay is reported by ``verify_audit``.

Rows sealed before this scheme (``mac`` empty, "v1") were hashed in the request over a JSON form of
their columns as they were then (:data:`V1_FIELDS`); ``verify_audit`` still checks them that way.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Mapping, Sequence
from functools import cache, lru_cache
from typing import Any, TypeVar

from django.conf import settings
from django.core.signals import setting_changed
from django.db import connections, models, transaction
from django.db.models import F
from django.dispatch import receiver
from django.utils import timezone

from healthcrypt.bulk import copy_rows
from healthcrypt.crypto import decode_key

GENESIS = "0" * 64
# Columns that are not content: the row's id, its place in a chain, and its own MAC.
CHAIN_FIELDS = ("id", "partition", "seq", "prev_hash", "hash", "mac")
SEAL_PARTITION = 0  # the sealer links every stream onto one chain (partition) of its own
# The content columns of rows sealed by the first scheme, per stream, frozen: their hash covered these.
# fmt: off
V1_FIELDS: dict[str, tuple[str, ...]] = {
    "access": (
        "at", "actor_id", "actor_username", "actor_role", "patient_id", "category", "action", "purpose",
        "explanation", "detail", "ip", "user_agent", "request_id", "session_ref",
    ),
    "change": (
        "at", "actor_id", "actor_username", "actor_role", "patient_id", "category", "action", "object_type",
        "object_id", "fields", "ip", "user_agent", "request_id",
    ),
    "auth": ("at", "event", "actor_id", "target_id", "username", "ip", "user_agent", "detail"),
    "direct": (
        "at", "direct_change_id", "change_at", "table_name", "operation", "row_id", "actor_marker", "db_user",
        "client_addr", "backend_pid", "txid", "application_name", "command", "verified", "actor",
    ),
}
# fmt: on


class AuditChainHead(models.Model):
    """The last link of one chain. Moved only by the sealer, in the transaction that seals."""

    stream = models.CharField(max_length=16)
    partition = models.PositiveSmallIntegerField()
    last_seq = models.BigIntegerField(default=0)
    last_hash = models.CharField(max_length=64, default=GENESIS)

    class Meta:
        app_label = "audit"
        constraints = [models.UniqueConstraint(fields=["stream", "partition"], name="audit_chain_head_unique")]

    def __str__(self) -> str:
        return f"Chain {self.stream}/{self.partition} at {self.last_seq}"


class Chained(models.Model):
    """Abstract base of every audit event model: the MAC and chain columns."""

    STREAM = ""

    # Every chained model has its own ``at`` column (a DateTimeField); declared here for the writer,
    # which stamps rows that have none. An annotation only: no column is added to the abstract base.
    at: datetime.datetime

    nonce = models.CharField(max_length=24, default="", editable=False)
    mac = models.CharField(max_length=64, default="", editable=False)
    partition = models.PositiveSmallIntegerField(null=True, editable=False)
    seq = models.BigIntegerField(null=True, editable=False)
    prev_hash = models.CharField(max_length=64, default="", editable=False)
    hash = models.CharField(max_length=64, default="", editable=False)

    class Meta:
        abstract = True


_C = TypeVar("_C", bound=Chained)


def content_fields(model: type[Chained]) -> list[str]:
    """The columns a row's mac covers: every concrete column except the id, the chain's and the mac."""
    return [f.attname for f in model._meta.concrete_fields if f.attname not in CHAIN_FIELDS]


# --- The canonical form (v2): fixed field order, one cheap encoder per column type -----------------


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _instant(value: Any) -> str:
    # In UTC, as both databases return them (a caller may have stamped another zone); exact to the microsecond.
    return "" if value is None else value.astimezone(datetime.UTC).isoformat()


def _json(value: Any) -> str:
    # Most events carry an empty detail; only non-empty ones pay for a dump.
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True) if value else ""


def _flag(value: Any) -> str:
    return "" if value is None else ("1" if value else "0")


def _encoder(field: models.Field[Any, Any]) -> Callable[[Any], str]:
    if isinstance(field, models.DateTimeField):
        return _instant
    if isinstance(field, models.JSONField):
        return _json
    if isinstance(field, models.BooleanField):
        return _flag
    return _text


@cache
def _plan(model: type[Chained]) -> tuple[tuple[str, ...], tuple[Callable[[Any], str], ...], tuple[Any, ...]]:
    """The content columns' names, their encoders, and the IP address fields (by position)."""
    fields = [f for f in model._meta.concrete_fields if f.attname not in CHAIN_FIELDS]
    addresses = tuple((i, f) for i, f in enumerate(fields) if isinstance(f, models.GenericIPAddressField))
    return tuple(f.attname for f in fields), tuple(_encoder(f) for f in fields), addresses


def canonical_v2(model: type[Chained], values: Sequence[Any]) -> bytes:
    """The bytes a row's mac covers: its stream, then each non-empty content column (in
    :func:`content_fields` order, the order of ``values``) as ``name=length:text``, so no value can run
    into the next. Empty values (None, "", {}, []) are left out, so a column added later with an empty
    default leaves the macs of the rows written before it unchanged."""
    names, encoders, _ = _plan(model)
    parts = [model.STREAM]
    for name, encode, value in zip(names, encoders, values, strict=True):
        text = encode(value)
        if text:
            parts.append(f"{name}={len(text)}:{text}")
    return "|".join(parts).encode()


@lru_cache(maxsize=1)
def _key() -> bytes:
    return decode_key(settings.AUDIT_HMAC_KEY, name="AUDIT_HMAC_KEY")


@receiver(setting_changed)
def _reset_key(*, setting: str, **kwargs: Any) -> None:
    if setting == "AUDIT_HMAC_KEY":
        _key.cache_clear()


def row_mac(model: type[Chained], values: Sequence[Any]) -> str:
    """The mac of a row whose content columns hold ``values`` (in :func:`content_fields` order)."""
    return hmac.new(_key(), canonical_v2(model, values), hashlib.sha256).hexdigest()


def link(stream: str, mac: str, prev_hash: str, partition: int, seq: int) -> str:
    """The hash that puts a row (known by its mac) at ``seq`` of a chain, after ``prev_hash``."""
    message = f"link|{mac}|{prev_hash}|{stream}|{partition}|{seq}".encode()
    return hmac.new(_key(), message, hashlib.sha256).hexdigest()


def _prepared(model: type[Chained], row: Chained) -> list[Any]:
    """The row's content values in mac order, as the database will return them."""
    names, _, addresses = _plan(model)
    values = [getattr(row, name) for name in names]
    for i, field in addresses:
        if values[i]:
            values[i] = field.get_prep_value(values[i])  # the form stored and returned (IPv6 normalised)
    return values


def stamp(rows: Sequence[_C]) -> None:
    """Give each new row its instant (if it has none), a nonce and its mac: ready to insert unsealed."""
    if not rows:
        return
    model = type(rows[0])
    now = timezone.now()
    for row in rows:
        if getattr(row, "at", None) is None:
            row.at = now
        row.nonce = secrets.token_urlsafe(18)
        row.mac = row_mac(model, _prepared(model, row))
        row.partition, row.seq, row.prev_hash, row.hash = None, None, "", ""


def insert_unsealed(rows: Sequence[_C]) -> list[_C]:
    """Insert new event rows of one model with their macs, unsealed: one INSERT, no shared row touched.

    The sealer (audit/sealer.py) links them into their chain after the transaction commits; on a
    database where ``AUDIT_SEAL_ON_COMMIT`` is on (SQLite by default) it runs right after the commit.
    """
    if not rows:
        return []
    stamp(rows)
    model = type(rows[0])
    created = _insert(model, rows)
    if getattr(settings, "AUDIT_SEAL_ON_COMMIT", False):
        from audit.sealer import seal_after_commit

        seal_after_commit()
    return created


# Column types whose values travel as JSON themselves (not as text) in _insert's JSON rows.
_JSON_TYPES = frozenset({"jsonb", "json"})
_DIFFERS = object()


def _with_slots(selected: list[str], shared: list[bool]) -> list[Any]:
    """The SELECT list in column order: the shared columns' casts, a slot for each differing one."""
    parts = iter(selected)
    return [next(parts) if same else _DIFFERS for same in shared]


def _json_rows(arrays: list[tuple[str, list[Any]]]) -> str | None:
    """The differing columns' prepared values as a JSON array of rows, or None when a value has no
    exact JSON form here (then they travel as arrays): text, integers, booleans, NULL, aware instants
    (ISO 8601 with their offset, which the database parses to the same microsecond), and the value of
    a JSON column dumped by the standard encoder."""
    from psycopg.types.json import Jsonb  # PostgreSQL only (the caller's branch)

    columns: list[list[Any]] = []
    for db_type, column in arrays:
        if db_type in _JSON_TYPES:
            out = []
            for value in column:
                # Django's Jsonb adapter with the default encoder; NULL would become JSON null here.
                if type(value) is not Jsonb or value.obj is None or getattr(value, "dumps", None) is not json.dumps:
                    return None
                out.append(value.obj)
            columns.append(out)
            continue
        out = []
        for value in column:
            kind = type(value)
            # int subclasses too: psycopg's Int8 and the like, which the fields prepare for bigint columns.
            if value is None or kind is str or isinstance(value, int):
                out.append(value)
            elif kind is datetime.datetime and value.tzinfo is not None:
                out.append(value.isoformat())
            else:
                return None
        columns.append(out)
    return json.dumps([list(row) for row in zip(*columns, strict=True)], separators=(",", ":"))


def _insert(model: type[_C], rows: Sequence[_C]) -> list[_C]:
    """``bulk_create`` of stamped rows; on PostgreSQL, a column whose value every row shares is sent once.

    The rows of one batch (an import's change events) share most columns: the instant, the actor, the
    category, the fields named... Django's bulk INSERT sends every column as an array with a value per
    row, each quoted in Python, which was most of the cost of writing an import's change events. Here
    a shared value is a single parameter and only the columns that differ (ids, nonce, mac) are
    arrays; the values are prepared by the fields as Django prepares them, and the rows get their
    primary keys back in order, as from ``bulk_create``.
    """
    using = model._default_manager.db
    connection = connections[using]
    fields = [field for field in model._meta.concrete_fields if not field.primary_key]
    # Array element types without their length (as Django's own UNNEST insert: varchar[], not varchar(64)[]).
    db_types = [(field.db_type(connection) or "").split("(")[0] for field in fields]
    if (
        connection.vendor != "postgresql"
        or len(rows) < 2
        or not isinstance(model._meta.pk, models.AutoField)
        or not all(db_types)
        or any(field.db_default is not models.NOT_PROVIDED or field.generated for field in fields)
    ):
        return list(model._default_manager.bulk_create(rows))
    values = [[field.pre_save(row, True) for row in rows] for field in fields]
    shared: list[bool] = []
    for column in values:
        first = (type(column[0]), column[0])
        shared.append(all((type(value), value) == first for value in column))
    if all(shared):
        return list(model._default_manager.bulk_create(rows))
    quote = connection.ops.quote_name
    selected: list[str] = []
    params: list[Any] = []
    arrays: list[tuple[str, list[Any]]] = []
    for field, db_type, column, same in zip(fields, db_types, values, shared, strict=True):
        if same:
            selected.append(f"(%s)::{db_type}")
            params.append(field.get_db_prep_save(column[0], connection))
        else:
            arrays.append((db_type, [field.get_db_prep_save(value, connection) for value in column]))
    # Names and types from the model's own fields, quoted; every value is a parameter.
    table, pk = quote(model._meta.db_table), quote(model._meta.pk.column)
    columns = ", ".join(quote(field.column) for field in fields)
    as_json = _json_rows(arrays)
    if as_json is not None:
        # The differing columns as one JSON document of rows (json.dumps in C, one value to quote),
        # each value read back as text (``->>``, NULL for null) and cast to its column's type as an
        # array element would be, a JSON column's value taken as it is; in the order of the rows.
        differing = iter(
            f"(u.e->{i})::{db_type}" if db_type in _JSON_TYPES else f"(u.e->>{i})::{db_type}"
            for i, (db_type, _) in enumerate(arrays)
        )
        select = ", ".join(part if part != _DIFFERS else next(differing) for part in _with_slots(selected, shared))
        params.append(as_json)
        sql = (
            f"INSERT INTO {table} ({columns}) SELECT {select} "  # noqa: S608
            f"FROM json_array_elements((%s)::json) WITH ORDINALITY AS u(e, n) ORDER BY u.n RETURNING {pk}"
        )
    else:
        # The array parameters come after the shared ones in the statement: SELECT list first, then FROM.
        params.extend(array for _, array in arrays)
        slots = iter(f"u.c{i}" for i in range(len(arrays)))
        select = ", ".join(part if part != _DIFFERS else next(slots) for part in _with_slots(selected, shared))
        unnest = ", ".join(f"(%s)::{db_type}[]" for db_type, _ in arrays)
        aliases = ", ".join(f"c{i}" for i in range(len(arrays)))
        sql = f"INSERT INTO {table} ({columns}) SELECT {select} FROM unnest({unnest}) AS u({aliases}) RETURNING {pk}"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        keys = [key for (key,) in cursor.fetchall()]
    if len(keys) != len(rows):
        raise RuntimeError("The database did not return one key per event row inserted")
    for row, key in zip(rows, keys, strict=True):
        row.pk = key
        row._state.adding = False
        row._state.db = using
    return list(rows)


# One batch of rows given as columns: (the values the batch's rows share, each row's differing values).
Batch = tuple[Mapping[str, Any], Sequence[Sequence[Any]]]


def _copy_value(field: models.Field[Any, Any], value: Any, connection: Any) -> Any:
    """``value`` prepared for a COPY into ``field``'s column: as Django prepares it, but a JSON column's
    value as its JSON text (which the server parses as it would the adapter's), dumped once per batch
    instead of once per row by the adapter."""
    if isinstance(field, models.JSONField):
        return None if value is None else json.dumps(value, cls=field.encoder)
    return field.get_db_prep_save(value, connection)


def insert_unsealed_batches(
    model: type[Chained], *, shared: Mapping[str, Any], varying: Sequence[str], batches: Sequence[Batch]
) -> list[int]:
    """:func:`insert_unsealed` for rows given as columns instead of model instances; their keys in order.

    ``shared``: the values of every row; each batch: the values its rows share, and per row the values
    of the ``varying`` columns, in that order. Every content column but the nonce is named exactly once
    (in ``shared``, in every batch's own, or in ``varying``); ``at`` must be given.

    An import writes one change event per row it imports, and the events of a bundle share everything
    but the kind of row (a batch) and the patient and object (each row): building a model instance per
    event, stamping it and preparing each of its columns for the database was most of the cost of the
    events. Here what is shared is encoded for the mac (and on PostgreSQL prepared for the database)
    once; per row only the differing columns, a nonce and the mac. The mac covers the same bytes
    :func:`canonical_v2` makes of the stored row, and the rows go in as :func:`insert_unsealed`'s do:
    unsealed, in order, keys from the table's sequence (a COPY on PostgreSQL, healthcrypt/bulk.py;
    elsewhere ``bulk_create`` of instances made from the same values)."""
    names, encoders, addresses = _plan(model)
    within = set(batches[0][0]) if batches else set()
    given = [*shared, *within, *varying]
    if "at" not in given or sorted(given) != sorted(name for name in names if name != "nonce"):
        raise ValueError("Every content column but the nonce is given exactly once, the instant among them")
    if any(set(own) != within for own, _ in batches):
        raise ValueError("Every batch gives the same columns")
    if not any(rows for _, rows in batches):
        return []
    fields = {field.attname: field for field in model._meta.concrete_fields}
    address_names = {field.attname for _, field in addresses}

    def stored(name: str, value: Any) -> Any:
        # The form the database stores and returns (an IPv6 address normalised), which the mac covers.
        return fields[name].get_prep_value(value) if name in address_names and value else value

    position = {name: index for index, name in enumerate(varying)}
    key = _key()
    # Per batch, its fixed columns' values; per row, its batch, its varying values, nonce and mac.
    fixed_of: list[dict[str, Any]] = []
    made: list[tuple[int, list[Any], str, str]] = []
    for batch, (own, rows) in enumerate(batches):
        fixed = {name: stored(name, value) for name, value in (*shared.items(), *own.items())}
        fixed_of.append(fixed)
        # The canonical form as pieces: the fixed columns' text once ("name=length:text", joined with
        # the stream and each other where adjacent), a varying column's place and encoder per row.
        pieces: list[str | tuple[int, str, Callable[[Any], str]]] = [model.STREAM]
        for name, encode in zip(names, encoders, strict=True):
            if name == "nonce":
                pieces.append((-1, name, encode))
            elif name in fixed:
                text = encode(fixed[name])
                if text:
                    if isinstance(pieces[-1], str):
                        pieces[-1] = f"{pieces[-1]}|{name}={len(text)}:{text}"
                    else:
                        pieces.append(f"{name}={len(text)}:{text}")
            else:
                pieces.append((position[name], name, encode))
        for row in rows:
            values = [stored(name, value) for name, value in zip(varying, row, strict=True)]
            nonce = secrets.token_urlsafe(18)
            parts = []
            for piece in pieces:
                if isinstance(piece, str):
                    parts.append(piece)
                    continue
                index, name, encode = piece
                text = encode(nonce if index < 0 else values[index])
                if text:
                    parts.append(f"{name}={len(text)}:{text}")
            made.append((batch, values, nonce, hmac.new(key, "|".join(parts).encode(), hashlib.sha256).hexdigest()))
    connection = connections[model._default_manager.db]
    if connection.vendor == "postgresql":
        keys = copy_rows(model, _copy_rows(model, fixed_of, varying, made, connection))
    else:
        instances = [
            model(**fixed_of[batch], **dict(zip(varying, values, strict=True)), nonce=nonce, mac=mac)
            for batch, values, nonce, mac in made
        ]
        keys = [row.pk for row in model._default_manager.bulk_create(instances)]
    if getattr(settings, "AUDIT_SEAL_ON_COMMIT", False):
        from audit.sealer import seal_after_commit

        seal_after_commit()
    return keys


def _copy_rows(
    model: type[Chained],
    fixed_of: list[dict[str, Any]],
    varying: Sequence[str],
    made: list[tuple[int, list[Any], str, str]],
    connection: Any,
) -> list[list[Any]]:
    """The rows :func:`insert_unsealed_batches` made, as COPY rows (every column but the key, in
    ``_meta`` order): each batch's fixed values prepared once, unsealed (no place in a chain)."""
    columns = [field for field in model._meta.concrete_fields if not field.primary_key]
    by_name = {field.attname: field for field in columns}
    prepared_of = []
    for fixed in fixed_of:
        prepared = {name: _copy_value(by_name[name], value, connection) for name, value in fixed.items()}
        prepared.update(partition=None, seq=None, prev_hash="", hash="")
        prepared_of.append(prepared)
    varying_fields = [by_name[name] for name in varying]
    out = []
    for batch, values, nonce, mac in made:
        row = dict(prepared_of[batch], nonce=nonce, mac=mac)
        for field, value in zip(varying_fields, values, strict=True):
            # An integer or NULL goes to COPY as it is (what the integer fields would prepare).
            row[field.attname] = value if value is None or type(value) is int else _copy_value(field, value, connection)
        out.append([row[field.attname] for field in columns])
    return out


# --- The v1 form (rows sealed in the request before the sealer existed) --------------------------


def _v1_value(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, dict | list | int | float | bool) or value is None:
        return value
    return str(value)


def link_hash_v1(model: type[Chained], values: dict[str, Any], partition: int, seq: int, prev_hash: str) -> str:
    """The hash of a v1 row: HMAC over a sorted-key JSON of its v1 columns, its place, and ``prev_hash``."""
    body = {name: _v1_value(values[name]) for name in V1_FIELDS[model.STREAM]}
    body["_stream"], body["_partition"], body["_seq"] = model.STREAM, partition, seq
    message = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    return hmac.new(_key(), message + b"|" + prev_hash.encode(), hashlib.sha256).hexdigest()


# --- Heads and sealing ---------------------------------------------------------------------------


def lock_head(stream: str, partition: int) -> AuditChainHead:
    """Lock (creating it if need be) and return the head of one chain, inside the caller's transaction.

    The lock is an UPDATE, which also takes SQLite's write lock before anything is read, so two
    sealers cannot both read the same head or the same unsealed rows.
    """
    heads = AuditChainHead.objects.filter(stream=stream, partition=partition)
    if not heads.update(last_seq=F("last_seq")):
        AuditChainHead.objects.get_or_create(stream=stream, partition=partition)
        heads.update(last_seq=F("last_seq"))
    return heads.get()


def extend(head: AuditChainHead, stream: str, macs: Sequence[str]) -> list[tuple[int, str, str]]:
    """``(seq, prev_hash, hash)`` for rows with ``macs`` appended to the locked ``head``, which moves."""
    seq, prev = head.last_seq, head.last_hash
    links = []
    for mac in macs:
        seq += 1
        digest = link(stream, mac, prev, head.partition, seq)
        links.append((seq, prev, digest))
        prev = digest
    AuditChainHead.objects.filter(pk=head.pk).update(last_seq=seq, last_hash=prev)
    head.last_seq, head.last_hash = seq, prev
    return links


def seal_and_insert(rows: Sequence[_C], *, partition: int = SEAL_PARTITION) -> list[_C]:
    """Stamp ``rows`` (all of one model), link them onto a chain and insert them sealed, atomically.

    For the sealer's own rows (the direct-change seals, audit/sealing.py) and for tools that write
    history in bulk (the demo); requests use :func:`insert_unsealed` and never hold a head's lock.
    """
    if not rows:
        return []
    model = type(rows[0])
    with transaction.atomic():
        head = lock_head(model.STREAM, partition)
        stamp(rows)
        for row, (seq, prev, digest) in zip(rows, extend(head, model.STREAM, [r.mac for r in rows]), strict=True):
            row.partition, row.seq, row.prev_hash, row.hash = partition, seq, prev, digest
        return list(model._default_manager.bulk_create(rows))
