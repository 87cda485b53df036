"""Three-digit ZIP prefixes under HIPAA Safe Harbor (45 CFR 164.514(b)(2)(i)(B)).

Safe Harbor lets a dataset keep the first three digits of a ZIP code only when the geographic unit
formed by all ZIP codes with those three digits holds more than 20,000 people, "according to the
current publicly available data from the Bureau of the Census"; otherwise the three digits become
``000``. The list below is the one HHS publishes for the 2000 Census: *Guidance Regarding Methods
for De-identification of Protected Health Information in Accordance with the HIPAA Privacy Rule*,
U.S. Department of Health and Human Services, Office for Civil Rights, 2012, section 3.6 (the
17 three-digit ZIP areas with a population of 20,000 or fewer). See docs/research/zip3.md for why it
is a fixed list and when to revisit it.

A code that is not a US ZIP (five digits, or ZIP+4 as nine digits with or without a hyphen) also
maps to ``000``: we cannot tell which area it names, so we keep none of it (fail closed).
"""

from __future__ import annotations

import re

# HHS OCR de-identification guidance (2012), §3.6, 2000 Census: three-digit ZIP areas of 20,000
# people or fewer. Frozen: a new Census list is a reviewed change with its own source, not a download.
RESTRICTED_ZIP3: frozenset[str] = frozenset(
    {
        "036",
        "059",
        "063",
        "102",
        "203",
        "556",
        "692",
        "790",
        "821",
        "823",
        "830",
        "831",
        "878",
        "879",
        "884",
        "890",
        "893",
    }
)

SUPPRESSED_ZIP3 = "000"

# Five digits, or ZIP+4 written as nine digits or as 5-4 with a hyphen; ASCII digits only.
_ZIP_RE = re.compile(r"[0-9]{5}(?:-?[0-9]{4})?")


def zip3(postal_code: str | None) -> str:
    """Return the Safe Harbor three-digit ZIP of ``postal_code``.

    The first three digits, or ``"000"`` for one of the 17 restricted areas and for anything that is
    not a five- or nine-digit US ZIP code (empty, foreign, malformed). Surrounding blanks are ignored.
    """
    code = (postal_code or "").strip()
    if not _ZIP_RE.fullmatch(code):
        return SUPPRESSED_ZIP3
    prefix = code[:3]
    return SUPPRESSED_ZIP3 if prefix in RESTRICTED_ZIP3 else prefix
