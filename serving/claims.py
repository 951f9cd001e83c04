"""The checkable claims of a text (numbers, amounts, contacts, times, dates, codes), normalised.

A small model copies the shape of a policy more reliably than its figures: it writes
"within 15 hours" where the source says 15 minutes, or invents a toll-free line. Every such
claim in an answer must therefore appear in the question or in the sources the model read.
`extract_claims` reads them in a canonical form ("fifteen minutes", "15 min" and
"15-minute" are all `15 minute`), `SupportIndex` holds what the question and sources state,
and `unsupported_claims` is what an answer states beyond them. It runs on every streamed
sentence, so it is plain regular expressions, compiled once.

The same reading makes `normalise_for_matching`, for the evaluation: an expected fact
("$1,500", "11 hours") is found however the answer words it ("1500 dollars", "eleven hours").

What is not a claim: articles ("an hour"), number words of ten or less with no unit after
them ("one reminder", "no one"), citation marks ("[1]"), list numbering ("2. Call ...").
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from enum import Enum, StrEnum
from fractions import Fraction


class ClaimKind(StrEnum):
    QUANTITY = "quantity"
    AMOUNT = "amount"
    PERCENT = "percent"
    PHONE = "phone"
    EXTENSION = "extension"
    EMAIL = "email"
    TIME_OF_DAY = "time_of_day"
    DATE = "date"
    CODE = "code"


@dataclass(frozen=True)
class Claim:
    """One checkable fact of a text.

    `value` is canonical: "30000", "1.5", "8002281233" (a phone's digits, without the
    leading 1 of an 11-digit number), "ops@example.com", "07:00", "2026-03-01", "--03-01"
    (no year), "NW-A3". `unit` is the canonical unit of a QUANTITY ("lb", "minute",
    "business day", "degF", ...), "usd" for an AMOUNT, None otherwise or when the number
    was written without one. `text` is the claim as written, for reports ("15 min").
    """

    kind: ClaimKind
    value: str
    unit: str | None
    text: str


# Canonical unit, then how it is written. degC comes before degF, so that "degrees C" is
# not read as "degrees" (Fahrenheit, the company's unit) followed by a stray C.
_UNIT_FORMS: tuple[tuple[str, str], ...] = (
    ("business day", r"(?:business|working)[\s-]+days?"),
    ("hour", r"(?:business|working)[\s-]+hours?"),
    ("minute", r"min(?:ute)?s?"),
    ("hour", r"h(?:ou)?rs?"),
    ("second", r"sec(?:ond)?s?"),
    ("day", r"days?"),
    ("week", r"w(?:ee)?ks?"),
    ("month", r"months?"),
    ("year", r"y(?:ea)?rs?"),
    ("lb", r"lbs?|pounds?"),
    ("kg", r"kgs?|kilo(?:gram)?s?"),
    ("km", r"km|kilomet(?:er|re)s?"),
    ("mile", r"mi(?:les?)?"),
    ("ft", r"ft|feet|foot"),
    ("inch", r"inch(?:es)?"),
    ("mph", r"mph"),
    ("gallon", r"gal(?:lon)?s?"),
    ("ton", r"tons?"),
    ("degC", r"°\s?C(?:elsius)?|deg(?:ree)?s?\s?C(?:elsius)?"),
    ("degF", r"°\s?F(?:ahrenheit)?|°|deg(?:ree)?s?(?:\s?F(?:ahrenheit)?)?|F"),
)
_UNIT_MATCHERS = tuple((unit, re.compile(form, re.IGNORECASE)) for unit, form in _UNIT_FORMS)
_UNIT = "(?:" + "|".join(form for _, form in _UNIT_FORMS) + ")"
# How `normalise_for_matching` writes each unit after its number.
_UNIT_WORDS = {
    "business day": "business days",
    "minute": "minutes",
    "hour": "hours",
    "second": "seconds",
    "day": "days",
    "week": "weeks",
    "month": "months",
    "year": "years",
    "lb": "lb",
    "kg": "kg",
    "km": "km",
    "mile": "miles",
    "ft": "ft",
    "inch": "inches",
    "mph": "mph",
    "gallon": "gallons",
    "ton": "tons",
    "degC": "degrees c",
    "degF": "degrees f",
}
_TEMPERATURES = frozenset({"degC", "degF"})
# Durations are compared in minutes ("2 hours" is "120 minutes"); a business day is a day.
_MINUTES_PER_UNIT = {"minute": 1, "hour": 60}
_UNIT_FAMILIES = {"business day": "day"}

_ONES = "one|two|three|four|five|six|seven|eight|nine"
_TEENS = "ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen"
_TENS = "twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety"
_WORD_VALUES = {
    word: value for value, word in enumerate(["zero", *_ONES.split("|"), *_TEENS.split("|")])
} | {word: 20 + 10 * index for index, word in enumerate(_TENS.split("|"))}
_BELOW_HUNDRED = rf"(?:(?:{_TENS})(?:[\s-](?:{_ONES})\b)?|{_TEENS}|{_ONES}|zero)"
_BELOW_THOUSAND = rf"{_BELOW_HUNDRED}(?:\s+hundred(?:\s+(?:and\s+)?{_BELOW_HUNDRED}\b)?)?"
_WORD_NUMBER = rf"\b{_BELOW_THOUSAND}(?:\s+thousand(?:\s+(?:and\s+)?{_BELOW_THOUSAND}\b)?)?\b"
_DIGITS = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
# "30k" is 30,000; "30km" is a distance.
_NUMBER = rf"(?:{_DIGITS}(?:k(?![a-z]))?|{_WORD_NUMBER})"
# A minus sign, only where it cannot be a range's dash ("24,001 - 38,000").
_SIGN = r"(?P<sign>(?<![\d%]\s)(?<![\w.,%])-)?"
_NUMBER_START = r"(?<![\w.,])"
# Where one number ends and the next, which carries the unit for both, begins.
_RANGE_GAP = re.compile(r"\s*(?:-|/|to|through|until|till|and|or)\s*", re.IGNORECASE)
_WORD_SMALL_MAX = 10  # number words up to this, with no unit, are ordinary words

_DASHES = str.maketrans(dict.fromkeys("‐‑‒–—―−", "-"))
_QUOTES = str.maketrans({"‘": "'", "’": "'", "‛": "'", "′": "'", "“": '"', "”": '"', "„": '"'})

# Emails come first: their local part may hold digits, and markup masking would cut `_`.
_EMAIL = re.compile(r"(?<![\w.%+-])[\w.%+-]++@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}\b")
_LIST_MARKER = re.compile(r"^[ \t]*(?:(?P<number>\d{1,3})[.)]|[-+*•])(?=[ \t])", re.MULTILINE)
_MARKUP = re.compile(
    r"""
    (?:https?://|www\.)\S+             # links: their digits are nobody's claim
    | <[@\#!][^>\s]*>                  # Slack mentions: <@U012AB3CD>
    | \[\^?\d{1,3}(?:\s*[,-]\s*\d{1,3})*\]   # citation marks: [1], [2, 3], [^1]
    | [*_`~|\#\\]                      # emphasis, code, tables, headings, escapes
    | ^[ \t]*>                         # quotes
    """,
    re.VERBOSE | re.MULTILINE,
)
_PHONE = re.compile(
    r"""
    (?<![\w+$.,/-])
    (?:
        # North American: 555-010-4411, (555) 010-4411, 1-800-228-1233, +1 555 010 4411
        (?:\+?1[\ .-]?)?(?:\(\d{3}\)[\ .-]?|\d{3}[\ .-])\d{3}[\ .-]\d{4}
        # International: +44 20 7946 0958
        | \+\d{1,3}[\ .-]?(?:\(\d{1,4}\)[\ .-]?)?(?:\d[\ .-]?){5,13}\d
        # Local: 555-0142, unless it is a range of a quantity ("300-1000 lb")
        | \d{3}-\d{4}(?![\ \t]*(?:%|"""
    + _UNIT
    + r""")(?![a-z]))
    )
    (?!\w|[.,-]\d)
    """,
    re.VERBOSE | re.IGNORECASE,
)
_EXTENSION = re.compile(
    r"(?<!\w)(?:ext(?:ension)?s?\.?:?[ \t]*|x)(?P<number>\d{2,6})(?!\w|[.,]\d)", re.IGNORECASE
)
_ISO_DATE = re.compile(
    r"(?<![\w-])(?P<year>\d{4})-(?P<month>\d{1,2})-(?P<day>\d{1,2})"
    r"(?:T(?P<time>(?P<hour>[01]\d|2[0-3]):(?P<minute>[0-5]\d))"
    r"(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?"
    r"(?![\w-])"
)
_US_DATE = re.compile(
    r"(?<![\w/.-])(?P<month>\d{1,2})/(?P<day>\d{1,2})/(?P<year>\d{4}|\d{2})(?![\w/]|[.-]\d)"
)
# "May" only capitalised: "you may 2 ..." is not a date.
_MONTH_NAME = (
    r"(?:(?i:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)|May|MAY)"
)
_MONTH_NUMBERS = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
        start=1,
    )
}
_YEAR = r"(?:19|20|21)\d{2}(?!\w|[.,]\d)"
_MONTH_DAY_DATE = re.compile(
    rf"\b(?P<month>{_MONTH_NAME})\b\.?[ \t]+(?P<day>\d{{1,2}})(?:st|nd|rd|th)?(?![\w:]|[.,]\d)"
    rf"(?:,?[ \t]+(?P<year>{_YEAR}))?"
)
_DAY_MONTH_DATE = re.compile(
    rf"(?<![\w.,])(?P<day>\d{{1,2}})(?:st|nd|rd|th)?[ \t]+(?:of[ \t]+)?"
    rf"(?P<month>{_MONTH_NAME})\b\.?(?:,?[ \t]+(?P<year>{_YEAR}))?"
)
# "pm" or "p.m."; a full stop after "pm" ends the sentence.
_MERIDIEM = r"(?P<meridiem>[ap])(?:\.m\b\.?|m\b)"
_CLOCK_TIME = re.compile(
    rf"(?<![\w:.,])(?P<hour>[01]?\d|2[0-4]):(?P<minute>[0-5]\d)(?::[0-5]\d)?"
    rf"(?:[ \t]?{_MERIDIEM})?(?![\w:]|\.\d)",
    re.IGNORECASE,
)
_HOUR_TIME = re.compile(rf"(?<![\w:.,])(?P<hour>1[0-2]|0?[1-9])[ \t]?{_MERIDIEM}", re.IGNORECASE)
_NAMED_TIME = re.compile(r"\b(?:12[ \t]?)?(?P<name>noon|midday|midnight)\b", re.IGNORECASE)
_NAMED_TIMES = {"noon": "12:00", "midday": "12:00", "midnight": "00:00"}
_MONEY_BEFORE = re.compile(
    rf"(?<![\w$])(?:US\$|\$|USD[ \t]?)[ \t]?(?P<number>{_DIGITS})"
    r"(?:[ \t]?(?P<multiplier>thousand|million)|(?P<short>[km]))?(?![a-z])",
    re.IGNORECASE,
)
_MONEY_AFTER = re.compile(
    rf"{_NUMBER_START}(?P<number>{_NUMBER})(?:[ \t](?P<multiplier>thousand|million))?"
    r"[ \t]?(?:dollars?|usd|bucks)(?![a-z])",
    re.IGNORECASE,
)
_MULTIPLIERS = {"k": 1000, "thousand": 1000, "m": 1_000_000, "million": 1_000_000}
_PERCENT = re.compile(
    rf"{_NUMBER_START}(?P<number>{_NUMBER})[ \t]?(?:%|per[ \t]?cent(?![a-z]))", re.IGNORECASE
)
# A token of letters and digits; which parts of it are a code is decided in `_codes`.
_CODE_TOKEN = re.compile(r"(?<![\w-])(?=[\w-]*\d)[^\W\d_][^\W_]*+(?:-[^\W_]++)*+(?!\w)")
_QUANTITY = re.compile(
    rf"{_SIGN}{_NUMBER_START}(?P<number>{_NUMBER})(?:-|[ \t]*)"
    rf"(?:(?:consecutive|calendar|straight|full)[ \t]+)?(?P<unit>{_UNIT})(?![a-z])",
    re.IGNORECASE,
)
# "an hour", "a day": one of the unit, as support only (an answer's "an hour" is no claim).
_ARTICLE_UNIT = re.compile(
    r"\ban?[ \t]+(?:(?:full|single)[ \t]+)?"
    r"(?P<unit>minute|hour|(?:business|working)[ \t]+day|day|week|month|year|mile)\b",
    re.IGNORECASE,
)
_BARE_NUMBER = re.compile(
    rf"{_SIGN}{_NUMBER_START}(?P<number>{_NUMBER})(?:(?<=\d)(?:st|nd|rd|th))?(?!\w|[.,]\d)",
    re.IGNORECASE,
)
_LEFTOVER_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")
_DIGIT = re.compile(r"\d")

# How `normalise_for_matching` tidies what is left around the claims.
_THOUSANDS_SEPARATOR = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_ENCLOSING = re.compile(r"""[()\[\]{}"<>]|(?<!\w)'|'(?!\w)""")
_CLOSING_PUNCTUATION = re.compile(r"[.,;:!?]+(?=\s|$)")
_WORD_HYPHEN = re.compile(r"(?<=\w)-(?=\w)")


class _Role(Enum):
    CLAIM = "claim"
    SMALL_WORD = "small_word"  # "one reminder": a claim only once a range gives it a unit
    IMPLIED = "implied"  # "an hour": support only


@dataclass(frozen=True)
class _Found:
    """A claim where it was found, with what joining it to a range needs."""

    start: int
    end: int
    kind: ClaimKind
    value: str
    unit: str | None = None
    role: _Role = _Role.CLAIM
    sign_start: int | None = None  # a minus sign before it: signed if it becomes a temperature
    meridiem: str | None = None  # "am" or "pm", for a time written with one
    text_end: int | None = None  # a range's first number is reported up to the unit it shares
    joins_next: bool = False  # the first number of a range

    def claim(self, written: str) -> Claim:
        end = self.end if self.text_end is None else self.text_end
        return Claim(self.kind, self.value, self.unit, written[self.start : end])


@dataclass(frozen=True)
class _Scan:
    written: str  # the text, NFKC-folded and with dashes unified (offsets are into this)
    plain: str  # the same with markup blanked out
    founds: list[_Found]  # in text order
    other_numbers: list[str]  # numbers that are no claim: list numbering, "3PL"


def extract_claims(text: str) -> list[Claim]:
    """The checkable claims of `text`, each distinct one once, in the order they appear."""
    scan = _scan(text)
    claims: dict[tuple[ClaimKind, str, str | None], Claim] = {}
    for found in scan.founds:
        if found.role is _Role.CLAIM:
            claims.setdefault((found.kind, found.value, found.unit), found.claim(scan.written))
    return list(claims.values())


class SupportIndex:
    """What the question and the sources state, built once and asked about each sentence.

    A claim is supported by a claim of the support with the same value and a compatible
    kind and unit: the same ones; durations converted ("2 hours" is "120 minutes"); a day
    for a business day; a number written bare on either side for any kind (a table cell
    "4411" supports "4411 lb", and "4411" in an answer is supported by "ext. 4411"). A
    number of the support that is no claim (a step's "3.", a date's year) counts as bare.
    Phones agree when one's digits end with the other's, a date without a year agrees with
    that day of any year.
    """

    def __init__(self, texts: Iterable[str]) -> None:
        self._keys: set[tuple[object, ...]] = set()
        self._values: set[str] = set()  # of every claim: what a bare number may stand for
        self._bare: set[str] = set()  # numbers that say nothing of what they count
        self._phones: list[str] = []
        self._dates: set[str] = set()
        self._month_days: set[str] = set()  # "03-01" of every date, with a year or not
        for text in texts:
            scan = _scan(text)
            self._bare.update(scan.other_numbers)
            for found in scan.founds:
                self._add(found)

    def supports(self, claim: Claim) -> bool:
        if claim.value in self._bare:
            return True
        if claim.kind is ClaimKind.QUANTITY and claim.unit is None:
            return claim.value in self._values
        if claim.kind is ClaimKind.PHONE:
            return any(_same_phone(claim.value, phone) for phone in self._phones)
        if claim.kind is ClaimKind.DATE:
            month_day = claim.value[-5:]
            if claim.value.startswith("--"):
                return month_day in self._month_days
            return claim.value in self._dates or f"--{month_day}" in self._dates
        return _key(claim.kind, claim.value, claim.unit) in self._keys

    def _add(self, found: _Found) -> None:
        self._values.add(found.value)
        self._keys.add(_key(found.kind, found.value, found.unit))
        if found.kind is ClaimKind.QUANTITY and found.unit is None:
            self._bare.add(found.value)
        elif found.kind is ClaimKind.PHONE:
            self._phones.append(found.value)
        elif found.kind is ClaimKind.DATE:
            self._dates.add(found.value)
            self._month_days.add(found.value[-5:])
            if not found.value.startswith("--"):
                self._bare.add(found.value[:4])  # "the 2026 policy"


def unsupported_claims(answer: str, support: SupportIndex) -> list[Claim]:
    """The claims of `answer` that `support` does not hold, in order."""
    return [claim for claim in extract_claims(answer) if not support.supports(claim)]


def normalise_for_matching(text: str) -> str:
    """`text` in one written form for finding expected facts in it.

    Case, Unicode look-alikes, Markdown, citation marks, quotes and dashes are folded;
    every claim is written in one way ("15 minutes", "$1500", "ext 4411", "19:00",
    "2026 03 01"), number words as digits; hyphens between words are spaces.
    """
    scan = _scan(text)
    pieces: list[str] = []
    position = 0
    for index, found in enumerate(scan.founds):
        if found.role is _Role.IMPLIED:
            continue
        pieces.extend((scan.plain[position : found.start], _rendering(found)))
        position = found.end
        if found.joins_next:
            pieces.append(" to ")
            position = scan.founds[index + 1].start
    pieces.append(scan.plain[position:])
    normal = "".join(pieces).casefold().translate(_QUOTES)
    normal = _THOUSANDS_SEPARATOR.sub("", normal)
    normal = _ENCLOSING.sub(" ", normal)
    normal = _CLOSING_PUNCTUATION.sub(" ", normal)
    normal = _WORD_HYPHEN.sub(" ", normal)
    return " ".join(normal.split())


def contains_fact(text: str, variants: Sequence[str]) -> bool:
    """Whether any of `variants` occurs in `text` as whole words, both normalised alike."""
    normal = normalise_for_matching(text)
    return any(_occurs(normalise_for_matching(variant), normal) for variant in variants)


def _occurs(needle: str, haystack: str) -> bool:
    if not needle:
        return False
    # Whole words, and a whole number: "4411" is not in "44110", "1" not in "1.5".
    pattern = rf"(?<!\w)(?<!\d[.:]){re.escape(needle)}(?!\w)(?![.:]\d)"
    return re.search(pattern, haystack) is not None


def _scan(text: str) -> _Scan:
    # NFKC folds full-width digits and look-alikes; one dash for all keeps the offsets.
    written = unicodedata.normalize("NFKC", text).translate(_DASHES)
    founds = [
        _Found(*match.span(), ClaimKind.EMAIL, match.group().lower())
        for match in _EMAIL.finditer(written)
    ]
    other_numbers = [
        _decimal_text(Decimal(match.group("number")))
        for match in _LIST_MARKER.finditer(written)
        if match.group("number")
    ]
    plain = _blank(written, [(found.start, found.end) for found in founds])
    plain = _MARKUP.sub(_spaces, _LIST_MARKER.sub(_spaces, plain))
    masked = plain
    for pattern, read in _PASSES:
        spans = []
        for match in pattern.finditer(masked):
            read_founds = read(match)
            if read_founds:  # a match that reads as nothing is left to the later passes
                founds.extend(read_founds)
                spans.append(match.span())
        masked = _blank(masked, spans)
    other_numbers.extend(
        _decimal_text(Decimal(match.group().replace(",", "")))
        for match in _LEFTOVER_NUMBER.finditer(masked)
    )
    founds.sort(key=lambda found: found.start)
    return _Scan(written, plain, _join_ranges(founds, plain), other_numbers)


def _spaces(match: re.Match[str]) -> str:
    return " " * len(match.group())


def _blank(text: str, spans: list[tuple[int, int]]) -> str:
    """`text` with each span replaced by as many spaces, so offsets stay where they were."""
    pieces: list[str] = []
    position = 0
    for start, end in spans:
        pieces.extend((text[position:start], " " * (end - start)))
        position = end
    pieces.append(text[position:])
    return "".join(pieces)


def _phone(match: re.Match[str]) -> list[_Found]:
    digits = "".join(_DIGIT.findall(match.group()))
    if len(digits) == 11 and digits.startswith("1"):
        digits = digits[1:]  # North America's country code: "1-800-..." is "800-..."
    return [_Found(*match.span(), ClaimKind.PHONE, digits)]


def _extension(match: re.Match[str]) -> list[_Found]:
    return [_Found(*match.span(), ClaimKind.EXTENSION, match.group("number"))]


def _iso_date(match: re.Match[str]) -> list[_Found]:
    value = _date_value(match.group("year"), match.group("month"), match.group("day"))
    if value is None:
        return []
    founds = [_Found(match.start(), match.end("day"), ClaimKind.DATE, value)]
    if match.group("time"):
        clock = _clock(int(match.group("hour")), int(match.group("minute")), None)
        founds.append(_Found(*match.span("time"), ClaimKind.TIME_OF_DAY, clock))
    return founds


def _us_date(match: re.Match[str]) -> list[_Found]:
    year = match.group("year")
    if len(year) == 2:
        year = f"20{year}"
    value = _date_value(year, match.group("month"), match.group("day"))
    return [] if value is None else [_Found(*match.span(), ClaimKind.DATE, value)]


def _named_month_date(match: re.Match[str]) -> list[_Found]:
    month = str(_MONTH_NUMBERS[match.group("month")[:3].lower()])
    value = _date_value(match.group("year"), month, match.group("day"))
    return [] if value is None else [_Found(*match.span(), ClaimKind.DATE, value)]


def _date_value(year: str | None, month: str, day: str) -> str | None:
    """ISO 8601, or "--MM-DD" without a year; None for a day that does not exist."""
    try:
        # A leap year stands in for a missing one, so that "Feb 29" is a day.
        date = dt.date(int(year) if year else 2000, int(month), int(day))
    except ValueError:
        return None
    return date.isoformat() if year else f"--{date:%m-%d}"


def _clock_time(match: re.Match[str]) -> list[_Found]:
    meridiem = _meridiem(match)
    clock = _clock(int(match.group("hour")), int(match.group("minute")), meridiem)
    return [_Found(*match.span(), ClaimKind.TIME_OF_DAY, clock, meridiem=meridiem)]


def _hour_time(match: re.Match[str]) -> list[_Found]:
    meridiem = _meridiem(match)
    clock = _clock(int(match.group("hour")), 0, meridiem)
    return [_Found(*match.span(), ClaimKind.TIME_OF_DAY, clock, meridiem=meridiem)]


def _named_time(match: re.Match[str]) -> list[_Found]:
    value = _NAMED_TIMES[match.group("name").lower()]
    return [_Found(*match.span(), ClaimKind.TIME_OF_DAY, value)]


def _meridiem(match: re.Match[str]) -> str | None:
    letter = match.group("meridiem")
    return f"{letter.lower()}m" if letter else None


def _clock(hour: int, minute: int, meridiem: str | None) -> str:
    """ "HH:MM" on the 24-hour clock; a meridiem counts only on a 12-hour clock's hour."""
    if meridiem and 1 <= hour <= 12:
        hour = hour % 12 + (12 if meridiem == "pm" else 0)
    return f"{hour % 24:02d}:{minute:02d}"  # 24:00 is midnight


def _money(match: re.Match[str]) -> list[_Found]:
    amount = _number_value(match.group("number"))
    multiplier = match.groupdict().get("short") or match.group("multiplier")
    if multiplier:
        amount *= _MULTIPLIERS[multiplier.lower()]
    return [_Found(*match.span(), ClaimKind.AMOUNT, _decimal_text(amount), "usd")]


def _percent(match: re.Match[str]) -> list[_Found]:
    value = _decimal_text(_number_value(match.group("number")))
    return [_Found(*match.span(), ClaimKind.PERCENT, value)]


_VERSION = re.compile(r"[vV]\d{1,3}")


def _codes(match: re.Match[str]) -> list[_Found]:
    """The codes of a token: its runs of dash-joined parts that are not words.

    "NW-A3", "ELD-2", "P1" are codes; "priority-1" and "Form-2290" are a word and a
    number, and "P1-P4" is two codes, as "P1 to P4" would be.
    """
    founds = []
    for start, end in _code_runs(match.group()):
        run = match.group()[start:end]
        if not (_DIGIT.search(run) and any(char.isalpha() for char in run)):
            continue
        if _VERSION.fullmatch(run):
            # "v3" is version 3, as the sources' headers write it: a plain number.
            offset = match.start() + start
            founds.append(_Found(offset, offset + len(run), ClaimKind.QUANTITY, run[1:]))
            continue
        parts = run.split("-")
        if len(parts) > 1 and all(_DIGIT.search(part) and not part.isdigit() for part in parts):
            offset = match.start() + start
            for part in parts:
                founds.append(_Found(offset, offset + len(part), ClaimKind.CODE, part.upper()))
                offset += len(part) + 1
        else:
            founds.append(
                _Found(match.start() + start, match.start() + end, ClaimKind.CODE, run.upper())
            )
    return founds


def _code_runs(token: str) -> list[tuple[int, int]]:
    runs = []
    run_start: int | None = None
    offset = 0
    for part in token.split("-"):
        if _is_word(part):
            if run_start is not None:
                runs.append((run_start, offset - 1))
                run_start = None
        elif run_start is None:
            run_start = offset
        offset += len(part) + 1
    if run_start is not None:
        runs.append((run_start, len(token)))
    return runs


def _is_word(part: str) -> bool:
    # Codes are short or capitals ("NW", "ELD"); "priority" and "Form" are words.
    return part.isalpha() and len(part) > 3 and not part.isupper()


def _quantity(match: re.Match[str]) -> list[_Found]:
    unit = _canonical_unit(match.group("unit"))
    value = _decimal_text(_number_value(match.group("number")))
    start = match.start("number")
    if unit in _TEMPERATURES and match.group("sign"):
        value, start = f"-{value}", match.start("sign")
    return [_Found(start, match.end(), ClaimKind.QUANTITY, value, unit)]


def _article_unit(match: re.Match[str]) -> list[_Found]:
    unit = _canonical_unit(match.group("unit"))
    return [_Found(*match.span(), ClaimKind.QUANTITY, "1", unit, role=_Role.IMPLIED)]


def _bare_number(match: re.Match[str]) -> list[_Found]:
    written = match.group("number")
    number = _number_value(written)
    in_words = not written[0].isdigit()
    role = _Role.SMALL_WORD if in_words and number <= _WORD_SMALL_MAX else _Role.CLAIM
    sign_start = match.start("sign") if match.group("sign") else None
    start = match.start("number")
    value = _decimal_text(number)
    return [_Found(start, match.end(), ClaimKind.QUANTITY, value, role=role, sign_start=sign_start)]


_PASSES: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], list[_Found]]], ...] = (
    (_PHONE, _phone),
    (_EXTENSION, _extension),
    (_ISO_DATE, _iso_date),
    (_US_DATE, _us_date),
    (_MONTH_DAY_DATE, _named_month_date),
    (_DAY_MONTH_DATE, _named_month_date),
    (_CLOCK_TIME, _clock_time),
    (_HOUR_TIME, _hour_time),
    (_NAMED_TIME, _named_time),
    (_MONEY_BEFORE, _money),
    (_MONEY_AFTER, _money),
    (_PERCENT, _percent),
    # Codes before numbers, so that "ELD-2" is not read as 2; after times and money, whose
    # "7pm" and "$1.5k" would look like codes.
    (_CODE_TOKEN, _codes),
    (_QUANTITY, _quantity),
    (_ARTICLE_UNIT, _article_unit),
    (_BARE_NUMBER, _bare_number),
)


def _join_ranges(founds: list[_Found], plain: str) -> list[_Found]:
    """Give the first number of a range what the last one carries.

    "24,001 to 38,000 lb", "between 10 and 15 minutes", "10-20%", "7-9 pm": the unit (or
    meridiem) written once is every number's. Read from the end, so "10 to 15 to 20 min"
    passes it along.
    """
    joined = list(founds)
    for index in range(len(joined) - 2, -1, -1):
        first, second = joined[index], joined[index + 1]
        if not _takes_from_next(first) or not _RANGE_GAP.fullmatch(plain[first.end : second.start]):
            continue
        if second.kind is ClaimKind.TIME_OF_DAY and second.meridiem:
            joined[index] = _time_range_start(first, second) or first
        elif first.kind is ClaimKind.QUANTITY and _carries_unit(second):
            joined[index] = _range_start(first, second)
    return joined


def _takes_from_next(found: _Found) -> bool:
    if found.kind is ClaimKind.QUANTITY:
        return found.unit is None
    return found.kind is ClaimKind.TIME_OF_DAY and found.meridiem is None


def _carries_unit(found: _Found) -> bool:
    if found.role is not _Role.CLAIM:
        return False  # "10 or a day" is no range
    if found.kind is ClaimKind.QUANTITY:
        return found.unit is not None
    return found.kind in (ClaimKind.AMOUNT, ClaimKind.PERCENT)


def _range_start(first: _Found, second: _Found) -> _Found:
    value, start = first.value, first.start
    if second.unit in _TEMPERATURES and first.sign_start is not None:
        value, start = f"-{value}", first.sign_start
    return replace(
        first,
        start=start,
        kind=second.kind,
        value=value,
        unit=second.unit,
        role=_Role.CLAIM,
        text_end=second.end,
        joins_next=True,
    )


def _time_range_start(first: _Found, second: _Found) -> _Found | None:
    """ "7" of "7-9 pm" as 19:00; "11" of "11 to 1 pm" as 11:00 (a range runs forward)."""
    if first.kind is ClaimKind.QUANTITY and not first.value.isdigit():
        return None
    hour, _, minute = first.value.partition(":")
    if not 1 <= int(hour) <= 12:
        return None
    meridiem = second.meridiem
    if int(hour) % 12 > int(second.value[:2]) % 12:
        meridiem = "am" if meridiem == "pm" else "pm"
    clock = _clock(int(hour), int(minute or 0), meridiem)
    return replace(
        first,
        kind=ClaimKind.TIME_OF_DAY,
        value=clock,
        role=_Role.CLAIM,
        meridiem=meridiem,
        text_end=second.end,
        joins_next=True,
    )


def _canonical_unit(written: str) -> str:
    for unit, matcher in _UNIT_MATCHERS:
        if matcher.fullmatch(written):
            return unit
    raise ValueError(f"not a unit: {written!r}")


def _number_value(written: str) -> Decimal:
    lowered = written.casefold()
    if not lowered[0].isdigit():
        return Decimal(_word_number_value(lowered))
    if lowered.endswith("k"):
        return Decimal(lowered[:-1].replace(",", "")) * 1000
    return Decimal(lowered.replace(",", ""))


def _word_number_value(words: str) -> int:
    total = current = 0
    for word in re.split(r"[\s-]+", words):
        if word == "hundred":
            current *= 100
        elif word == "thousand":
            total += current * 1000
            current = 0
        elif word != "and":
            current += _WORD_VALUES[word]
    return total + current


def _decimal_text(number: Decimal) -> str:
    """ "30000", "1.5": no exponent, no trailing zeros."""
    text = format(number.normalize(), "f")
    return "0" if text == "-0" else text


def _key(kind: ClaimKind, value: str, unit: str | None) -> tuple[object, ...]:
    if unit in _MINUTES_PER_UNIT:
        return ("duration", Fraction(value) * _MINUTES_PER_UNIT[unit])
    return (kind, value, _UNIT_FAMILIES.get(unit, unit) if unit else None)


def _same_phone(one: str, other: str) -> bool:
    # "555-0142" is "1-800-555-0142" written without its area code.
    return one[-7:] == other[-7:] and (one.endswith(other) or other.endswith(one))


def _rendering(found: _Found) -> str:
    """How `normalise_for_matching` writes a claim."""
    match found.kind:
        case ClaimKind.QUANTITY:
            return found.value if found.unit is None else f"{found.value} {_UNIT_WORDS[found.unit]}"
        case ClaimKind.AMOUNT:
            return f"${found.value}"
        case ClaimKind.PERCENT:
            return f"{found.value}%"
        case ClaimKind.EXTENSION:
            return f"ext {found.value}"
        case ClaimKind.DATE:
            return found.value.removeprefix("--")
        case _:
            return found.value
