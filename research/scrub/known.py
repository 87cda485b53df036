"""The record-aware layer of the scrubber: what the record itself knows, in every way a note writes it."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date

from research.safe_harbor import Contact, PatientDemographics
from research.scrub.spans import ADDRESS, DATE, EMAIL, ID, NAME, PHONE, ZIP, Span

# Name particles are only removed as part of a whole name ("Ana de la Cruz"): alone they are words.
_PARTICLES = frozenset(
    {"de", "da", "del", "della", "der", "den", "di", "du", "la", "le", "van", "von", "bin", "al", "el"}
)
# A known name token that is also a month is kept where it reads as the month ("in May", "May 2026").
_MONTH_WORDS = frozenset({"april", "may", "june", "july", "august"})
_MONTH_CONTEXT = re.compile(
    r"(?:\b(?:in|since|by|until|till|of|early|late|mid|last|next|this|during)\s+|-)$", re.IGNORECASE
)
# Names that are also ordinary words are read as the word when written in lower case ("BP rose").
_WORD_NAMES = frozenset(
    {"rose", "mark", "grace", "will", "hope", "faith", "joy", "bill", "frank", "sue", "pat", "art", "dawn", "iris"}
    | {"ivy", "amber", "summer", "victor", "sandy", "rusty", "gene", "may", "june", "april", "august", "don"}
)
# Titles and post-nominals written in a staff name ("Dr. Amit Rao, MD") are not names themselves.
_TITLES = frozenset({"dr", "mr", "mrs", "ms", "mx", "miss", "prof", "md", "do", "rn", "np", "pa", "phd", "jr", "sr"})

# Misspelt names: only for known tokens this long, and only one edit away with the same first letter;
# shorter names are too close to ordinary words to guess at.
_FUZZY_MIN_LENGTH = 5
# Digits a phone number must share with a known one to count as that phone (a local number is 7).
_PHONE_MIN_DIGITS = 7

_US_STATES = frozenset(
    [
        "AL",
        "AK",
        "AZ",
        "AR",
        "CA",
        "CO",
        "CT",
        "DE",
        "DC",
        "FL",
        "GA",
        "HI",
        "ID",
        "IL",
        "IN",
        "IA",
        "KS",
        "KY",
        "LA",
        "ME",
        "MD",
        "MA",
        "MI",
        "MN",
        "MS",
        "MO",
        "MT",
        "NE",
        "NV",
        "NH",
        "NJ",
        "NM",
        "NY",
        "NC",
        "ND",
        "OH",
        "OK",
        "OR",
        "PA",
        "RI",
        "SC",
        "SD",
        "TN",
        "TX",
        "UT",
        "VT",
        "VA",
        "WA",
        "WV",
        "WI",
        "WY",
        "PR",
    ]
)
_STREET_SUFFIXES = {
    "street": "st",
    "avenue": "ave",
    "road": "rd",
    "lane": "ln",
    "drive": "dr",
    "boulevard": "blvd",
    "court": "ct",
    "place": "pl",
    "terrace": "ter",
    "square": "sq",
    "parkway": "pkwy",
    "highway": "hwy",
    "circle": "cir",
    "way": "way",
}
_MONTHS = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)


@dataclass(frozen=True)
class KnownIdentifiers:
    """Everything one record knows that identifies the patient, their contacts or their carers."""

    names: tuple[str, ...] = ()
    ids: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    streets: tuple[str, ...] = ()
    cities: tuple[str, ...] = ()
    zips: tuple[str, ...] = ()
    dates: tuple[date, ...] = ()

    @classmethod
    def from_demographics(
        cls,
        demographics: PatientDemographics,
        *,
        staff_names: Iterable[str] = (),
        dates: Iterable[date] = (),
    ) -> KnownIdentifiers:
        """Collect the identifiers of a record: the patient, every contact, and the staff names and
        extra dates (encounters, procedures) the caller read for the same record."""
        d = demographics
        contacts = (
            *d.contacts,
            Contact(name=d.emergency_contact_name, phone=d.emergency_contact_phone),
        )
        streets = [d.address_line]
        cities = [d.city]
        zips = [d.postal_code]
        for contact in contacts:
            street, city, zip_code = _split_address(contact.address)
            streets.append(street)
            cities.extend(city)
            zips.append(zip_code)
        known_dates = [d.birth_date, *([d.deceased_date] if d.deceased_date else []), *dates]
        return cls(
            names=_nonempty([f"{d.given_name} {d.family_name}", *(c.name for c in contacts), *staff_names]),
            ids=_nonempty([d.mrn, d.national_id, *d.identifiers.values()]),
            phones=_nonempty([d.phone, *(c.phone for c in contacts)]),
            emails=_nonempty([d.email, *(c.email for c in contacts)]),
            streets=_nonempty(streets),
            cities=_nonempty(cities),
            zips=_nonempty(zips),
            dates=tuple(dict.fromkeys(known_dates)),
        )


def known_spans(text: str, folded: str, known: KnownIdentifiers) -> Iterator[Span]:
    """Every stretch of ``text`` that is an identifier the record knows (``folded`` is ``fold(text)``)."""
    yield from _known_names(text, folded, known)
    yield from _known_literals(folded, known)
    yield from _known_phones(text, known)
    yield from _known_dates(folded, known)


# --- folding -------------------------------------------------------------------------------------


def fold(text: str) -> str:
    """Lower-case, strip diacritics and unify apostrophes, one character for one character, so a
    position in the folded text is the same position in the original."""
    return "".join(_fold_char(c) for c in text)


def _fold_char(c: str) -> str:
    if c.isascii():
        return c.lower()
    if c in "\u2019\u2018\u02bc":
        return "'"
    stripped = "".join(x for x in unicodedata.normalize("NFKD", c) if not unicodedata.combining(x)).lower()
    return stripped if len(stripped) == 1 else c


def _fold_str(value: str) -> str:
    return fold(value).strip()


def _nonempty(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v.strip() for v in values if v and v.strip()))


def _split_address(address: str) -> tuple[str, list[str], str]:
    """A contact's one-line address as (street, [city...], zip); the state is not an identifier."""
    street, cities, zip_code = "", [], ""
    for part in (p.strip() for p in address.split(",")):
        if not part:
            continue
        words = part.split()
        if words and re.fullmatch(r"\d{5}(?:-\d{4})?", words[-1]):
            zip_code = words[-1]
            words = words[:-1]
        rest = " ".join(words)
        if not rest or rest.upper() in _US_STATES:
            continue
        if rest[0].isdigit() and not street:
            street = rest
        else:
            cities.append(rest)
    return street, cities, zip_code


# --- record-known identifiers --------------------------------------------------------------------


def _name_tokens(known: KnownIdentifiers) -> tuple[list[str], list[str]]:
    """(whole names as regex sources, single name tokens) in folded form."""
    wholes: list[str] = []
    tokens: set[str] = set()
    for name in known.names:
        parts = [p for p in re.split(r"[\s\-.,]+", _fold_str(name)) if p and p not in _TITLES]
        if len(parts) > 1:
            wholes.append(r"[\s\-]+".join(re.escape(p).replace("'", r"['\s]?") for p in parts))
        for part in (p.strip("'") for p in parts if p not in _PARTICLES):
            # "O'Brien" is also written "OBrien", "O Brien" and "Brien".
            variants = [part, part.replace("'", ""), *part.split("'")] if "'" in part else [part]
            tokens.update(v for v in variants if len(v) >= 2 and v not in _PARTICLES)
    return wholes, sorted(tokens, key=len, reverse=True)


_INITIAL_BEFORE = re.compile(r"(?:\b[A-Z]\.?\s+){1,2}$")
_INITIAL_AFTER = re.compile(r",?\s+[A-Z]\.(?:\s?[A-Z]\.)?")
_WORD = re.compile(r"[^\W\d_](?:[^\W\d_]|')*")


def _known_names(text: str, folded: str, known: KnownIdentifiers) -> Iterator[Span]:
    wholes, tokens = _name_tokens(known)
    if not tokens and not wholes:
        return
    sources = wholes + [re.escape(t) for t in tokens]
    pattern = re.compile(r"(?<![^\W_])(?:" + "|".join(sources) + r")(?![^\W_])")
    for match in pattern.finditer(folded):
        start, end = match.span()
        word = match.group()
        if word in _MONTH_WORDS and _reads_as_month(text, start, end):
            continue
        if word in _WORD_NAMES and not text[start].isupper():
            continue
        yield _with_initials(text, start, end)
    fuzzy = [t for t in tokens if len(t) >= _FUZZY_MIN_LENGTH]
    if not fuzzy:
        return
    by_first: dict[str, list[str]] = {}
    for t in fuzzy:
        by_first.setdefault(t[0], []).append(t)
    for match in _WORD.finditer(folded):
        word = match.group().removesuffix("'s").rstrip("'")
        candidates = by_first.get(word[:1], ())
        if len(word) >= _FUZZY_MIN_LENGTH - 1 and any(w != word and _one_edit(word, w) for w in candidates):
            yield _with_initials(text, match.start(), match.start() + len(word))


def _reads_as_month(text: str, start: int, end: int) -> bool:
    """A name that is also a month ("May") reads as the month after "in", "since"... or before a
    number; lower-case it is the verb. A month with a day is a date and the date patterns take it."""
    if not text[start].isupper():
        return True
    before = text[max(0, start - 12) : start]
    after = text[end : end + 6]
    return bool(_MONTH_CONTEXT.search(before)) or bool(re.match(r",?\s*\d", after))


def _with_initials(text: str, start: int, end: int) -> Span:
    """Widen a name to the initials written with it: "J. Smith", "J R Smith", "Smith, J."."""
    before = _INITIAL_BEFORE.search(text[max(0, start - 8) : start])
    if before:
        start -= len(before.group())
    after = _INITIAL_AFTER.match(text, end)
    if after:
        end = after.end()
    return Span(start, end, NAME)


def _one_edit(a: str, b: str) -> bool:
    """True when ``a`` and ``b`` differ by one insertion, deletion, substitution or transposition."""
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diffs = [i for i in range(len(a)) if a[i] != b[i]]
        if len(diffs) == 1:
            return True
        return (
            len(diffs) == 2 and diffs[1] == diffs[0] + 1 and a[diffs[0]] == b[diffs[1]] and a[diffs[1]] == b[diffs[0]]
        )
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    i = 0
    while i < len(short) and short[i] == long_[i]:
        i += 1
    return short[i:] == long_[i + 1 :]


def _separated(value: str) -> str:
    """A regex for ``value``'s letters and digits with any (or no) separator between them."""
    core = [c for c in _fold_str(value) if c.isalnum()]
    return r"[\s.\-/]?".join(re.escape(c) for c in core)


def _street_source(street: str) -> list[str]:
    """Regexes for a street line: as written, and its name with the suffix spelt out or abbreviated."""
    words = _fold_str(street).replace(",", " ").replace(".", " ").split()
    sources = [r"\s+".join(re.escape(w) for w in words)] if words else []
    if words and words[0][0].isdigit():
        words = words[1:]
    full = next((k for k, v in _STREET_SUFFIXES.items() if words and words[-1] in (k, v)), "")
    if full:
        name = r"\s+".join(re.escape(w) for w in words[:-1])
        if name:
            sources.append(rf"(?:\d{{1,6}}[a-z]?\s+)?{name}\s+(?:{full}|{_STREET_SUFFIXES[full]}\.?)")
    return sources


def _known_literals(folded: str, known: KnownIdentifiers) -> Iterator[Span]:
    groups: list[tuple[str, list[str]]] = [
        (EMAIL, [re.escape(_fold_str(e)) for e in known.emails]),
        (ID, [_separated(i) for i in known.ids if sum(c.isalnum() for c in i) >= 3]),
        (ID, [_separated(_id_core(i)) for i in known.ids if len(_id_core(i)) >= 4]),
        (ADDRESS, [s for street in known.streets for s in _street_source(street)]),
        (ADDRESS, [r"\s+".join(re.escape(w) for w in _fold_str(c).split()) for c in known.cities]),
        (ZIP, [re.escape(z.strip()) for z in known.zips]),
    ]
    for kind, sources in groups:
        sources = [s for s in sources if s]
        if not sources:
            continue
        pattern = re.compile(r"(?<![^\W_])(?:" + "|".join(sorted(sources, key=len, reverse=True)) + r")(?![^\W_])")
        for match in pattern.finditer(folded):
            yield Span(*match.span(), kind)


def _id_core(value: str) -> str:
    """The digits of an identifier with a letter prefix ("MRN-004512" -> "004512")."""
    match = re.search(r"\d[\d\s.\-]*\d", value)
    return match.group() if match else ""


_PHONE_RUN = re.compile(r"\+?\(?\d[\d\s().\-]{5,24}\d")


def _known_phones(text: str, known: KnownIdentifiers) -> Iterator[Span]:
    wanted = {d[-10:] for d in ("".join(c for c in p if c.isdigit()) for p in known.phones)}
    wanted = {d for d in wanted if len(d) >= _PHONE_MIN_DIGITS}
    if not wanted:
        return
    for match in _PHONE_RUN.finditer(text):
        digits = "".join(c for c in match.group() if c.isdigit())
        if any(w in digits or (len(digits) >= _PHONE_MIN_DIGITS and w.endswith(digits)) for w in wanted):
            start, end = match.span()
            if text[start] == "(" and ")" not in match.group():
                start += 1  # "(413-555-0123)": the bracket is the sentence's, not the number's
            yield Span(start, end, PHONE)


def _date_forms(value: date) -> set[str]:
    month = _MONTHS[value.month - 1]
    d, m, y, yy = value.day, value.month, value.year, value.year % 100
    forms = {
        f"{y}-{m:02d}-{d:02d}",
        f"{y}{m:02d}{d:02d}",
        f"{y}/{m:02d}/{d:02d}",
        f"{y}.{m:02d}.{d:02d}",
        f"{month} {d}",
        f"{month[:3]} {d}",
        f"{month[:3]}. {d}",
        f"{d} {month}",
        f"{d} {month[:3]}",
        f"{d}th of {month}",
    }
    for a, b in ((m, d), (d, m)):
        for sep in "/.-":
            forms.update({f"{a}{sep}{b}{sep}{y}", f"{a:02d}{sep}{b:02d}{sep}{y}", f"{a}{sep}{b}{sep}{yy:02d}"})
            forms.update({f"{a:02d}{sep}{b:02d}{sep}{yy:02d}"})
    return forms


def _known_dates(folded: str, known: KnownIdentifiers) -> Iterator[Span]:
    forms = {f for d in known.dates for f in _date_forms(d)}
    if not forms:
        return
    sources = sorted((re.escape(f).replace(r"\ ", r"\s+") for f in forms), key=len, reverse=True)
    pattern = re.compile(r"(?<![\w/.\-])(?:" + "|".join(sources) + r")(?:st|nd|rd|th)?(?:,?\s+\d{4})?(?![\w/\-])")
    for match in pattern.finditer(folded):
        yield Span(*match.span(), DATE)
