"""Signed checkpoints of the audit chains, kept outside the database (DESIGN.md §6, issue 8).

The hash chains (audit/chain.py) prove that no event *inside* a chain was altered, inserted or
removed, but a chain is only as long as its head row says. Someone with the database owner's rights
can delete the newest events of a chain and rewind the head to the last one kept: the shortened
chain is perfectly consistent. A checkpoint closes that gap. ``manage.py audit_checkpoint`` reads
every chain's head (stream, partition, last seq and hash) and every chained table's row count in
one snapshot, signs them with Ed25519 under a key the database never sees, and appends the result
as a new read-only file to a directory meant for WORM storage (optionally also announcing its
digest to syslog). ``manage.py verify_audit --checkpoints DIR`` then checks, with the *public* key,
that every checkpoint is authentic, that none is missing from the sequence, and that every head a
checkpoint recorded is still in the database with the same hash: a chain that lost its tail since
any checkpoint is named.

File format (one JSON object per file, named ``checkpoint-<sequence>-<UTC time>.json``)::

    {"payload": {...}, "signature": "<base64url Ed25519 over canonical(payload)>", "key": "<fingerprint>"}

where the payload holds ``format``, ``sequence`` (1, 2, ...), ``previous`` (SHA-256 of the previous
checkpoint file's bytes, so a removed or replaced file breaks the sequence), ``created_at``,
``chains`` (every head) and ``counts`` (rows per stream; the ``direct`` stream is the sealed
direct-database changes). No patient data is ever in a checkpoint: heads are HMACs and counts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import logging.handlers
import os
import re
import socket
from base64 import urlsafe_b64decode, urlsafe_b64encode
from binascii import Error as BinasciiError
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from django.db.models import Q

from audit.chain import AuditChainHead, Chained
from healthcrypt.crypto import decode_key

logger = logging.getLogger(__name__)

FORMAT = "healthcrypt-audit-checkpoint/1"
FILE_RE = re.compile(r"^checkpoint-(\d{8,})-\d{8}T\d{6}Z\.json$")
# A checkpoint older than this when verify_audit runs means the timer stopped: warn. The operations
# guide asks for one every 5 minutes; a day leaves room for a weekend outage without crying wolf.
STALE_AFTER = timedelta(hours=24)
# (partition, seq) pairs looked up per query when checking recorded heads against the database.
LOOKUP_BATCH = 500


class CheckpointError(Exception):
    """A checkpoint could not be made or read; the message names the file or setting, never data."""


# --- Keys ---------------------------------------------------------------------------------------


def signing_key() -> Ed25519PrivateKey:
    """The Ed25519 key that signs checkpoints, from ``AUDIT_CHECKPOINT_SIGNING_KEY``."""
    raw = getattr(settings, "AUDIT_CHECKPOINT_SIGNING_KEY", "")
    if not raw:
        raise CheckpointError(
            "AUDIT_CHECKPOINT_SIGNING_KEY is not set; `python manage.py generate_secrets` makes one "
            "(docs/operations/audit-checkpoints.md)."
        )
    try:
        return Ed25519PrivateKey.from_private_bytes(decode_key(raw, name="AUDIT_CHECKPOINT_SIGNING_KEY"))
    except ImproperlyConfigured as exc:
        raise CheckpointError(str(exc)) from None


def public_key_text(key: Ed25519PublicKey) -> str:
    """The base64url form of a public key, as AUDIT_CHECKPOINT_PUBLIC_KEY and --public-key take it."""
    return urlsafe_b64encode(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode("ascii").rstrip("=")


def fingerprint(key: Ed25519PublicKey) -> str:
    """A short, stable name of a public key (first 16 hex digits of its SHA-256)."""
    return hashlib.sha256(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()[:16]


def parse_public_key(text: str, *, name: str = "public key") -> Ed25519PublicKey:
    """A public key from base64url text, or from a file holding it."""
    value = text.strip()
    candidate = Path(value)
    if "/" in value and candidate.is_file():
        value = candidate.read_text(encoding="utf-8").strip()
    try:
        return Ed25519PublicKey.from_public_bytes(decode_key(value, name=name))
    except ImproperlyConfigured as exc:
        raise CheckpointError(str(exc)) from None


def trusted_public_key(explicit: str | None = None) -> tuple[Ed25519PublicKey, str]:
    """The key verify_audit trusts, and where it came from.

    An explicit key (``--public-key``) or ``AUDIT_CHECKPOINT_PUBLIC_KEY`` is what an auditor should
    use: a copy kept away from the database and the application host. Deriving it from the signing
    key works, but trusts the host that signs.
    """
    if explicit:
        return parse_public_key(explicit, name="--public-key"), "--public-key"
    configured = getattr(settings, "AUDIT_CHECKPOINT_PUBLIC_KEY", "")
    if configured:
        return parse_public_key(configured, name="AUDIT_CHECKPOINT_PUBLIC_KEY"), "AUDIT_CHECKPOINT_PUBLIC_KEY"
    return signing_key().public_key(), "derived from AUDIT_CHECKPOINT_SIGNING_KEY"


# --- Making a checkpoint ------------------------------------------------------------------------


def chained_models() -> dict[str, type[Chained]]:
    """Every concrete chained audit table, by stream name (new streams are picked up by themselves)."""
    models = [m for m in apps.get_app_config("audit").get_models() if issubclass(m, Chained)]
    return {m.STREAM: m for m in sorted(models, key=lambda m: m.STREAM)}


def canonical(payload: dict[str, Any]) -> bytes:
    """The exact bytes that are signed: sorted keys, no white space, ASCII only."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def snapshot() -> dict[str, Any]:
    """Every chain head and every chained table's row count, read in one consistent snapshot.

    On PostgreSQL the transaction is REPEATABLE READ, so heads and counts describe the same moment
    even while requests keep writing; SQLite's single writer gives the same inside one transaction.
    """
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        # Only the first statement of a transaction may set its isolation; inside a caller's
        # transaction (tests) that one's snapshot is used as it is.
        if connection.vendor == "postgresql" and outermost:
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        heads = [
            {"stream": h.stream, "partition": h.partition, "seq": h.last_seq, "hash": h.last_hash}
            for h in AuditChainHead.objects.order_by("stream", "partition")
            if h.last_seq > 0
        ]
        counts = {stream: model._default_manager.count() for stream, model in chained_models().items()}
    return {"chains": heads, "counts": counts}


@dataclass(frozen=True)
class Written:
    """What :func:`write_checkpoint` produced."""

    path: Path
    sequence: int
    digest: str
    chains: int
    events: int


def _existing(directory: Path) -> list[tuple[int, Path]]:
    found = []
    for path in directory.iterdir():
        match = FILE_RE.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def write_checkpoint(directory: Path, *, now: datetime | None = None, syslog_address: str = "") -> Written:
    """Sign the current heads and append them to ``directory`` as a new, read-only file.

    The file is created exclusively (never overwritten), flushed to disk with its directory entry,
    and only then reported. ``syslog_address`` (``/dev/log`` or ``host:port``) also receives the
    file's digest, a second witness outside the database.
    """
    if not directory.is_dir():
        raise CheckpointError(f"The checkpoint directory {directory} does not exist or is not a directory.")
    key = signing_key()
    existing = _existing(directory)
    sequence, previous = 1, None
    if existing:
        last_sequence, last_path = existing[-1]
        sequence, previous = last_sequence + 1, hashlib.sha256(last_path.read_bytes()).hexdigest()
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    payload = {
        "format": FORMAT,
        "sequence": sequence,
        "previous": previous,
        "created_at": moment.isoformat(timespec="seconds"),
        **snapshot(),
    }
    envelope = {
        "payload": payload,
        "signature": urlsafe_b64encode(key.sign(canonical(payload))).decode("ascii"),
        "key": fingerprint(key.public_key()),
    }
    body = json.dumps(envelope, sort_keys=True, indent=1).encode() + b"\n"
    path = directory / f"checkpoint-{sequence:08d}-{moment.strftime('%Y%m%dT%H%M%SZ')}.json"
    # O_EXCL: two jobs racing for the same sequence cannot overwrite each other; the loser fails.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
    try:
        os.write(descriptor, body)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    directory_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(directory_fd)
    finally:
        os.close(directory_fd)
    digest = hashlib.sha256(body).hexdigest()
    if syslog_address:
        send_to_syslog(syslog_address, f"healthcrypt audit checkpoint sequence={sequence} sha256={digest}")
    return Written(
        path=path,
        sequence=sequence,
        digest=digest,
        chains=len(payload["chains"]),
        events=sum(payload["counts"].values()),
    )


def send_to_syslog(address: str, message: str) -> None:
    """Send one line to syslog at a socket path or ``host:port`` (UDP), then close the handler."""
    target: str | tuple[str, int]
    if address.startswith("/"):
        target = address
    else:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise CheckpointError("AUDIT_CHECKPOINT_SYSLOG must be a socket path or host:port.")
        target = (host, int(port))
    handler = logging.handlers.SysLogHandler(
        address=target, facility=logging.handlers.SysLogHandler.LOG_AUTHPRIV, socktype=socket.SOCK_DGRAM
    )
    try:
        handler.emit(logging.makeLogRecord({"msg": message, "levelno": logging.INFO, "levelname": "INFO"}))
    finally:
        handler.close()


# --- Verifying against checkpoints --------------------------------------------------------------


@dataclass(frozen=True)
class CheckpointProblem:
    """One finding of :func:`verify_checkpoints`; ``kind`` is forged, missing, truncated, altered or unreadable."""

    kind: str
    where: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind.upper()}: {self.where}: {self.detail}"


@dataclass
class CheckpointSummary:
    checkpoints: int = 0
    heads_checked: int = 0
    latest: datetime | None = None
    warnings: list[str] = field(default_factory=list)


def _load(path: Path, key: Ed25519PublicKey) -> dict[str, Any]:
    """A checkpoint's payload, after its signature verified under ``key``."""
    try:
        envelope = json.loads(path.read_bytes())
        payload = envelope["payload"]
        signature = urlsafe_b64decode(str(envelope["signature"]))
    except (OSError, ValueError, KeyError, TypeError, BinasciiError) as exc:
        raise CheckpointError(f"cannot be read as a checkpoint ({type(exc).__name__})") from None
    try:
        key.verify(signature, canonical(payload))
    except InvalidSignature:
        raise CheckpointError("its signature does not verify under the trusted public key") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError("unknown checkpoint format")
    return payload


def _heads_in_database(model: type[Chained], pairs: Sequence[tuple[int, int]]) -> dict[tuple[int, int], str]:
    """``(partition, seq) -> hash`` for those of ``pairs`` still present in ``model``'s table."""
    found: dict[tuple[int, int], str] = {}
    for start in range(0, len(pairs), LOOKUP_BATCH):
        condition = Q()
        for partition, seq in pairs[start : start + LOOKUP_BATCH]:
            condition |= Q(partition=partition, seq=seq)
        rows = model._default_manager.filter(condition).values_list("partition", "seq", "hash")
        for place, place_seq, digest in rows:
            found[(int(place or 0), int(place_seq or 0))] = digest
    return found


def verify_checkpoints(
    directory: Path, key: Ed25519PublicKey, *, now: datetime | None = None
) -> tuple[list[CheckpointProblem], CheckpointSummary]:
    """Check every checkpoint in ``directory`` and the database against each of them.

    - each file's signature verifies under ``key`` (else FORGED);
    - sequences run 1, 2, 3, ... and each names the digest of the one before (else MISSING);
    - every head a checkpoint recorded is still in its table with the same hash (else TRUNCATED when
      the event is gone, ALTERED when it is there with another hash);
    - no table holds fewer rows than a checkpoint counted (else TRUNCATED).
    """
    problems: list[CheckpointProblem] = []
    summary = CheckpointSummary()
    if not directory.is_dir():
        raise CheckpointError(f"The checkpoint directory {directory} does not exist or is not a directory.")
    files = _existing(directory)
    # Every head any checkpoint recorded, with its hash and the first checkpoint that recorded it.
    # Older checkpoints' heads are checked too: an attacker holding the chain key could re-chain a
    # tail, but cannot make the events that older checkpoints saw come back with the same hashes.
    recorded: dict[str, dict[tuple[int, int], tuple[str, int]]] = {}
    max_counts: dict[str, tuple[int, int]] = {}
    expected_sequence, previous_digest = 1, None
    for sequence, path in files:
        name = path.name
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        try:
            payload = _load(path, key)
        except CheckpointError as exc:
            problems.append(CheckpointProblem("forged", name, str(exc)))
            previous_digest, expected_sequence = digest, sequence + 1
            continue
        summary.checkpoints += 1
        if payload.get("sequence") != sequence:
            problems.append(CheckpointProblem("forged", name, "the sequence inside differs from the file name"))
        if sequence != expected_sequence:
            problems.append(
                CheckpointProblem(
                    "missing", name, f"checkpoints {expected_sequence} to {sequence - 1} are gone from {directory}"
                )
            )
        elif payload.get("previous") != previous_digest:
            problems.append(CheckpointProblem("missing", name, "the previous checkpoint file was replaced"))
        previous_digest, expected_sequence = digest, sequence + 1
        created = datetime.fromisoformat(str(payload["created_at"]))
        summary.latest = max(summary.latest, created) if summary.latest else created
        for head in payload.get("chains", []):
            place = (int(head["partition"]), int(head["seq"]))
            recorded.setdefault(str(head["stream"]), {}).setdefault(place, (str(head["hash"]), sequence))
        for stream, count in dict(payload.get("counts", {})).items():
            if int(count) > max_counts.get(stream, (0, 0))[0]:
                max_counts[stream] = (int(count), sequence)
    models = chained_models()
    for stream, heads in sorted(recorded.items()):
        model = models.get(stream)
        if model is None:
            problems.append(CheckpointProblem("truncated", f"stream {stream}", "the table of this stream is gone"))
            continue
        ordered = sorted(heads)
        in_database = _heads_in_database(model, ordered)
        # Report the earliest loss per partition: that is where the truncation starts.
        reported: set[int] = set()
        for partition, seq in ordered:
            summary.heads_checked += 1
            if partition in reported:
                continue
            where = f"{stream} partition {partition} seq {seq}"
            expected, sequence = heads[(partition, seq)]
            actual = in_database.get((partition, seq))
            if actual is None:
                detail = f"checkpoint {sequence} recorded this event as the chain's head; it is gone"
                problems.append(CheckpointProblem("truncated", where, detail))
                reported.add(partition)
            elif actual != expected:
                detail = f"its hash differs from the one checkpoint {sequence} recorded"
                problems.append(CheckpointProblem("altered", where, detail))
                reported.add(partition)
    for stream, (count, sequence) in sorted(max_counts.items()):
        model = models.get(stream)
        current = model._default_manager.count() if model is not None else 0
        if current < count:
            detail = f"{count - current} rows fewer than checkpoint {sequence} counted"
            problems.append(CheckpointProblem("truncated", f"stream {stream}", detail))
    if not files:
        summary.warnings.append(f"No checkpoint in {directory}: nothing to compare the chains' heads with.")
    elif summary.latest and (now or datetime.now(UTC)) - summary.latest > STALE_AFTER:
        summary.warnings.append(
            f"The newest checkpoint is from {summary.latest.isoformat()}: is the audit_checkpoint timer running?"
        )
    return problems, summary


def checkpoint_files(directory: Path) -> Iterable[Path]:
    """The checkpoint files of ``directory``, oldest first (for tests and tools)."""
    return [path for _, path in _existing(directory)]


def chain_starts(
    directory: Path, key: Ed25519PublicKey, which: str
) -> tuple[int, dict[tuple[str, int], tuple[int, str]]]:
    """The heads recorded by one checkpoint (``which``: its sequence number, or ``latest``), after its
    signature verified: ``(stream, partition) -> (seq, hash)``, where ``verify_audit --since`` starts."""
    files = _existing(directory) if directory.is_dir() else []
    if not files:
        raise CheckpointError(f"No checkpoint in {directory} to start from.")
    if which == "latest":
        sequence, path = files[-1]
    else:
        try:
            wanted = int(which)
        except ValueError:
            raise CheckpointError("--since takes a checkpoint's sequence number or 'latest'.") from None
        matching = [(n, p) for n, p in files if n == wanted]
        if not matching:
            raise CheckpointError(f"There is no checkpoint {wanted} in {directory}.")
        sequence, path = matching[0]
    payload = _load(path, key)
    starts = {
        (str(head["stream"]), int(head["partition"])): (int(head["seq"]), str(head["hash"]))
        for head in payload.get("chains", [])
    }
    return sequence, starts
