"""Personal data leaves training rows; policy content (weights, dates, extensions, the
published toll-free lines) stays exactly as it was."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serving.redaction import redact

PLACEHOLDER = re.compile(r"\[(?:email|phone|card|ssn)\]")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("reach me at jane.doe@example.com", "reach me at [email]"),
        ("Mail JANE_DOE+loads@mail.example.co.uk.", "Mail [email]."),
        ("<mailto:pat@example.com|pat@example.com>", "<mailto:[email]|[email]>"),
        ("call (555) 010-2233 now", "call [phone] now"),
        ("call (555)010-2233", "call [phone]"),
        ("call 555-010-2233.", "call [phone]."),
        ("call 555.010.2233", "call [phone]"),
        ("call 555 010 2233", "call [phone]"),
        ("call 1-555-010-2233", "call [phone]"),
        ("call +1 555 010 2233", "call [phone]"),
        ("call +15550102233", "call [phone]"),
        ("London +44 20 7946 0958, ask for Sam", "London [phone], ask for Sam"),
        ("Paris +33 1 23 45 67 89", "Paris [phone]"),
        ("Berlin +49 (0)30 1234 5678", "Berlin [phone]"),
        ("on-call mobile 614-555-0136,", "on-call mobile [phone],"),
        ("card 4111 1111 1111 1111 expires", "card [card] expires"),
        ("card 4111-1111-1111-1111", "card [card]"),
        ("card 4111111111111111", "card [card]"),
        ("amex 3782 822463 10005", "amex [card]"),
        ("discover 6011 0009 9013 9424", "discover [card]"),
        ("old visa 4222222222222", "old visa [card]"),
        ("ssn 123-45-6789 on file", "ssn [ssn] on file"),
        ("4111 1111 1111 1111 555-010-2233", "[card] [phone]"),
        ("a@b.co,555-010-2233;123-45-6789", "[email],[phone];[ssn]"),
    ],
)
def test_personal_data_is_replaced(text: str, expected: str) -> None:
    redacted, count = redact(text)

    assert redacted == expected
    assert count == len(PLACEHOLDER.findall(expected))


@pytest.mark.parametrize(
    "text",
    [
        "Loads from 26,001 to 40,000 lb need the shift lead on duty.",
        "A 30,000 lb load, a $1,500 claim, $12,500.00 in damage.",
        "Effective 2026-03-01; until 2026-07-01. On 03/01/2026 at 2026-03-01T14:30:00Z.",
        "Weekdays 19:00 to 07:00, a 10-hour break, within 15 minutes, 24/7.",
        "load 4471, ticket #88213, unit 2041, BOL 1234567890, zip 43215",
        "Dispatch desk ext. 4400; shift lead ext. 4411 or 4419.",
        "Safety line 1-800-555-0142, switchboard 1-800-555-0100.",
        "Also (800) 555-0142, 800-555-0142, +1 800 555 0142, 1.888.555.0199, 1-877-555-0163.",
        "Card 4111 1111 1111 1112 fails the Luhn check.",
        "Too long for a card: 4111 1111 1111 1111 1111.",
        "confidence 0.4111111111111111, ts 1732460000.000100",
        "version 3, ISO 9001, highway 401-403, 123-45, 12-345-6789",
        "an @ sign alone, user@localhost, @channel, <@U012AB3CD>",
        "Desks: claims@example.com, Dispatch@northwind.example, permits@example.com.",
        "already clean: [email] [phone] [card] [ssn]",
        "",
    ],
)
def test_policy_content_is_kept(text: str) -> None:
    assert redact(text) == (text, 0)


def test_a_person_at_the_company_domain_is_redacted_but_the_desk_is_not() -> None:
    text = "Mail jane.doe@example.com or jdoe42@example.com, cc claims@example.com."

    assert redact(text) == ("Mail [email] or [email], cc claims@example.com.", 2)


def test_a_policy_table_row_keeps_everything_but_the_mobile() -> None:
    row = "On-call supervisor: ext. 4419, mobile 614-555-0136, 19:00 to 07:00, loads 26,001+ lb"

    assert redact(row) == (
        "On-call supervisor: ext. 4419, mobile [phone], 19:00 to 07:00, loads 26,001+ lb",
        1,
    )


def test_long_inputs_are_scanned_in_linear_time() -> None:
    hostile = [
        "1" * 100_000,
        "1 " * 50_000,
        "a@" * 50_000,
        "a." * 50_000 + "@",
        "+1-" * 30_000,
        "555-010-" * 20_000,
    ]
    started = time.perf_counter()
    for text in hostile:
        redact(text)
    assert time.perf_counter() - started < 5


FRAGMENTS = st.sampled_from(
    [
        "jane.doe@example.com",
        "a@b.co",
        "@",
        ".",
        "-",
        " ",
        "+",
        "(",
        ")",
        ",",
        "(555) 010-2233",
        "555-010-2233",
        "+44 20 7946 0958",
        "1-800-555-0142",
        "4111 1111 1111 1111",
        "4111111111111111",
        "123-45-6789",
        "26,001",
        "2026-03-01",
        "ext. 4400",
        "[phone]",
        "[email]",
    ]
)
TEXT = st.one_of(
    st.text(),
    st.lists(
        st.one_of(FRAGMENTS, st.text(alphabet="0123456789 -.+()@ab", max_size=6)), max_size=12
    ).map("".join),
)


@settings(max_examples=400, deadline=None)
@given(TEXT)
def test_redaction_never_crashes_and_is_idempotent(text: str) -> None:
    redacted, count = redact(text)

    assert redact(redacted) == (redacted, 0)
    # Each replacement leaves exactly one placeholder, and none is ever taken away.
    assert count == len(PLACEHOLDER.findall(redacted)) - len(PLACEHOLDER.findall(text))


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=["Nd"], blacklist_characters="@")))
def test_text_without_digits_or_at_signs_is_untouched(text: str) -> None:
    assert redact(text) == (text, 0)
