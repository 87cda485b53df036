"""HL7 built to break the interface rather than to feed it: escape sequences that ask for a memory's
worth of spaces, escapes the decoder does not know (which python-hl7 logged with the whole field),
and control ids or types that would cut the ACK into forged segments or frames."""

from __future__ import annotations

import asyncio
import logging
import socket
import tracemalloc

import pytest

from accounts.models import User
from exchange.hl7.ack import escape
from exchange.hl7.ingest import Outcome, ingest_bytes
from exchange.hl7.parse import unescape
from exchange.models import HL7Message
from records.crypto import mrn_index
from records.models import Patient
from tests.exchange.hl7.test_ingest import ADT_A04
from tests.exchange.hl7.test_listener import CR, FS, VT, read_frames, with_listener

pytestmark = pytest.mark.django_db

SURNAME = "Quillsecret"


def ingest(text: str, actor: User) -> list[Outcome]:
    return ingest_bytes(text.encode(), actor=actor, channel=HL7Message.Channel.FILE)


def adt(control: str = "C1", *, mrn: str = "M1", family: str = "Quixote", message_type: str = "ADT^A04^ADT_A01") -> str:
    text = ADT_A04.format(control=control, mrn=mrn).replace("Quixote", family)
    return text.replace("ADT^A04^ADT_A01", message_type)


# --- escapes: decoded by us, bounded, silent ---------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        ("a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f", "a|b^c&d~e\\f"),
        ("\\X41424344\\", "ABCD"),
        ("line\\.br\\next", "line\nnext"),
        ("in\\.in4\\dent", "in dent"),
        ("\\H\\bold\\N\\", "bold"),
        ("O\\Z01\\Brien", "OBrien"),
        ("\\C2842\\text", "text"),
        ("not\\closed", "not\\closed"),
        ("plain", "plain"),
    ],
)
def test_escapes_are_decoded_as_hl7_says(raw: str, decoded: str) -> None:
    assert unescape(raw) == decoded


@pytest.mark.parametrize("command", [".in", ".sp", ".ti", ".sk"])
def test_a_formatting_command_with_a_huge_count_is_one_character_not_a_memory_bomb(command: str) -> None:
    assert len(unescape(f"Q\\{command}2000000000\\x")) == 3


def test_a_message_asking_for_a_gigabyte_of_spaces_costs_no_memory_and_is_answered(interface: User) -> None:
    tracemalloc.start()
    try:
        (outcome,) = ingest(adt("C-BOMB\\.in40000000\\", family="Q\\.in20000000\\x"), interface)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20_000_000  # python-hl7's decoder reached 900 MB on this message
    assert len(outcome.ack) < 2_000
    assert outcome.ack_code == "AA"


def test_an_unknown_escape_is_dropped_without_logging_the_field(
    interface: User, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    (outcome,) = ingest(adt("C-LOG", family=f"O\\Z01\\{SURNAME}\\C2842\\"), interface)
    assert outcome.ack_code == "AA"
    assert SURNAME not in caplog.text
    patient = Patient.objects.get(mrn_index=mrn_index("M1"))
    assert patient.family_name == f"O{SURNAME}"


# --- the ACK cannot be cut or forged from inside ----------------------------------------------------


@pytest.mark.parametrize(
    "control",
    ["C1\\.br\\ZZZ\\F\\EVIL", "X\\X1C0D\\Y", "C" * 200],
    ids=["line break", "MLLP end (hex data)", "200 characters"],
)
def test_a_control_id_with_control_characters_or_too_long_is_rejected_and_the_ack_stays_whole(
    interface: User, control: str
) -> None:
    (outcome,) = ingest(adt(control), interface)
    assert outcome.ack_code == "AR"
    segments = outcome.ack.rstrip("\r").split("\r")
    assert [segment[:3] for segment in segments] == ["MSH", "MSA", "ERR"]
    assert not any(c in outcome.ack.rstrip("\r") for c in "\n\x0b\x1c")
    assert "MSH^1^10" in segments[2]
    assert not Patient.objects.exists()


def test_a_message_type_with_a_line_break_cannot_forge_an_msa(interface: User) -> None:
    (outcome,) = ingest(adt("C-TYPE", message_type="ADT^A99\\.br\\MSA\\F\\AA\\F\\FORGED"), interface)
    assert outcome.ack_code == "AR"
    segments = outcome.ack.rstrip("\r").split("\r")
    assert [segment[:3] for segment in segments] == ["MSH", "MSA", "ERR"]
    assert segments[1].startswith("MSA|AR|C-TYPE|")
    assert len(segments[0].split("|")) == 12  # MSH-1 .. MSH-12, nothing cut off


def test_hex_data_decodes_to_no_framing_byte() -> None:
    # 0x0B and 0x1C are dropped from hex data (CR, LF and tab are text); the control-id check then
    # refuses what is left if it holds CR or LF.
    assert unescape("X\\X0B1C\\Y") == "XY"


def test_the_ack_escapes_every_control_character_it_mirrors() -> None:
    assert escape("a\rb\x1c\x0bc|d") == "a\\X0D\\b\\X1C\\\\X0B\\c\\F\\d"


def test_over_mllp_a_control_id_holding_the_frame_end_gives_one_frame_per_message(interface: User) -> None:
    hostile = adt("X\\X1C0D\\Y").encode()
    normal = adt("C-NEXT", mrn="M2").encode()

    def converse(port: int) -> list[bytes]:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(VT + hostile + FS + CR + VT + normal + FS + CR)
            frames = read_frames(sock, 2)
            sock.settimeout(0.5)
            try:
                extra = sock.recv(65536)
            except TimeoutError:
                extra = b""
            return [*frames, extra] if extra else frames

    frames = with_listener(interface, lambda port: asyncio.to_thread(converse, port))
    assert len(frames) == 2
    assert b"MSA|AR|" in frames[0]
    assert b"MSA|AA|C-NEXT" in frames[1]
