"""Check a FHIR R4 Bundle before anything of it reaches the database.

In order, each step refusing the bundle with a list of :class:`Problem` (a JSON path and a plain
message, never a value from the file: a value may be a patient's name or identifier):

1. the file's size (``FHIR_MAX_BUNDLE_BYTES``), before it is read;
2. the JSON itself, and its nesting depth (``FHIR_MAX_JSON_DEPTH``);
3. the bundle's shape (a ``transaction``, ``batch`` or ``collection`` Bundle with entries);
4. the whole bundle against the official R4 JSON schema (``FHIR_SCHEMA_PATH``, compiled once per
   process with jsonschema-rs); only if it fails, each entry's resource against its own definition
   (to say which entry) and then the whole bundle again (for the bundle's own elements);
5. the elements the importer needs for each type it imports (exchange/fhir/mapping.py), dates
   parsed for real (the schema's patterns accept 31 February);
6. references: every ``urn:uuid:`` one resolves to an entry of the bundle, every conditional one
   (``Organization?identifier=system|value``) to an entry or to something already known.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema_rs
from django.conf import settings

from exchange.fhir.mapping import DIRECTORY_TYPES, IMPORTED_TYPES, Extracted, FieldProblem, extract

BUNDLE_TYPES = frozenset({"transaction", "batch", "collection"})
CONDITIONAL = re.compile(r"^(?P<type>[A-Za-z]+)\?identifier=(?P<system>[^|]*)\|(?P<value>.+)$")
RELATIVE = re.compile(r"^(?P<type>[A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})$")
# jsonschema-rs error kinds in words. Its own messages quote the offending value, which may be
# patient data, so they are never shown.
_KIND_WORDS = {
    "AdditionalProperties": "has elements FHIR R4 does not define here",
    "Const": "has an unexpected value",
    "Constant": "has an unexpected value",
    "Enum": "is not one of the allowed codes",
    "Pattern": "is malformed (does not have the format FHIR R4 requires)",
    "Required": "lacks a required element",
    "Type": "has the wrong JSON type",
    "MinItems": "is an empty list",
    "MinLength": "is empty",
    "OneOf": "matches no FHIR R4 type allowed here",
    "OneOfNotValid": "matches no FHIR R4 type allowed here",
    "OneOfMultipleValid": "matches more than one FHIR R4 type",
}

# Answers "is this conditional reference's target already known?" (type, system, value).
KnownTarget = Callable[[str, str, str], bool]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a bundle: where (a JSON path such as ``entry[12].resource.subject``) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class BundleInvalid(Exception):
    """The bundle was refused; ``problems`` says where and why. Nothing of it was written."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(str(p) for p in problems[:5]))
        self.problems = problems

    def __reduce__(self) -> tuple[type, tuple[list[Problem]]]:
        # Pickled with its problems (the importer validates ahead in a second process), not its message.
        return (type(self), (self.problems,))


@dataclass
class Entry:
    """One entry of a validated bundle, with what the importer needs of it."""

    index: int
    resource_type: str
    resource_id: str
    full_url: str
    resource: dict[str, Any]
    extracted: Extracted | None = None


@dataclass
class ValidBundle:
    entries: list[Entry] = field(default_factory=list)
    # Conditional reference text -> the entry of this bundle it names (None: known from before).
    conditional: dict[str, Entry | None] = field(default_factory=dict)
    by_full_url: dict[str, Entry] = field(default_factory=dict)
    # "Type/id" -> the entry (relative references inside the bundle).
    by_relative: dict[str, Entry] = field(default_factory=dict)

    def resolve(self, reference: str) -> Entry | None:
        """The entry of this bundle a reference names, or None (a conditional one known from before)."""
        if reference in self.by_full_url:
            return self.by_full_url[reference]
        if reference in self.conditional:
            return self.conditional[reference]
        return self.by_relative.get(reference)


def _path(parts: Iterator[str | int] | list[str | int]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


@lru_cache(maxsize=1)
def _schema() -> tuple[dict[str, Any], Any]:
    """The R4 schema, and its validator of a whole resource, compiled once per process."""
    schema_path = Path(settings.FHIR_SCHEMA_PATH)
    try:
        schema = json.loads(schema_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise RuntimeError(f"The FHIR R4 schema could not be read from FHIR_SCHEMA_PATH ({schema_path})") from error
    return schema, jsonschema_rs.Draft6Validator(schema)


@lru_cache(maxsize=256)
def _validator_for(resource_type: str) -> Any:
    """A validator of one resource type's definition, compiled on first use (tens of milliseconds;
    compiling every definition of the schema up front takes minutes)."""
    schema, _ = _schema()
    return jsonschema_rs.Draft6Validator(
        {"$ref": f"#/definitions/{resource_type}", "definitions": schema["definitions"]}
    )


def resource_types() -> frozenset[str]:
    """The resource types the R4 schema defines."""
    schema, _ = _schema()
    return frozenset(schema["discriminator"]["mapping"])


def _read(path: Path) -> bytes:
    """The bytes of ``path``, refused (BundleInvalid) when it cannot be read or is too big."""
    limit = settings.FHIR_MAX_BUNDLE_BYTES
    try:
        size = path.stat().st_size
    except OSError as error:
        raise BundleInvalid([Problem("", f"the file cannot be read ({error.strerror})")]) from error
    if size > limit:
        raise BundleInvalid(
            [Problem("", f"the file is {size} bytes, over the limit of {limit} (FHIR_MAX_BUNDLE_BYTES)")]
        )
    try:
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except OSError as error:  # a directory named *.json, a file removed meanwhile, no permission
        raise BundleInvalid([Problem("", f"the file cannot be read ({error.strerror})")]) from error
    return data


def read_bundle(path: Path) -> dict[str, Any]:
    """The parsed JSON of ``path``, refused (BundleInvalid) when too big, not JSON or nested too deep."""
    return parse_bundle(_read(path))


def read_valid_bundle(path: Path, *, known: KnownTarget) -> ValidBundle:
    """``validate_bundle(read_bundle(path))``, walking the parsed JSON once for its depth and its
    references (steps 2 and 6) instead of once for each."""
    parsed, references = _parse(_read(path))
    return validate_bundle(parsed, known=known, _references_seen=references)


def parse_bundle(data: bytes) -> dict[str, Any]:
    """Parse bundle JSON, refusing invalid JSON, a size over the limit and nesting deeper than allowed."""
    parsed, _ = _parse(data)
    return parsed


def _parse(data: bytes) -> tuple[dict[str, Any], list[str]]:
    """:func:`parse_bundle`, and every ``reference`` string anywhere in the JSON (from the same walk)."""
    limit = settings.FHIR_MAX_BUNDLE_BYTES
    if len(data) > limit:
        raise BundleInvalid([Problem("", f"the file is over the limit of {limit} bytes (FHIR_MAX_BUNDLE_BYTES)")])
    try:
        parsed = json.loads(data)
    except RecursionError as error:
        raise BundleInvalid([Problem("", "the JSON is nested too deeply")]) from error
    except UnicodeDecodeError as error:
        raise BundleInvalid([Problem("", "the file is not UTF-8 text")]) from error
    except json.JSONDecodeError as error:
        # Line and column only: the message of a JSONDecodeError carries no document text.
        raise BundleInvalid([Problem("", f"invalid JSON at line {error.lineno}, column {error.colno}")]) from error
    except ValueError as error:
        # Python refuses to convert an integer of more than 4,300 digits (its message names no value).
        raise BundleInvalid([Problem("", "the JSON holds a number with too many digits")]) from error
    depth, references = _scan(parsed)
    if depth > settings.FHIR_MAX_JSON_DEPTH:
        raise BundleInvalid(
            [
                Problem(
                    "",
                    f"the JSON is nested {depth} levels deep, over {settings.FHIR_MAX_JSON_DEPTH} (FHIR_MAX_JSON_DEPTH)",
                )
            ]
        )
    if not isinstance(parsed, dict):
        raise BundleInvalid([Problem("", "the file is not a JSON object")])
    return parsed, references


_CONTAINERS = (dict, list)


def _scan(value: Any) -> tuple[int, list[str]]:
    """How many levels of objects and arrays are nested in parsed JSON (0 for a scalar), and the
    string value of every ``reference`` member of an object, anywhere (in no particular order).

    Walked level by level, keeping only the containers of each level: a bundle is mostly strings,
    and a stack of every value with its level cost as much as parsing the file. ``json.loads`` makes
    plain dicts and lists only, so their exact types are asked (the cheapest test). The references
    come with the depth because both need every container visited, and a second walk cost as much
    as the first (the reference check, step 6, reads them: :func:`_check_references`)."""
    deepest = 0
    references: list[str] = []
    found = references.append
    level = [value] if type(value) in _CONTAINERS else []
    while level:
        deepest += 1
        below: list[Any] = []
        add = below.extend
        for item in level:
            if type(item) is dict:
                reference = item.get("reference")
                if type(reference) is str:
                    found(reference)
                add([child for child in item.values() if type(child) in _CONTAINERS])
            else:
                add([child for child in item if type(child) in _CONTAINERS])
        level = below
    return deepest, references


def validate_bundle(
    bundle: dict[str, Any], *, known: KnownTarget, _references_seen: list[str] | None = None
) -> ValidBundle:
    """Check a parsed bundle (steps 3 to 6 above); BundleInvalid lists every problem found.

    ``_references_seen``: every reference string of ``bundle``, from the walk that just parsed it
    (:func:`read_valid_bundle` only; otherwise the bundle is walked here)."""
    problems: list[Problem] = []
    if bundle.get("resourceType") != "Bundle":
        raise BundleInvalid([Problem("resourceType", "is not Bundle")])
    if bundle.get("type") not in BUNDLE_TYPES:
        raise BundleInvalid([Problem("type", "is not a transaction, batch or collection bundle")])
    raw_entries = bundle.get("entry", [])
    if not isinstance(raw_entries, list):
        raise BundleInvalid([Problem("entry", "is not a list")])
    schema, whole = _schema()
    types = frozenset(schema["discriminator"]["mapping"])
    # One pass of the whole bundle first (what a valid bundle costs). Every entry's resource is one of
    # the schema's ResourceList, each definition fixing its resourceType, so a bundle valid whole has
    # every entry valid against its own type: the per-entry pass below, which says where a problem is,
    # runs only for a bundle that is not (and then exactly as before, so the problems are the same).
    try:
        schema_valid = whole.is_valid(bundle)
    except UnicodeEncodeError:
        # A \\ud800-style escape the JSON parser let through: no text is made of it.
        raise BundleInvalid([Problem("", "the JSON holds an invalid Unicode escape (a lone surrogate)")]) from None
    valid = ValidBundle()
    ids_seen: dict[tuple[str, str], int] = {}
    for index, raw in enumerate(raw_entries):
        where = f"entry[{index}]"
        resource = raw.get("resource") if isinstance(raw, dict) else None
        if not isinstance(resource, dict):
            problems.append(Problem(where, "has no resource"))
            continue
        resource_type = resource.get("resourceType")
        if not isinstance(resource_type, str) or resource_type not in types:
            problems.append(Problem(f"{where}.resource.resourceType", "is not a FHIR R4 resource type"))
            continue
        errors = [] if schema_valid else list(_validator_for(resource_type).iter_errors(resource))
        for error in errors[:20]:
            problems.append(
                Problem(
                    _path([f"{where}.resource", *error.instance_path]),
                    _KIND_WORDS.get(_kind(error), "does not match the FHIR R4 schema"),
                )
            )
        if errors:
            continue
        entry = Entry(
            index=index,
            resource_type=resource_type,
            resource_id=str(resource.get("id", "")),
            full_url=str(raw.get("fullUrl", "")),
            resource=resource,
        )
        if resource_type in IMPORTED_TYPES:
            try:
                entry.extracted = extract(resource)
            except FieldProblem as problem:
                inner = re.sub(r"\.(\d+)", r"[\1]", problem.path)
                problems.append(Problem(f"{where}.resource.{inner}".rstrip("."), problem.message))
                continue
            if not entry.resource_id:
                problems.append(Problem(f"{where}.resource.id", "is missing (needed to re-import without duplicates)"))
                continue
        if entry.full_url:
            if entry.full_url in valid.by_full_url:
                # bdl-7: a fullUrl names one resource; a second would silently take its references.
                problems.append(Problem(f"{where}.fullUrl", "repeats the fullUrl of an earlier entry"))
                continue
            valid.by_full_url[entry.full_url] = entry
        if entry.resource_id and resource_type in IMPORTED_TYPES and resource_type not in DIRECTORY_TYPES:
            key = (resource_type, entry.resource_id)
            if key in ids_seen:
                # A record's rows are matched by type and id on re-import: two resources with one id
                # (of two patients, or two Patients) would be one, the second dropped. (The directory's
                # Practitioners and Organizations repeat in some exports and are one entry anyway.)
                problems.append(Problem(f"{where}.resource.id", f"repeats the id of entry[{ids_seen[key]}]"))
                continue
            ids_seen[key] = index
        valid.entries.append(entry)
    if not problems and not schema_valid:
        # The entries passed one by one; the bundle's own elements (fullUrl, request...) are checked whole.
        for error in list(whole.iter_errors(bundle))[:20]:
            problems.append(
                Problem(
                    _path(list(error.instance_path)), _KIND_WORDS.get(_kind(error), "does not match the FHIR R4 schema")
                )
            )
    if not problems:
        seen = _scan(bundle)[1] if _references_seen is None else _references_seen
        problems.extend(_check_references(valid, known, seen))
    if problems:
        raise BundleInvalid(problems)
    return valid


def _kind(error: Any) -> str:
    name = type(error.kind).__name__
    return name.rsplit("_", 1)[-1]


def _identifiers(resource: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for identifier in resource.get("identifier", []):
        yield str(identifier.get("system", "")), str(identifier.get("value", ""))


def _references(value: Any, path: list[str | int]) -> Iterator[tuple[list[str | int], str]]:
    """Every ``reference`` string under ``value``, with its path. ``path`` is extended and restored
    as the walk goes (a copy is yielded), and scalars are not walked into: a bundle is mostly strings."""
    if isinstance(value, dict):
        for key, child in value.items():
            if key == "reference" and isinstance(child, str):
                yield [*path, key], child
            elif isinstance(child, dict | list):
                path.append(key)
                yield from _references(child, path)
                path.pop()
    elif isinstance(value, list):
        for index, child in enumerate(value):
            if isinstance(child, dict | list):
                path.append(index)
                yield from _references(child, path)
                path.pop()


def _check_references(valid: ValidBundle, known: KnownTarget, seen: list[str]) -> list[Problem]:
    """Step 6 for every reference in the entries' resources. ``seen`` is every reference string in
    the bundle (:func:`_scan`): when each of them resolves, so does each of the resources' and the
    bundle passes without a walk for their paths; otherwise the resources are walked again, path by
    path, and each reference that does not resolve is a problem (those outside a resource, such as
    a signature's, are not checked, as before)."""
    by_identifier: dict[tuple[str, str, str], Entry] = {}
    by_relative = valid.by_relative
    for entry in valid.entries:
        for system, value in _identifiers(entry.resource):
            by_identifier.setdefault((entry.resource_type, system, value), entry)
        if entry.resource_id:
            by_relative[f"{entry.resource_type}/{entry.resource_id}"] = entry
    answers: dict[str, str | None] = {}
    for reference in seen:
        if reference not in answers:
            answers[reference] = _resolve(valid, by_identifier, known, reference)
    if not any(answers.values()):
        return []
    problems: list[Problem] = []
    for entry in valid.entries:
        for path, reference in _references(entry.resource, [f"entry[{entry.index}]", "resource"]):
            if reference not in answers:  # not seen by the walk that parsed the bundle: asked now
                answers[reference] = _resolve(valid, by_identifier, known, reference)
            problem = answers[reference]
            if problem:
                problems.append(Problem(_path(path), problem))
    return problems


def _resolve(
    valid: ValidBundle, by_identifier: dict[tuple[str, str, str], Entry], known: KnownTarget, reference: str
) -> str | None:
    """Why ``reference`` does not resolve (None: it does); a conditional one found is noted in ``valid``."""
    if reference.startswith("#"):
        return None  # a contained resource
    if reference.startswith("urn:uuid:"):
        return None if reference in valid.by_full_url else "points to no entry of this bundle"
    match = CONDITIONAL.match(reference)
    if match:
        target = (match["type"], match["system"], match["value"])
        if target in by_identifier:
            valid.conditional[reference] = by_identifier[target]
        elif known(*target):
            valid.conditional[reference] = None
        else:
            return "is a conditional reference that matches nothing imported"
        return None
    if RELATIVE.match(reference) and reference in valid.by_relative:
        return None
    return "cannot be resolved (only urn:uuid and conditional references are)"
