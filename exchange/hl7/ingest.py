"""One message in, one ACK out: checks, duplicate detection, the handler in one transaction, the stored copy.

Used by ``manage.py ingest_hl7`` (files) and ``manage.py hl7_listen`` (MLLP) alike. Each message is
atomic: its changes and its stored row commit together, or (AE/AR) nothing of it is written but the
stored row that says why. A message already accepted from the same sender with the same control id
(MSH-10) is answered AA again without being applied twice; the same control id on a different
message is an error. Nothing logged or answered here contains a value of the message.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from exchange.hl7.ack import build_ack
from exchange.hl7.handlers import HANDLERS
from exchange.hl7.parse import (
    CONTROL_CHARACTERS,
    DATA_TYPE_ERROR,
    DUPLICATE_KEY,
    INTERNAL_ERROR,
    REQUIRED_FIELD_MISSING,
    SUPPORTED_VERSIONS,
    UNKNOWN_KEY,
    UNSUPPORTED_EVENT_CODE,
    UNSUPPORTED_MESSAGE_TYPE,
    UNSUPPORTED_VERSION,
    Header,
    HL7Error,
    decode,
    header,
    parse,
    raw_header,
    refused_fields,
    split_messages,
)
from exchange.models import HL7Message
from healthcrypt.crypto import blind_index
from records.db import mark_actor
from records.services import RecordNotFound

logger = logging.getLogger(__name__)

SUPPORTED_CODES = frozenset(code for code, _ in HANDLERS)


@dataclass(frozen=True)
class Outcome:
    """How one message was answered."""

    control_id: str
    message_type: str
    ack_code: str
    text: str
    ack: str
    message_id: int | None = None

    @property
    def accepted(self) -> bool:
        return self.ack_code == "AA"


def digest_of(text: str) -> str:
    """A keyed digest of the whole message (the blind-index key), to tell a resend from a reuse."""
    return blind_index(hashlib.sha256(text.encode()).hexdigest(), purpose="hl7-message")


def ingest_bytes(data: bytes, *, actor: Any, channel: str) -> list[Outcome]:
    """Every message in ``data`` (one message, a batch or a file of batches), each handled on its own."""
    messages = split_messages(decode(data))
    if not messages:
        error = HL7Error("No HL7 message was found.", ack_code="AR", code=REQUIRED_FIELD_MISSING, location="MSH")
        return [_answer(None, "", error=error, channel=channel, received_at=timezone.now())]
    return [ingest_message(text, actor=actor, channel=channel) for text in messages]


def too_large(size: int, *, channel: str) -> Outcome:
    """The answer to a message or frame over HL7_MAX_MESSAGE_BYTES (its content is not kept)."""
    error = HL7Error(
        f"The message is larger than the limit of {settings.HL7_MAX_MESSAGE_BYTES} bytes.",
        ack_code="AR",
        location="MSH",
    )
    return _answer(None, "", error=error, channel=channel, received_at=timezone.now())


def ingest_message(text: str, *, actor: Any, channel: str) -> Outcome:
    """Check, apply and store one message (segments separated by CR); never raises for bad content."""
    return _ingest_message(text, actor=actor, channel=channel, retried=False)


def _ingest_message(text: str, *, actor: Any, channel: str, retried: bool) -> Outcome:
    received_at = timezone.now()
    if len(text.encode()) > settings.HL7_MAX_MESSAGE_BYTES:
        return too_large(len(text.encode()), channel=channel)
    head = raw_header(text)
    try:
        message = parse(text)
        head = header(message)
        _check_header(head)
        digest = digest_of(text)
        previous = (
            HL7Message.objects.filter(sender=head.sender, control_id=head.control_id, status=HL7Message.Status.ACCEPTED)
            .values_list("digest", flat=True)
            .first()
        )
        if previous is not None:
            return _duplicate(head, text, digest, previous, channel=channel, received_at=received_at)
        handler = HANDLERS[(head.message_code, head.trigger_event)]
        with transaction.atomic():
            handled = handler(message, actor)
            return _answer(head, text, note=handled.note, digest=digest, channel=channel, received_at=received_at)
    except HL7Error as error:
        return _answer(head, text, error=error, channel=channel, received_at=received_at)
    except ValidationError as error:
        refused = HL7Error(f"The record refused the message: {refused_fields(error)}.")
        return _answer(head, text, error=refused, channel=channel, received_at=received_at)
    except RecordNotFound:
        refused = HL7Error("The patient of the message is not registered.", code=UNKNOWN_KEY, location="PID^1^3")
        return _answer(head, text, error=refused, channel=channel, received_at=received_at)
    except PermissionDenied:
        refused = HL7Error(
            "The interface service account may not write (see HL7_INTERFACE_USERNAME).", code=INTERNAL_ERROR
        )
        return _answer(head, text, error=refused, channel=channel, received_at=received_at)
    except IntegrityError:
        # Most likely the same message arriving twice at once: the other copy was accepted.
        if (
            head is not None
            and HL7Message.objects.filter(
                sender=head.sender, control_id=head.control_id, status=HL7Message.Status.ACCEPTED
            ).exists()
        ):
            digest = digest_of(text)
            return _duplicate(head, text, digest, digest, channel=channel, received_at=received_at)
        if not retried:
            # Another process (a second listener, ingest_hl7 on a file) registered the same new patient
            # between this message's lookup and its INSERT: applied again, it finds the registration
            # (an update, or the visit on it). The message's transaction was rolled back whole.
            sender = head.sender if head is not None else "an unknown sender"
            logger.info("HL7 message from %s refused by a uniqueness check; applying it once more", sender)
            return _ingest_message(text, actor=actor, channel=channel, retried=True)
        return _internal_error(head, text, "IntegrityError", channel=channel, received_at=received_at)
    except Exception as error:  # never crash the listener; the traceback could quote patient data
        return _internal_error(head, text, type(error).__name__, channel=channel, received_at=received_at)


# MSH-10 is an ST of at most 199 characters (v2.5+; 20 before), and an identifier: no control characters.
MAX_CONTROL_ID = 199


def _check_header(head: Header) -> None:
    if not head.control_id:
        raise HL7Error(
            "MSH-10 (message control id) is missing.", ack_code="AR", code=REQUIRED_FIELD_MISSING, location="MSH^1^10"
        )
    if len(head.control_id) > MAX_CONTROL_ID or CONTROL_CHARACTERS.search(head.control_id):
        raise HL7Error(
            "MSH-10 (message control id) is longer than 199 characters or holds control characters.",
            ack_code="AR",
            code=DATA_TYPE_ERROR,
            location="MSH^1^10",
        )
    if CONTROL_CHARACTERS.search(head.message_code + head.trigger_event):
        raise HL7Error(
            "MSH-9 (message type) holds control characters.", ack_code="AR", code=DATA_TYPE_ERROR, location="MSH^1^9"
        )
    if head.version not in SUPPORTED_VERSIONS:
        raise HL7Error(
            "Only HL7 versions 2.3 to 2.8 are supported.", ack_code="AR", code=UNSUPPORTED_VERSION, location="MSH^1^12"
        )
    if head.message_code not in SUPPORTED_CODES:
        raise HL7Error(
            "This message type is not supported.", ack_code="AR", code=UNSUPPORTED_MESSAGE_TYPE, location="MSH^1^9"
        )
    if (head.message_code, head.trigger_event) not in HANDLERS:
        raise HL7Error(
            "This trigger event is not supported.", ack_code="AR", code=UNSUPPORTED_EVENT_CODE, location="MSH^1^9"
        )


def _duplicate(head: Header, text: str, digest: str, previous: str, *, channel: str, received_at: Any) -> Outcome:
    if previous != digest:
        error = HL7Error(
            "This control id was already used by this sender for a different message.",
            code=DUPLICATE_KEY,
            location="MSH^1^10",
        )
        return _answer(head, text, error=error, channel=channel, received_at=received_at, digest=digest)
    return _answer(
        head,
        text,
        note="Duplicate of a message already accepted; not applied again.",
        digest=digest,
        channel=channel,
        received_at=received_at,
        status=HL7Message.Status.DUPLICATE,
    )


def _internal_error(head: Header | None, text: str, kind: str, *, channel: str, received_at: Any) -> Outcome:
    logger.error("HL7 message from %s not processed: %s", head.sender if head else "an unknown sender", kind)
    error = HL7Error("Internal error; the message was not applied. Send it again later.", code=INTERNAL_ERROR)
    return _answer(head, text, error=error, channel=channel, received_at=received_at)


def _answer(
    head: Header | None,
    text: str,
    *,
    channel: str,
    received_at: Any,
    note: str = "",
    error: HL7Error | None = None,
    digest: str = "",
    status: str = "",
) -> Outcome:
    """Store the message with its outcome and build the ACK (inside the message's transaction on AA)."""
    code = error.ack_code if error is not None else "AA"
    status = (
        status
        or {
            "AA": HL7Message.Status.ACCEPTED,
            "AE": HL7Message.Status.ERROR,
            "AR": HL7Message.Status.REJECTED,
        }[code]
    )
    sentence = error.text if error is not None else (note or "Message accepted.")
    with transaction.atomic():
        # The message table is guarded like a clinical table (audit/guards.py): its row is written
        # as the application's (a system job; the interface account's marker, where the message
        # changed the record, already covers those rows of this transaction).
        mark_actor(None, job="hl7")
        stored = _store(
            head,
            text,
            digest=digest,
            channel=channel,
            status=status,
            code=code,
            error=error,
            received_at=received_at,
        )
    return Outcome(
        control_id=head.control_id if head else "",
        message_type=head.message_type if head else "",
        ack_code=code,
        text=sentence,
        ack=build_ack(head, code=code, text=sentence, error=error),
        message_id=stored.pk,
    )


def _store(
    head: Header | None,
    text: str,
    *,
    digest: str,
    channel: str,
    status: str,
    code: str,
    error: HL7Error | None,
    received_at: Any,
) -> HL7Message:
    return HL7Message.objects.create(
        raw=text,
        digest=digest or (digest_of(text) if text else ""),
        sender=(head.sender if head else "")[:200],
        control_id=(head.control_id if head else "")[:200],
        message_type=(head.message_type if head else "")[:40],
        version=(head.version if head else "")[:20],
        channel=channel,
        status=status,
        ack_code=code,
        error=error.text[:500] if error is not None else "",
        received_at=received_at,
        processed_at=timezone.now(),
    )
