"""Personal data out of training rows: emails, phone numbers, payment cards and SSNs.

Policy content stays: weights (`30,000 lb`), dates, times, money, load and ticket numbers,
extensions (`ext. 4400`), the company's published toll-free lines (`1-800-555-0142`) and
desk addresses (`claims@…`, `dispatch@…`): they name a role, not a person, and a model
trained on `[email]` where the policy has an address would learn to write `[email]`.
Only numbers with a phone's shape and separators count as phones: a bare run of digits in
freight talk is far more often a load, PO or BOL number than someone's phone.
"""

from __future__ import annotations

import re

EMAIL = "[email]"
PHONE = "[phone]"
CARD = "[card]"
SSN = "[ssn]"

# Mailbox names of desks and teams; `jane.doe@` or `jdoe42@` is a person and is redacted.
ROLE_MAILBOXES = frozenset(
    {
        "billing", "claims", "communications", "customs", "dispatch", "help", "hr", "info",
        "maintenance", "noreply", "operations", "opsmanager", "permits", "reefer", "safety",
        "service", "support",
    }
)  # fmt: skip
# Area codes of North American toll-free numbers: published business lines, not people.
TOLL_FREE_AREA_CODES = frozenset({"800", "833", "844", "855", "866", "877", "888"})

# Each pattern starts only where a run of its characters starts, so a long run of
# non-matching text is scanned once, not once per position.
_EMAIL = re.compile(
    r"(?<![\w.%+-])[\w.%+-]++@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}\b",
)
_PHONE = re.compile(
    r"""
    (?<![\w+])
    (?:
        # North American: 555-010-2233, (555) 010-2233, 555.010.2233, +1 555 010 2233
        (?P<nanp>
            (?:\+?1[\ .-]?)?
            (?:\((?P<paren_area>\d{3})\)[\ .-]?|(?P<area>\d{3})[\ .-])
            \d{3}[\ .-]\d{4}
        )
        |
        # International: +44 20 7946 0958, +33 (0)1 23 45 67 89
        (?P<international>
            \+\d{1,3}[\ .-]?(?:\(\d{1,4}\)[\ .-]?)?(?:\d[\ .-]?){5,13}\d
        )
    )
    (?![\w])
    """,
    re.VERBOSE,
)
_SSN = re.compile(r"(?<![\w-])\d{3}-\d{2}-\d{4}(?![\w]|-\d)")
# 13 to 19 digits as cards are written: in one run, in groups of four (the last one
# shorter), or 4-6-5 / 4-6-4 (Amex, Diners); never part of a longer number or a decimal.
_CARD = re.compile(
    r"""
    (?<![\w])(?<!\d[\ .,-])
    (?:
        \d{13,19}
        | \d{4}(?P<sep>[\ -])\d{4}(?P=sep)\d{4}(?P=sep)\d{1,4}(?:(?P=sep)\d{1,3})?
        | \d{4}(?P<amex_sep>[\ -])\d{6}(?P=amex_sep)\d{4,5}
    )
    (?![\ .,-]?\d)(?!\w)
    """,
    re.VERBOSE,
)
_DIGIT = re.compile(r"\d")


def redact(text: str) -> tuple[str, int]:
    """The text with personal data replaced by placeholders, and how many were replaced.

    Each replacement removes digits or an `@` and adds none, so a replacement can only
    expose a new match next to it (a card that was glued to a phone); repeating until
    nothing changes ends, and makes `redact` idempotent.
    """
    total = 0
    while True:
        text, replaced = _redact_once(text)
        if not replaced:
            return text, total
        total += replaced


def _redact_once(text: str) -> tuple[str, int]:
    # Emails first: their local part may hold digits that look like the other kinds.
    emails = 0

    def email(match: re.Match[str]) -> str:
        nonlocal emails
        if match.group(0).split("@", 1)[0].lower() in ROLE_MAILBOXES:
            return match.group(0)
        emails += 1
        return EMAIL

    text = _EMAIL.sub(email, text)
    phones = 0

    def phone(match: re.Match[str]) -> str:
        nonlocal phones
        if _is_phone(match):
            phones += 1
            return PHONE
        return match.group(0)

    text = _PHONE.sub(phone, text)
    text, ssns = _SSN.subn(SSN, text)
    cards = 0

    def card(match: re.Match[str]) -> str:
        nonlocal cards
        if _luhn_valid(_digits(match.group(0))):
            cards += 1
            return CARD
        return match.group(0)

    text = _CARD.sub(card, text)
    return text, emails + phones + ssns + cards


def _is_phone(match: re.Match[str]) -> bool:
    digits = _digits(match.group(0))
    if match.group("nanp"):
        area = match.group("paren_area") or match.group("area")
        return area not in TOLL_FREE_AREA_CODES
    # E.164 allows at most 15 digits; +1 numbers are North American, toll-free ones kept.
    if not 8 <= len(digits) <= 15:
        return False
    return not (len(digits) == 11 and digits[0] == "1" and digits[1:4] in TOLL_FREE_AREA_CODES)


def _digits(text: str) -> str:
    return "".join(_DIGIT.findall(text))


def _luhn_valid(digits: str) -> bool:
    total = 0
    for position, digit in enumerate(reversed(digits)):
        value = int(digit)
        if position % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0
