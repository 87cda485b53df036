"""``manage.py hl7_listen --host 127.0.0.1 --port 2575``: the MLLP listener for an interface engine."""

from __future__ import annotations

import asyncio
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from exchange.hl7.account import InterfaceAccountError, interface_account, interface_account_create
from exchange.hl7.listener import Listener


class Command(BaseCommand):
    help = (
        "Listen for HL7 v2 messages over MLLP and answer each with an ACK (AA, AE, AR). "
        "SIGTERM or Ctrl-C stops it after the messages being applied are answered."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
        parser.add_argument("--port", type=int, default=2575, help="TCP port (default 2575, the HL7 port)")
        parser.add_argument("--actor", default="", help="the interface account (default: HL7_INTERFACE_USERNAME)")
        parser.add_argument(
            "--create-account", action="store_true", help="create the interface account first if it does not exist"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not 0 <= options["port"] <= 65535:
            raise CommandError("--port must be between 0 and 65535.")
        if options["create_account"]:
            interface_account_create(options["actor"])
        try:
            actor = interface_account(options["actor"])
        except InterfaceAccountError as error:
            raise CommandError(str(error)) from error
        listener = Listener(
            actor=actor,
            host=options["host"],
            port=options["port"],
            max_bytes=settings.HL7_MAX_MESSAGE_BYTES,
            max_connections=settings.HL7_MAX_CONNECTIONS,
            max_connections_per_address=settings.HL7_MAX_CONNECTIONS_PER_ADDRESS,
        )

        def ready(port: int) -> None:
            self.stdout.write(f"Listening for HL7 v2 over MLLP on {options['host']}:{port} as {actor.username}")
            self.stdout.flush()

        try:
            asyncio.run(listener.serve(ready=ready))
        except OSError as error:
            raise CommandError(f"Cannot listen on {options['host']}:{options['port']}: {error.strerror}.") from error
        self.stdout.write(f"Stopped after {listener.handled} message(s).")
