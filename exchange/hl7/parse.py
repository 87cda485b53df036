"""Tolerant reading of HL7 v2 as it arrives: bytes to messages, and fields out of segments.

What "tolerant" covers (docs/operations/hl7.md): a UTF-8 byte-order mark, CR, LF or CRLF between
segments, blank lines and trailing spaces, batch and file envelopes (FHS/BHS ... BTS/FTS) around
any number of messages, and versions 2.3 to 2.8. The structure itself is parsed by python-hl7
(``hl7.parse``). Nothing here raises with a value of the message in its text: an ``HL7Error``
names a segment and a field, never what was in it.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass

import hl7
from django.core.exceptions import ValidationError
from django.utils import timezone

BOM = "\ufeff"
# Control characters: CR ends a segment, 0x0B and 0x1C frame an MLLP block. An identifier holding one
# is refused (exchange/hl7/ingest.py); the ACK never carries one raw (exchange/hl7/ack.py).
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
ENVELOPE_SEGMENTS = frozenset({"FHS", "FTS", "BHS", "BTS"})
# HL7 v2.3 to v2.8 and their point releases (MSH-12.1).
SUPPORTED_VERSIONS = frozenset({"2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.7.1", "2.8", "2.8.1", "2.8.2"})
# HL7 table 0357 (message error condition codes) used in ERR-3.
SEGMENT_SEQUENCE_ERROR = 100
REQUIRED_FIELD_MISSING = 101
DATA_TYPE_ERROR = 102
TABLE_VALUE_NOT_FOUND = 103
UNSUPPORTED_MESSAGE_TYPE = 200
UNSUPPORTED_EVENT_CODE = 201
UNSUPPORTED_VERSION = 203
UNKNOWN_KEY = 204
DUPLICATE_KEY = 205
INTERNAL_ERROR = 207


class HL7Error(Exception):
    """A message that cannot be accepted: the ACK code (AE or AR), the HL7 error code, where, and why.

    ``text`` is a fixed sentence written here; it is sent back in MSA-3/ERR and stored in plaintext,
    so it must never contain a value taken from the message.
    """

    def __init__(self, text: str, *, ack_code: str = "AE", code: int = DATA_TYPE_ERROR, location: str = "") -> None:
        super().__init__(text)
        self.text = text
        self.ack_code = ack_code
        self.code = code
        self.location = location


def decode(data: bytes) -> str:
    """Bytes to text: UTF-8 (the v2.8 default) with or without a BOM, else Latin-1 (never fails)."""
    if data.startswith(BOM.encode()):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def segments_of(text: str) -> list[str]:
    """The segments of ``text`` whatever separates them (CR, LF, CRLF), without blank lines."""
    text = text.lstrip(BOM)
    return [line.strip() for line in re.split(r"\r\n|\r|\n", text) if line.strip()]


def split_messages(text: str) -> list[str]:
    """The messages in a file, a batch or a single message, each with CR between its segments.

    Envelope segments (FHS, BHS, BTS, FTS) are dropped. Lines before the first MSH that are not an
    envelope make a message of their own, which the ingest then refuses as malformed.
    """
    messages: list[list[str]] = []
    for segment in segments_of(text):
        name = segment[:3]
        if name in ENVELOPE_SEGMENTS:
            continue
        if name == "MSH" or not messages:
            messages.append([segment])
        else:
            messages[-1].append(segment)
    return ["\r".join(message) for message in messages]


@dataclass(frozen=True)
class Header:
    """What MSH says about a message (values of the sending system, not of the patient)."""

    sending_application: str
    sending_facility: str
    receiving_application: str
    receiving_facility: str
    message_code: str
    trigger_event: str
    control_id: str
    processing_id: str
    version: str
    # The raw MSH-3..6 fields (components and all), mirrored as they came into the ACK.
    raw_sender: tuple[str, str, str, str]

    @property
    def sender(self) -> str:
        return f"{self.sending_application}|{self.sending_facility}"

    @property
    def message_type(self) -> str:
        return f"{self.message_code}^{self.trigger_event}" if self.trigger_event else self.message_code


def raw_header(text: str) -> Header | None:
    """MSH read by splitting the first segment, for answering a message python-hl7 could not parse."""
    first = text.split("\r", 1)[0]
    if not first.startswith("MSH") or len(first) < 8:
        return None
    separator = first[3]
    parts = first.split(separator)
    encoding = parts[1] if len(parts) > 1 else "^~\\&"
    component = encoding[0] if encoding else "^"

    def msh(n: int) -> str:
        # MSH-1 is the separator itself, so MSH-n is parts[n - 1].
        return parts[n - 1] if len(parts) >= n else ""

    def first_component(value: str) -> str:
        return value.split(component)[0]

    message_type = msh(9).split(component)
    return Header(
        sending_application=first_component(msh(3)),
        sending_facility=first_component(msh(4)),
        receiving_application=first_component(msh(5)),
        receiving_facility=first_component(msh(6)),
        message_code=message_type[0],
        trigger_event=message_type[1] if len(message_type) > 1 else "",
        control_id=msh(10),
        processing_id=first_component(msh(11)),
        version=first_component(msh(12)),
        raw_sender=(msh(3), msh(4), msh(5), msh(6)),
    )


def parse(text: str) -> hl7.Message:
    """One message (segments separated by CR) parsed by python-hl7; a malformed one is an HL7Error."""
    if not text.startswith("MSH") or len(text) < 8:
        raise HL7Error("The message does not start with an MSH segment.", ack_code="AR", code=SEGMENT_SEQUENCE_ERROR)
    if text[3] != "|" or text[4:8] != "^~\\&":
        # python-hl7 reads any separators, but the ACK and these readers assume the standard ones.
        raise HL7Error("Only the standard delimiters |^~\\& are supported.", ack_code="AR", location="MSH^1^2")
    try:
        return hl7.parse(text)
    except Exception as error:  # python-hl7 raises several types on malformed input
        raise HL7Error("The message could not be parsed.", ack_code="AR", code=SEGMENT_SEQUENCE_ERROR) from error


# Escape sequences (HL7 v2 chapter 2.7): the delimiters, hex data, and formatting commands. Decoded
# here rather than by python-hl7, whose decoder repeats a formatting command (\\.sp<n>\\, \\.in<n>\\...)
# as many times as the sender asks (a 70-byte message asked for 160 MB) and logs the whole field,
# patient data and all, when it meets a sequence it does not know.
_ESCAPE = re.compile(r"\\([^\\]{0,64})\\")
_DELIMITERS = {"F": "|", "S": "^", "T": "&", "R": "~", "E": "\\"}
# Formatting commands: a line break or a space at most, never repeated.
_FORMATTING = {".br": "\n", ".sp": "\n", ".sk": " ", ".in": " ", ".ti": " "}
_HEX = re.compile(r"X((?:[0-9A-Fa-f]{2}){1,32})")


def _decoded(match: re.Match[str]) -> str:
    body = match.group(1)
    if body in _DELIMITERS:
        return _DELIMITERS[body]
    hexadecimal = _HEX.fullmatch(body)
    if hexadecimal:
        # Bytes as Latin-1 (one character each), control characters but CR, LF and tab dropped.
        text = bytes.fromhex(hexadecimal.group(1)).decode("latin-1")
        return "".join(c for c in text if c >= " " or c in "\r\n\t")
    if body[:3] in _FORMATTING:
        return _FORMATTING[body[:3]]
    # Highlighting (H, N), character sets (C, M), local sequences (Z...), anything else: dropped.
    return ""


def unescape(text: str) -> str:
    """A value's escape sequences decoded; the result is never longer than ``text``. Never logs."""
    if "\\" not in text:
        return text
    return _ESCAPE.sub(_decoded, text)


def value(segment: hl7.Segment, field: int, rep: int = 1, comp: int = 1, sub: int = 1) -> str:
    """One value of ``segment`` (1-based, as written SEG-field.component.subcomponent), unescaped; '' if
    absent. Where the message has fewer levels than asked (a field without components), the value at
    the deepest level there is answers for component and subcomponent 1, as python-hl7's
    ``extract_field`` does; the escapes are decoded by :func:`unescape`."""
    if field >= len(segment):
        return ""
    node: object = segment[field]
    for index in (rep, comp, sub):
        if isinstance(node, hl7.Container) and not isinstance(node, str):
            if index > len(node):
                return ""
            node = node[index - 1]
        elif index != 1:
            return ""
    while isinstance(node, hl7.Container) and not isinstance(node, str):
        node = node[0] if len(node) else ""
    return unescape(str(node)).strip()


def repetitions(segment: hl7.Segment, field: int) -> int:
    """How many repetitions field ``field`` of ``segment`` has (0 when absent or empty)."""
    if field >= len(segment):
        return 0
    content = segment[field]
    if not str(content):
        return 0
    return len(content) if isinstance(content, hl7.Field) else 1


def segments(message: hl7.Message, name: str) -> list[hl7.Segment]:
    """Every segment called ``name``, in order (none is an empty list, not an error)."""
    return [segment for segment in message if str(segment[0]) == name]


def header(message: hl7.Message) -> Header:
    """MSH of a parsed message."""
    msh = message.segment("MSH")
    return Header(
        sending_application=value(msh, 3),
        sending_facility=value(msh, 4),
        receiving_application=value(msh, 5),
        receiving_facility=value(msh, 6),
        message_code=value(msh, 9, 1, 1),
        trigger_event=value(msh, 9, 1, 2),
        control_id=value(msh, 10),
        processing_id=value(msh, 11),
        version=value(msh, 12),
        raw_sender=tuple(str(msh[n]) if n < len(msh) else "" for n in (3, 4, 5, 6)),  # type: ignore[arg-type]
    )


_TS = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.\d{1,4})?([+-]\d{4})?$")


def timestamp(text: str, *, location: str) -> datetime.datetime | None:
    """An HL7 DTM/TS (YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ]) as an aware datetime; '' is None.

    Without an offset the time is taken in the server's time zone (the sender's local time, as
    HL7 assumes). A malformed value is an HL7Error at ``location``.
    """
    text = text.strip()
    if not text:
        return None
    match = _TS.match(text)
    if match is None:
        raise HL7Error("A date/time field is not a valid HL7 timestamp.", location=location)
    year, month, day, hour, minute, second, offset = match.groups()
    zone: datetime.tzinfo = timezone.get_current_timezone()
    if offset:
        # An offset beyond +/-14:00 (or with 60+ minutes) is not a real zone: timezone() refuses it.
        sign = 1 if offset[0] == "+" else -1
        minutes = int(offset[1:3]) * 60 + int(offset[3:5])
        if int(offset[3:5]) >= 60 or minutes > 14 * 60:
            raise HL7Error("A date/time field has an invalid time-zone offset.", location=location)
        zone = datetime.timezone(sign * datetime.timedelta(minutes=minutes))
    try:
        return datetime.datetime(
            int(year), int(month or 1), int(day or 1), int(hour or 0), int(minute or 0), int(second or 0), tzinfo=zone
        )
    except ValueError as error:
        raise HL7Error("A date/time field is not a valid date.", location=location) from error


def date(text: str, *, location: str) -> datetime.date | None:
    """An HL7 date (the first 8 digits of a DT/DTM); a partial or invalid date is an HL7Error."""
    text = text.strip()
    if not text:
        return None
    if not re.match(r"^\d{8}", text):
        raise HL7Error("A date field is not a full date (YYYYMMDD).", location=location)
    try:
        return datetime.date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError as error:
        raise HL7Error("A date field is not a valid date.", location=location) from error


def refused_fields(error: ValidationError) -> str:
    """The names of the fields a ValidationError is about, never its messages (some quote the value)."""
    names = sorted(error.message_dict) if hasattr(error, "error_dict") else []
    return "invalid " + ", ".join(name.replace("_", " ") for name in names) if names else "an invalid value"
