"""Model Markdown reads right in Slack, and model text can never ping anyone or fake a link."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.mrkdwn import escape, link, to_mrkdwn

# What a generated link looks like; every other `<` in the output must be escaped.
SLACK_LINK = re.compile(r"<(?:https?://|mailto:)[^\s<>|]*(?:\|[^<>\n]*)?>", re.IGNORECASE)

markdown_fragments = st.sampled_from(
    [
        "**",
        "__",
        "*",
        "_",
        "~~",
        "`",
        "```",
        "```python\n",
        "[",
        "]",
        "(",
        ")",
        "](https://example.com/a?b=1&c=2)",
        "](javascript:alert(1))",
        "<",
        ">",
        "&",
        "|",
        "| a | b |\n|---|:-:|\n",
        "#",
        "# ",
        "- ",
        "  - ",
        "1. ",
        "> ",
        "\\",
        "!",
        "<!channel>",
        "<@U123>",
        "<https://x.com|y>",
        "https://example.com/x_y_",
        "[1]",
        "\n",
        "\n\n",
        "\t",
        " ",
        "word",
        "é",
        "漢字",
        "👍",
        "\x00",
        "\r\n",
    ]
)
markdownish_text = st.one_of(st.text(), st.lists(markdown_fragments, max_size=60).map("".join))


def test_bold_italic_and_strikethrough_become_slack_markers() -> None:
    converted = to_mrkdwn("**bold**, __bold__, *italic*, _italic_, ~~gone~~ and ***both***")

    assert converted == "*bold*, *bold*, _italic_, _italic_, ~gone~ and *_both_*"


def test_markers_that_are_not_emphasis_are_left_alone() -> None:
    text = "snake_case_name, 5 * 3 * 2 and ** spaced **"

    assert to_mrkdwn(text) == text


def test_web_and_mail_links_become_slack_links_with_escaped_ampersands() -> None:
    converted = to_mrkdwn(
        "See [the policy](https://wiki.example.com/p?a=1&b=2) or [mail us](mailto:ops@example.com)."
    )

    assert converted == (
        "See <https://wiki.example.com/p?a=1&amp;b=2|the policy> "
        "or <mailto:ops@example.com|mail us>."
    )


def test_link_label_and_address_cannot_break_out_of_the_link() -> None:
    converted = to_mrkdwn("[a > b **c**](https://example.com/x|y)")

    assert converted == "<https://example.com/x%7Cy|a &gt; b c>"


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        ("[click](javascript:alert(1))", "click (javascript:alert(1))"),
        ("[the form](/forms/claim)", "the form (/forms/claim)"),
        ("[call us](tel:+15550100)", "call us (tel:+15550100)"),
    ],
)
def test_other_link_targets_stay_plain_text(markdown: str, expected: str) -> None:
    assert to_mrkdwn(markdown) == expected


def test_bare_urls_stay_as_written_even_with_underscores() -> None:
    text = "Open https://wiki.example.com/a_b_c_/d_ today."

    assert to_mrkdwn(text) == text


def test_headings_become_bold_lines() -> None:
    converted = to_mrkdwn("# Reefer alarms\n### Step **two** ###\ntext")

    assert converted == "*Reefer alarms*\n*Step two*\ntext"


def test_bullets_nest_and_ordered_lists_keep_their_numbers() -> None:
    markdown = (
        "- Call the shift lead\n"
        "  - ext. 4411\n"
        "    - after hours: *pager*\n"
        "* Log the ticket\n"
        "1. First\n"
        "2) Second"
    )

    assert to_mrkdwn(markdown) == (
        "• Call the shift lead\n"
        "    ◦ ext. 4411\n"
        "        ◦ after hours: _pager_\n"
        "• Log the ticket\n"
        "1. First\n"
        "2) Second"
    )


def test_tables_become_padded_monospace_blocks_of_plain_text() -> None:
    markdown = (
        "| Weight | **Approver** | Ext |\n"
        "|:--|:-:|--:|\n"
        "| up to 26,000 lb | [dispatcher](https://x.example.com) | 10 |\n"
        "| over 40,000 lb | `ops manager` | 4411 |"
    )

    assert to_mrkdwn(markdown) == (
        "```\n"
        "Weight          |  Approver   |  Ext\n"
        "----------------+-------------+-----\n"
        "up to 26,000 lb | dispatcher  |   10\n"
        "over 40,000 lb  | ops manager | 4411\n"
        "```"
    )


def test_table_cells_are_escaped_and_a_short_row_is_padded() -> None:
    converted = to_mrkdwn("| a | b |\n|---|---|\n| <!here> |")

    assert "&lt;!here&gt;" in converted
    assert "<!here>" not in converted
    assert converted.splitlines()[3] == "&lt;!here&gt; |"


def test_code_is_copied_without_conversion_and_the_language_tag_dropped() -> None:
    markdown = "Run `**not bold** _x_` then:\n```bash\necho **raw** _x_ [1](y)\n  indented\n```"

    assert to_mrkdwn(markdown) == (
        "Run `**not bold** _x_` then:\n```\necho **raw** _x_ [1](y)\n  indented\n```"
    )


def test_slack_control_characters_are_escaped_inside_code_too() -> None:
    # Slack reads <...> between backticks as a mention or link, so escaping is what keeps
    # `a < b` visible and a code span from pinging the channel.
    converted = to_mrkdwn("`<!channel>` and\n```\nif a < b && c > d:\n```")

    assert converted == "`&lt;!channel&gt;` and\n```\nif a &lt; b &amp;&amp; c &gt; d:\n```"


def test_an_unclosed_code_block_is_closed_at_the_end() -> None:
    assert to_mrkdwn("Partial:\n```\nline one") == "Partial:\n```\nline one\n```"


@pytest.mark.parametrize(
    "markdown",
    [
        "Hey <!channel> look",
        "<!here|here> <!everyone>",
        "<@U123ABC> please",
        "<#C123|general>",
        "<!subteam^S123|oncall>",
        "&lt;!channel&gt;",
    ],
)
def test_mentions_and_slack_syntax_in_model_text_are_escaped(markdown: str) -> None:
    converted = to_mrkdwn(markdown)

    assert "<" not in converted
    assert ">" not in converted
    assert escape(markdown) == converted


def test_citation_markers_stay_exactly_as_written() -> None:
    text = "The shift lead approves [1]. Reefers need a check [2][3], see [4], [5]."

    assert to_mrkdwn(text) == text


def test_quotes_keep_their_marker_and_blank_lines_collapse() -> None:
    converted = to_mrkdwn("\n\n> Quoted **rule**\n\n\n\n\nAfter\n\n")

    assert converted == "> Quoted *rule*\n\nAfter"


def test_link_helper_links_only_web_and_mail_addresses() -> None:
    assert link("https://example.com/a|b", "R&D <policy>") == (
        "<https://example.com/a%7Cb|R&amp;D &lt;policy&gt;>"
    )
    assert link("file:///etc/passwd", "Policy") == "Policy"


@settings(max_examples=300)
@given(markdownish_text)
def test_any_text_converts_and_only_generated_links_use_slack_syntax(markdown: str) -> None:
    converted = to_mrkdwn(markdown)

    without_links = SLACK_LINK.sub("", converted)
    assert "<" not in without_links
    without_quote_markers = re.sub(r"(?m)^> ", "", without_links)
    assert ">" not in without_quote_markers
    assert "&" not in re.sub(r"&(?:amp|lt|gt);", "", converted)
    assert "\x00" not in converted
