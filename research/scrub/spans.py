"""The kinds of identifier the scrubber replaces, and a replaced stretch of text."""

from __future__ import annotations

from dataclasses import dataclass

NAME = "NAME"
DATE = "DATE"
PHONE = "PHONE"
EMAIL = "EMAIL"
ADDRESS = "ADDRESS"
ID = "ID"
URL = "URL"
IP = "IP"
ZIP = "ZIP"
AGE = "AGE 90+"
KINDS = (NAME, DATE, PHONE, EMAIL, ADDRESS, ID, URL, IP, ZIP, AGE)


@dataclass(frozen=True)
class Span:
    """A removed stretch of the original text, ``text[start:end]``, and what it was taken for."""

    start: int
    end: int
    kind: str
