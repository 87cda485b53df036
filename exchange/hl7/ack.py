"""The acknowledgement (ACK) of a message: MSH mirrored, MSA with the code and the control id, ERR on errors.

MSA-1 is AA (accepted), AE (error: the message was understood but could not be applied; the
sender may correct it and send again) or AR (rejected: type, version or structure we do not
take; resending will not help). MSA-2 is the message's own MSH-10, so the sender can match the
answer. The texts in MSA-3 and ERR are the fixed sentences of exchange/hl7 (``HL7Error.text``),
never a value from the message.
"""

from __future__ import annotations

import secrets

from django.utils import timezone

from exchange.hl7.parse import CONTROL_CHARACTERS, SUPPORTED_VERSIONS, Header, HL7Error

# The version we answer in when the message's own is unknown or missing.
DEFAULT_VERSION = "2.5.1"


def escape(text: str) -> str:
    """Escape the standard delimiters so a value can sit in one field, and every control character
    (CR ends a segment, 0x0B and 0x1C frame an MLLP block) as hex data: whatever a sender put in the
    control id or trigger it gets mirrored, the ACK keeps its segments and its frame."""
    for raw, escaped in (("\\", "\\E\\"), ("|", "\\F\\"), ("^", "\\S\\"), ("&", "\\T\\"), ("~", "\\R\\")):
        text = text.replace(raw, escaped)
    return printable(text)


def printable(text: str) -> str:
    """``text`` with each control character written as HL7 hex data (``\\X0D\\``)."""
    return CONTROL_CHARACTERS.sub(lambda match: f"\\X{ord(match.group()):02X}\\", text)


def _mirrored(raw_field: str) -> str:
    """A raw MSH field mirrored into the ACK as it came (components and all), without control characters."""
    return CONTROL_CHARACTERS.sub("", raw_field)


def build_ack(header: Header | None, *, code: str, text: str = "", error: HL7Error | None = None) -> str:
    """The ACK message for ``header`` (None when not even MSH could be read), segments ended by CR."""
    now = timezone.localtime().strftime("%Y%m%d%H%M%S%z")
    if header is not None:
        their_app, their_facility, our_app, our_facility = (_mirrored(field) for field in header.raw_sender)
        control_id = header.control_id
        trigger = header.trigger_event
        processing = header.processing_id if header.processing_id in ("P", "T", "D") else "P"
        version = header.version if header.version in SUPPORTED_VERSIONS else DEFAULT_VERSION
    else:
        their_app = their_facility = our_app = our_facility = control_id = trigger = ""
        processing, version = "P", DEFAULT_VERSION
    message_type = f"ACK^{escape(trigger)}^ACK" if trigger else "ACK"
    segments = [
        # The ACK goes back the other way: our application and facility send, theirs receive.
        f"MSH|^~\\&|{our_app}|{our_facility}|{their_app}|{their_facility}|{now}||{message_type}"
        f"|{secrets.token_hex(10)}|{processing}|{version}",
        f"MSA|{code}|{escape(control_id)}|{escape(text)}",
    ]
    if error is not None:
        location = error.location.split("^") if error.location else []
        segment_name = location[0] if location else ""
        sequence = location[1] if len(location) > 1 else ""
        field = location[2] if len(location) > 2 else ""
        sentence = escape(error.text)
        # ERR-1 (v2.3/2.4: segment^sequence^field^code&text) and ERR-2..4 (v2.5+: location, HL7
        # error code from table 0357, severity): both, so every version finds its part.
        segments.append(
            f"ERR|{segment_name}^{sequence}^{field}^{error.code}&{sentence}"
            f"|{segment_name}^{sequence}^{field}|{error.code}^{sentence}^HL70357|E"
        )
    return "\r".join(segments) + "\r"
