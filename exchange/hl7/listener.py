"""The MLLP listener: an asyncio server (python-hl7's ``start_hl7_server``) answering every frame with ACKs.

Each connection is served by one task that reads a frame, hands it to ``ingest_bytes`` in Django's
sync thread (``sync_to_async``: the database is never touched on the event loop), writes the ACK
frame(s) and only then reads the next frame, so a connection's messages are applied in order, one
at a time. A frame without the start byte, a frame over ``HL7_MAX_MESSAGE_BYTES`` or a message that
cannot be parsed is answered AR (or AE) and the connection goes on; an error of ours is answered AE.
Connections are capped, in all and per peer address (``HL7_MAX_CONNECTIONS``,
``HL7_MAX_CONNECTIONS_PER_ADDRESS``): one over a cap is closed at once, unread, so that idle or
trickling connections cannot exhaust the process's file descriptors or memory (each may buffer up to
``HL7_MAX_MESSAGE_BYTES``), and one address cannot take every place. Nothing here logs a message's
content.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.db import close_old_connections, connection
from hl7.mllp import InvalidBlockError, start_hl7_server
from hl7.mllp.streams import END_BLOCK, START_BLOCK

from exchange.hl7.ack import build_ack
from exchange.hl7.ingest import Outcome, ingest_bytes, too_large
from exchange.hl7.parse import INTERNAL_ERROR, HL7Error
from exchange.models import HL7Message

logger = logging.getLogger(__name__)

# How long a connection may stay silent before it is closed (an engine keeps one open and idle).
IDLE_TIMEOUT_SECONDS = 600.0
# How long a stop waits for messages being applied to be answered.
STOP_GRACE_SECONDS = 30.0
# Connections refused over a cap are logged at most this often (a flood must not flood the log).
REFUSAL_LOG_SECONDS = 60.0


def _fresh_connection() -> None:
    # Drop a connection the database closed while the listener idled, as Django does per request.
    # Never inside a transaction (a test's): closing it would end the transaction.
    if not connection.in_atomic_block:
        close_old_connections()


def _ingest(data: bytes, actor: Any) -> list[Outcome]:
    _fresh_connection()
    try:
        return ingest_bytes(data, actor=actor, channel=HL7Message.Channel.MLLP)
    except Exception as error:  # the database itself failing: answer AE, keep serving
        logger.error("MLLP frame not processed: %s", type(error).__name__)
        failure = HL7Error("Internal error; the message was not applied. Send it again later.", code=INTERNAL_ERROR)
        return [Outcome("", "", "AE", failure.text, build_ack(None, code="AE", text=failure.text, error=failure))]
    finally:
        _fresh_connection()


def _frame_error(text: str) -> bytes:
    error = HL7Error(text, ack_code="AR")
    return build_ack(None, code="AR", text=text, error=error).encode()


FRAME_END = END_BLOCK + b"\r"


async def read_frame(reader: asyncio.StreamReader) -> bytes | None:
    """The next MLLP frame's content (without VT and FS CR), or None for a frame longer than the
    reader's limit, which is read past to its end and dropped, so that it gets one answer and the
    next frame starts where it should. (python-hl7's ``readblock`` drops only what it had buffered:
    the rest of a long frame then came back as one or more further frames, each answered.)
    Raises InvalidBlockError for a frame without the start byte, IncompleteReadError at EOF."""
    oversized = False
    while True:
        try:
            block = await reader.readuntil(FRAME_END)
        except asyncio.LimitOverrunError as overrun:
            # No end within the limit (or one beyond it): drop what can be, go on looking for the end.
            oversized = True
            await reader.readexactly(overrun.consumed)
            continue
        if oversized:
            return None
        if block[:1] != START_BLOCK:
            raise InvalidBlockError("The frame does not start with the MLLP start byte.")
        return block[1 : -len(FRAME_END)]


class Listener:
    """One MLLP server; ``serve`` runs until ``stop`` (or SIGTERM/SIGINT when ``handle_signals``)."""

    def __init__(
        self,
        *,
        actor: Any,
        host: str,
        port: int,
        max_bytes: int,
        max_connections: int = 16,
        max_connections_per_address: int = 4,
    ) -> None:
        self.actor = actor
        self.host = host
        self.port = port
        self.max_bytes = max_bytes
        self.max_connections = max_connections
        self.max_connections_per_address = max_connections_per_address
        # Open connections per peer address (the cap per address).
        self.addresses: Counter[str] = Counter()
        # Connections refused over a cap: in all, and since the last log line about them.
        self.refused = 0
        self.refused_unlogged = 0
        self.refusal_logged_at: float | None = None
        self.stopping = asyncio.Event()
        self.server: asyncio.AbstractServer | None = None
        self.connections: set[asyncio.Task[None]] = set()
        # Connections applying a message right now: a stop waits for them to answer it.
        self.busy: set[asyncio.Task[None]] = set()
        self.handled = 0

    async def start(self) -> int:
        """Bind and start accepting; returns the port (useful with port 0)."""
        self.server = await start_hl7_server(self._serve_connection, self.host, self.port, limit=self.max_bytes)
        sockets = getattr(self.server, "sockets", None) or ()
        return int(sockets[0].getsockname()[1]) if sockets else self.port

    def stop(self) -> None:
        self.stopping.set()

    async def serve(
        self, *, handle_signals: bool = True, ready: Callable[[int], Awaitable[None] | None] | None = None
    ) -> None:
        port = await self.start()
        if handle_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
        if ready is not None:
            result = ready(port)
            if asyncio.iscoroutine(result):
                await result
        await self.stopping.wait()
        await self.close()

    async def close(self) -> None:
        """Stop accepting, let each connection finish the message it is applying, then close them."""
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        for task in list(self.connections - self.busy):
            task.cancel()
        if self.busy:
            await asyncio.wait(list(self.busy), timeout=STOP_GRACE_SECONDS)
        for task in list(self.connections):
            task.cancel()
        if self.connections:
            await asyncio.gather(*self.connections, return_exceptions=True)

    async def _serve_connection(self, reader: Any, writer: Any) -> None:
        peer = writer.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
        if not self._admit(address):
            writer.close()
            return
        task = asyncio.current_task()
        if task is not None:
            self.connections.add(task)
        self.addresses[address] += 1
        try:
            await self._converse(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception as error:  # one connection's failure never stops the server
            logger.error("MLLP connection ended by an error: %s", type(error).__name__)
        finally:
            if task is not None:
                self.connections.discard(task)
            self.addresses[address] -= 1
            if self.addresses[address] <= 0:
                del self.addresses[address]
            writer.close()

    def _admit(self, address: str) -> bool:
        """Whether a new connection from ``address`` fits under both caps; a refusal is counted and,
        at most once a minute, logged with the count since the last line (the address: no patient data)."""
        if (
            sum(self.addresses.values()) < self.max_connections
            and self.addresses[address] < self.max_connections_per_address
        ):
            return True
        self.refused += 1
        self.refused_unlogged += 1
        now = time.monotonic()
        if self.refusal_logged_at is None or now - self.refusal_logged_at >= REFUSAL_LOG_SECONDS:
            logger.warning(
                "MLLP connection(s) refused over the caps (%d open, %d from %s; limits %d and %d per address): "
                "%d since the last line",
                sum(self.addresses.values()),
                self.addresses[address],
                address,
                self.max_connections,
                self.max_connections_per_address,
                self.refused_unlogged,
            )
            self.refusal_logged_at, self.refused_unlogged = now, 0
        return False

    async def _converse(self, reader: Any, writer: Any) -> None:
        while not self.stopping.is_set():
            try:
                block = await asyncio.wait_for(read_frame(reader), timeout=IDLE_TIMEOUT_SECONDS)
            except asyncio.IncompleteReadError:
                return  # the peer closed the connection (between frames or mid-frame)
            except TimeoutError:
                return
            except InvalidBlockError:
                writer.write(
                    START_BLOCK + _frame_error("The frame does not start with the MLLP start byte.") + END_BLOCK + b"\r"
                )
                await writer.drain()
                continue
            if block is None:
                # Over the limit: the whole frame was read past and dropped; one answer for it.
                outcome = await sync_to_async(too_large, thread_sensitive=True)(
                    self.max_bytes + 1, channel=HL7Message.Channel.MLLP
                )
                writer.writeblock(outcome.ack.encode())
                await writer.drain()
                continue
            task = asyncio.current_task()
            if task is not None:
                self.busy.add(task)
            try:
                outcomes = await sync_to_async(_ingest, thread_sensitive=True)(block, self.actor)
                for outcome in outcomes:
                    writer.writeblock(outcome.ack.encode("utf-8"))
                    self.handled += 1
                await writer.drain()
            finally:
                if task is not None:
                    self.busy.discard(task)
