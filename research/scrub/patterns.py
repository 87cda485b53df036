"""The pattern layer of the scrubber: identifiers the record does not hold, found by their shape."""

from __future__ import annotations

import re
from collections.abc import Iterator

from research.scrub.spans import ADDRESS, AGE, DATE, EMAIL, ID, IP, NAME, PHONE, URL, ZIP, Span

# The longest token the ID rule classifies: a longer run is an ID without looking further.
_LONGEST_TOKEN = 64
# A capitalised "May" or a lower-case "may" are different words: only the first is a month here.
_MONTH = (
    r"(?:(?i:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?"
    r"|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)(?<!may)|May)\.?"
)
_DAY = r"(?:[12]\d|3[01]|0?[1-9])(?:st|nd|rd|th)?"
_YEAR = r"(?:1[89]\d\d|2[01]\d\d)"
_AGE_90 = r"(?:9\d|1[01]\d)"
_TITLED = r"(?P<v>[A-Z][\w'\-]{1,40}(?:(?<!'s)[ \t]+[A-Z][a-z][\w'\-]{0,40})?)"
# Each pattern claims its whole match, or only its group ``v`` when it has one (the label stays).
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (URL, re.compile(r"\b(?:https?://|www\.)[^\s<>\"')\]]{1,2048}", re.IGNORECASE)),
    (IP, re.compile(r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?!\d|\.\d)")),
    (AGE, re.compile(rf"\b{_AGE_90}(?:\s*-\s*|\s+)(?:years?|yrs?)(?:\s*-\s*|\s+)old\b", re.IGNORECASE)),
    (AGE, re.compile(rf"\b{_AGE_90}\s?(?:yo|y/o|y\.o\.)(?![\w/])", re.IGNORECASE)),
    (AGE, re.compile(rf"\bage[ds]?:?[ \t]{{1,3}}(?P<v>{_AGE_90})\b", re.IGNORECASE)),
    (AGE, re.compile(r"\b(?:nonagenarian|centenarian)\b", re.IGNORECASE)),
    (ID, re.compile(r"(?<![\d-])\d{3}-\d{2}-\d{4}(?![\d-])")),  # SSN-like
    (
        DATE,
        re.compile(
            rf"\b{_YEAR}[-/.](?:0?[1-9]|1[0-2])[-/.](?:[12]\d|3[01]|0?[1-9])\b"
            rf"|(?<![\d/.])(?:[12]\d|3[01]|0?[1-9])[-/.](?:[12]\d|3[01]|0?[1-9])[-/.](?:{_YEAR}|\d\d)(?!\d|[/.]\d)"
            rf"|\b{_DAY}(?:\s+of)?\s+{_MONTH},?(?:\s+{_YEAR})?\b"
            rf"|\b{_MONTH}\s+{_DAY}(?:,?\s+{_YEAR})?\b"
            rf"|\b{_MONTH}\s+{_YEAR}\b"
        ),
    ),
    (
        PHONE,
        re.compile(
            r"(?<![\w+])(?:\+?1[\s.\-]?)?(?:\(\d{3}\)\s?|\d{3}[\s.\-])\d{3}[\s.\-]\d{4}(?!\d)(?:[ \t]?ext\.?[ \t]?\d{1,5})?"
            r"|(?<![\w+])\+\d{1,3}(?:[\s.\-]?\(?\d{1,4}\)?){2,5}(?!\d)"
            r"|(?<![\w/.\-])\d{3}-\d{4}(?![\w/\-])"
            r"|\bext\.?\s?\d{2,5}\b",
            re.IGNORECASE,
        ),
    ),
    (
        PHONE,
        re.compile(r"\b(?:fax|tel|phone|cell|mobile|pager)\b\.?:?[ \t]{0,3}(?P<v>\+?[\d(][\d ().\-]{5,20}\d)", re.I),
    ),
    (
        ADDRESS,
        re.compile(
            r"\b\d{1,6}[A-Za-z]?\s+(?:[A-Z][A-Za-z'\-]*\.?\s+){1,3}"
            r"(?:Street|St|Avenue|Ave|Road|Rd|Lane|Ln|Drive|Dr|Boulevard|Blvd|Court|Ct|Place|Pl|Way|Terrace|Ter|"
            r"Parkway|Pkwy|Highway|Hwy|Circle|Cir|Square|Sq)\b\.?"
            r"(?:,?\s+(?:Apt|Apartment|Unit|Suite|Ste|#)\.?\s*[A-Za-z0-9\-]{1,6})?"
            r"|\b(?:P\.?\s?O\.?\s+Box|Apt\.?|Apartment|Suite|Unit)\s*#?\s*\d{1,6}[A-Za-z]?\b"
        ),
    ),
    (ZIP, re.compile(r"\b[A-Z]{2}[ \t]{1,2}(?P<v>\d{5}(?:-\d{4})?)\b")),
    (ZIP, re.compile(r"\b\d{5}-\d{4}\b")),
    (ZIP, re.compile(r"\bzip(?:\s?code)?:?[ \t]{0,2}(?P<v>\d{5})\b", re.IGNORECASE)),
    (
        ID,
        re.compile(
            r"\b(?:mrn|ssn|acct|account|policy|member|subscriber|medicaid|medicare|insurance|licen[cs]e|plate|"
            r"serial|device|passport|vin|badge|case|claim|record|chart|id|no\.|number)"
            r"(?:[ \t]?(?:no\.?|number|id|#))?[ \t]?[:#]?[ \t]{0,2}"
            r"(?P<v>(?=[A-Za-z\-]{0,10}\d)[A-Za-z0-9][A-Za-z0-9\-]{2,40})",
            re.IGNORECASE,
        ),
    ),
    (ID, re.compile(r"#[ \t]?(?P<v>\d[A-Za-z0-9\-]{3,40})")),
    (NAME, re.compile(rf"\b(?:Dr|Mr|Mrs|Ms|Mx|Miss|Prof)\.?[ \t]+{_TITLED}")),
)


def _patterns(text: str) -> Iterator[Span]:
    for kind, pattern in _PATTERNS:
        has_group = "v" in pattern.groupindex
        for match in pattern.finditer(text):
            start, end = match.span("v") if has_group else match.span()
            if kind == URL:
                end = start + len(match.group().rstrip(".,;:!?"))
            yield Span(start, end, kind)


_EMAIL_LOCAL = re.compile(r"[\w.+\-]{1,64}$")
_EMAIL_DOMAIN = re.compile(r"[\w\-]{1,63}(?:\.[\w\-]{1,63}){1,8}")


def _emails(text: str) -> Iterator[Span]:
    """Emails, found from each "@" outwards so a long run of word characters cannot backtrack."""
    at = text.find("@")
    while at != -1:
        # The domain first: it fails at once where there is none (a run of at-signs), and the local
        # part's search, which tries each start in the 64 characters before, is then not needed.
        domain = _EMAIL_DOMAIN.match(text, at + 1)
        local = _EMAIL_LOCAL.search(text, max(0, at - 64), at) if domain else None
        if local and domain:
            yield Span(local.start(), domain.end(), EMAIL)
        at = text.find("@", at + 1)


_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-]*")
_DOSE = re.compile(r"\d+[A-Za-z]{1,5}")


def _tokens(text: str) -> Iterator[Span]:
    """Long digit runs and letter-digit identifiers, classified per token (one linear scan).

    An ID is 7+ digits in a row, or a token of 6+ characters with at least 4 digits and a letter
    (``A1234567``, ``XK-2041-77``); clinical codes stay: LOINC ``4548-4`` has no letter and few
    digits, ``COVID-19``, ``HbA1c`` and TNM ``T2N1M0`` too few digits, ICD ``E11.9`` is split at the
    dot, and a dose (``1000mg``) is a number with its unit.
    """
    for match in _TOKEN.finditer(text):
        token = match.group()
        if len(token) < 6:
            continue  # too short to be either kind of ID below (a note is mostly such words)
        if len(token) > _LONGEST_TOKEN:
            if any(c.isdigit() for c in token):
                yield Span(*match.span(), ID)
            continue
        digits = sum(c.isdigit() for c in token)
        longest_run = max((len(r) for r in re.findall(r"\d+", token)), default=0)
        letters = sum(c.isalpha() for c in token)
        if _DOSE.fullmatch(token):
            continue  # "1000mg", "250mcg": a number and its unit
        if longest_run >= 7 or (len(token) >= 6 and digits >= 4 and letters >= 1):
            yield Span(*match.span(), ID)


def pattern_spans(text: str) -> Iterator[Span]:
    """Every stretch of ``text`` whose shape is an identifier's."""
    yield from _patterns(text)
    yield from _emails(text)
    yield from _tokens(text)
