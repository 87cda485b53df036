"""The MLLP listener, over real sockets: python-hl7's client and mllp_send, garbage frames, size limit, SIGTERM.

The listener runs on a free port inside the test's event loop, driven through ``async_to_sync`` so
that its database work (``sync_to_async``, thread-sensitive) runs on the test's own thread and
inside the test's transaction.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
from asgiref.sync import async_to_sync
from hl7.client import MLLPClient

from accounts.models import User
from exchange.hl7.listener import Listener
from exchange.models import HL7Message
from records.models import Observation, Patient
from tests.exchange.hl7.conftest import SAMPLES, registered, sample
from tests.exchange.hl7.test_ingest import ADT_A04, ORU_R01

pytestmark = pytest.mark.django_db

VT, FS, CR = b"\x0b", b"\x1c", b"\r"
T = TypeVar("T")


def with_listener(actor: User, scenario: Callable[[int], Awaitable[T]], *, max_bytes: int = 1024 * 1024) -> T:
    """Run ``scenario(port)`` against a listener started on a free port; stop the listener after."""

    async def run() -> T:
        listener = Listener(actor=actor, host="127.0.0.1", port=0, max_bytes=max_bytes)
        port = await listener.start()
        try:
            return await scenario(port)
        finally:
            listener.stop()
            await listener.close()

    return async_to_sync(run)()


def msa(ack: bytes | str) -> list[str]:
    text = ack.decode() if isinstance(ack, bytes) else ack
    line = next(segment for segment in text.strip("\x0b\x1c\r\n").split("\r") if segment.startswith("MSA|"))
    return line.split("|")[1:3]


def read_frames(sock: socket.socket, count: int) -> list[bytes]:
    """Read ``count`` MLLP frames (VT ... FS CR) from a blocking socket."""
    buffer = b""
    frames: list[bytes] = []
    while len(frames) < count:
        while FS + CR not in buffer:
            chunk = sock.recv(65536)
            if not chunk:
                return frames
            buffer += chunk
        frame, buffer = buffer.split(FS + CR, 1)
        frames.append(frame.lstrip(VT))
    return frames


def test_python_hl7_client_gets_an_aa_matching_msh_10(interface: User) -> None:
    def send(port: int) -> bytes:
        with MLLPClient("127.0.0.1", port) as client:
            return bytes(client.send_message(ADT_A04.format(control="MLLP-1", mrn="M-100")))

    async def scenario(port: int) -> bytes:
        return await asyncio.to_thread(send, port)

    ack = with_listener(interface, scenario)
    assert ack.startswith(VT)
    assert ack.endswith(FS + CR)
    assert msa(ack) == ["AA", "MLLP-1"]
    assert Patient.objects.get().family_name == "Quixote"
    assert HL7Message.objects.get().channel == HL7Message.Channel.MLLP


def test_results_over_mllp_become_observations(interface: User) -> None:
    registered("M-101")

    def send(port: int) -> bytes:
        with MLLPClient("127.0.0.1", port) as client:
            return bytes(client.send_message(ORU_R01.format(control="MLLP-2", mrn="M-101", potassium="4.2")))

    assert msa(with_listener(interface, lambda port: asyncio.to_thread(send, port))) == ["AA", "MLLP-2"]
    assert Observation.objects.count() == 2


@pytest.mark.skipif(
    shutil.which("mllp_send", path=str(Path(sys.executable).parent)) is None, reason="mllp_send not installed"
)
def test_mllp_send_command_line_tool_sends_a_shared_sample(interface: User) -> None:
    sample("ADT-A01-01.hl7")  # skips when the shared samples are absent
    tool = str(Path(sys.executable).parent / "mllp_send")

    async def scenario(port: int) -> bytes:
        process = await asyncio.create_subprocess_exec(
            tool,
            "--loose",
            "--file",
            str(SAMPLES / "ADT-A01-01.hl7"),
            "--port",
            str(port),
            "127.0.0.1",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, _ = await asyncio.wait_for(process.communicate(), timeout=60)
        assert process.returncode == 0
        return out

    out = with_listener(interface, scenario)
    assert msa(out) == ["AA", "MSG00001"]
    assert Patient.objects.count() == 1


def test_a_garbage_frame_does_not_kill_the_listener(interface: User) -> None:
    def converse(port: int) -> list[bytes]:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(b"no start byte at all" + FS + CR)  # not an MLLP frame
            sock.sendall(VT + b"\x00\xff binary rubbish" + FS + CR)  # a frame, not a message
            sock.sendall(VT + ADT_A04.format(control="AFTER-1", mrn="M-102").encode() + FS + CR)
            return read_frames(sock, 3)

    frames = with_listener(interface, lambda port: asyncio.to_thread(converse, port))
    assert [msa(frame)[0] for frame in frames] == ["AR", "AR", "AA"]
    assert msa(frames[2]) == ["AA", "AFTER-1"]
    assert Patient.objects.count() == 1


@pytest.mark.parametrize("size", [5_000, 20_000, 400_000], ids=["just over", "5x", "100x"])
def test_a_frame_over_the_size_limit_gets_one_ar_and_the_connection_goes_on(interface: User, size: int) -> None:
    def converse(port: int) -> list[bytes]:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(VT + b"MSH|" + b"x" * size + FS + CR)
            sock.sendall(VT + ADT_A04.format(control="AFTER-2", mrn="M-103").encode() + FS + CR)
            answers: list[bytes] = []
            while not answers or msa(answers[-1])[0] != "AA":
                answers += read_frames(sock, 1)
            return answers

    before = HL7Message.objects.count()
    frames = with_listener(interface, lambda port: asyncio.to_thread(converse, port), max_bytes=4096)
    # One answer per frame sent: the oversized one read past to its end, never answered in pieces.
    assert [msa(frame)[0] for frame in frames] == ["AR", "AA"]
    assert msa(frames[-1]) == ["AA", "AFTER-2"]
    assert HL7Message.objects.count() - before == 2


def test_messages_on_one_connection_are_answered_in_order(interface: User) -> None:
    def converse(port: int) -> list[bytes]:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            for n in range(5):
                sock.sendall(VT + ADT_A04.format(control=f"SEQ-{n}", mrn=f"M-2{n}").encode() + FS + CR)
            return read_frames(sock, 5)

    frames = with_listener(interface, lambda port: asyncio.to_thread(converse, port))
    assert [msa(frame) for frame in frames] == [["AA", f"SEQ-{n}"] for n in range(5)]


def test_sigterm_stops_the_listener_cleanly(interface: User) -> None:
    # Signal handlers work on the main thread only, so this loop runs there (asyncio.run), and the
    # client sends nothing that needs the database (which lives on the test's thread).
    async def run() -> tuple[int, bool]:
        listener = Listener(actor=interface, host="127.0.0.1", port=0, max_bytes=1024 * 1024)
        ports: list[int] = []
        serving = asyncio.create_task(listener.serve(ready=ports.append))
        while not ports and not serving.done():
            await asyncio.sleep(0.01)
        idle = socket.create_connection(("127.0.0.1", ports[0]), timeout=5)  # an engine's idle connection
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(serving, timeout=10)
        closed_by_server = idle.recv(1) == b""
        idle.close()
        try:
            socket.create_connection(("127.0.0.1", ports[0]), timeout=1).close()
        except OSError:
            return listener.handled, closed_by_server
        raise AssertionError("the port still accepts connections after SIGTERM")

    assert asyncio.run(run()) == (0, True)


def _closed_unanswered(sock: socket.socket) -> bool:
    """Whether the server closed ``sock`` without answering a message sent on it."""
    try:
        sock.sendall(VT + ADT_A04.format(control="REFUSED-1", mrn="M-900").encode() + FS + CR)
    except OSError:
        return True
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return True


def test_connections_over_the_cap_are_closed_unread_and_a_place_freed_is_taken_again(interface: User) -> None:
    async def run() -> tuple[list[bool], list[str], int]:
        listener = Listener(
            actor=interface, host="127.0.0.1", port=0, max_bytes=4096, max_connections=2, max_connections_per_address=5
        )
        port = await listener.start()
        try:
            held = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(2)]
            while len(listener.connections) < 2:  # both are being served (idle, as an engine's)
                await asyncio.sleep(0.01)
            extra = socket.create_connection(("127.0.0.1", port), timeout=10)
            refused = await asyncio.to_thread(_closed_unanswered, extra)
            extra.close()
            held[0].close()
            while len(listener.connections) > 1:
                await asyncio.sleep(0.01)

            def converse() -> list[bytes]:
                with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                    sock.sendall(VT + ADT_A04.format(control="AFTER-CAP", mrn="M-901").encode() + FS + CR)
                    return read_frames(sock, 1)

            frames = await asyncio.to_thread(converse)
            held[1].close()
            return [refused], [msa(frame)[0] for frame in frames], listener.refused
        finally:
            listener.stop()
            await listener.close()

    assert async_to_sync(run)() == ([True], ["AA"], 1)
    assert not HL7Message.objects.filter(control_id="REFUSED-1").exists()  # never read, never stored


def test_one_address_cannot_take_every_place(interface: User, caplog: pytest.LogCaptureFixture) -> None:
    async def run() -> tuple[bool, list[str]]:
        listener = Listener(
            actor=interface, host="127.0.0.1", port=0, max_bytes=4096, max_connections=8, max_connections_per_address=1
        )
        port = await listener.start()
        try:
            held = socket.create_connection(("127.0.0.1", port), timeout=10)
            while len(listener.connections) < 1:
                await asyncio.sleep(0.01)
            same = socket.create_connection(("127.0.0.1", port), timeout=10)
            refused = await asyncio.to_thread(_closed_unanswered, same)
            same.close()

            def from_another_address() -> list[bytes]:
                # Another host on the interface network (Linux answers on all of 127/8).
                with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=("127.0.0.2", 0)) as sock:
                    sock.sendall(VT + ADT_A04.format(control="OTHER-HOST", mrn="M-902").encode() + FS + CR)
                    return read_frames(sock, 1)

            frames = await asyncio.to_thread(from_another_address)
            held.close()
            return refused, [msa(frame)[0] for frame in frames]
        finally:
            listener.stop()
            await listener.close()

    with caplog.at_level("WARNING", logger="exchange.hl7.listener"):
        assert async_to_sync(run)() == (True, ["AA"])
    (line,) = [r.getMessage() for r in caplog.records if "refused over the caps" in r.getMessage()]
    assert "1 from 127.0.0.1" in line
    assert "M-90" not in caplog.text  # no message content


def test_a_flood_of_refused_connections_is_one_log_line_a_minute(
    interface: User, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    listener = Listener(
        actor=interface, host="127.0.0.1", port=0, max_bytes=4096, max_connections=1, max_connections_per_address=1
    )
    listener.addresses["10.0.0.9"] = 1  # the one place is taken
    now = [1000.0]
    monkeypatch.setattr("exchange.hl7.listener.time.monotonic", lambda: now[0])
    with caplog.at_level("WARNING", logger="exchange.hl7.listener"):
        assert [listener._admit("10.0.0.7") for _ in range(50)] == [False] * 50
        now[0] += 61
        assert not listener._admit("10.0.0.7")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert lines[0].endswith("1 since the last line")
    assert lines[1].endswith("50 since the last line")
    assert listener.refused == 51
