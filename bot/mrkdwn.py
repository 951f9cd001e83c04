"""Markdown as a language model writes it, turned into Slack mrkdwn.

Slack's mrkdwn is not Markdown: bold is `*x*`, italic `_x_`, strike `~x~`, links are
`<url|text>`, and there are no headings, tables or nested lists. `&`, `<` and `>` are control
characters: `<!channel>` pings a whole channel and `<https://x|y>` is a link with any label.
Model text is untrusted, so every `&`, `<` and `>` it writes is escaped, inside code too
(Slack parses `<...>` between backticks as well); the only raw `<` and `>` in the output are
the links and quote markers made here.

The conversion works line by line and never raises: what it does not recognise stays as
(escaped) text.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass
from typing import Literal

# Placeholders stand for finished pieces (code, links, URLs) while emphasis is converted,
# sentinels for emphasis markers until the style decides what they become. Input is cleaned
# of these control characters first, so they cannot be forged.
_PLACEHOLDER = re.compile("\x00(\\d+)\x00")
_BOLD, _ITALIC, _STRIKE = "\x01", "\x02", "\x03"
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

_FENCE_OPEN = re.compile(r"^( {0,3})(`{3,}|~{3,})(.*)$")
_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_THEMATIC_BREAK = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_QUOTE = re.compile(r"^ {0,3}(?:>[ \t]?)+(.*)$")
_LIST_ITEM = re.compile(r"^([ \t]*)([-*+]|\d{1,9}[.)])(?:[ \t]+(.*))?$")
_TABLE_DELIMITER = re.compile(r"^\s*\|?\s*:?-+:?\s*(?:\|\s*:?-+:?\s*)*\|?\s*$")
_CELL_SEPARATOR = re.compile(r"(?<!\\)\|")
_BACKTICKS = re.compile(r"`+")

_SAFE_URL = re.compile(r"(?:https?://[^\s/?#<>|]+|mailto:[^\s<>|]+)", re.IGNORECASE)
_AUTOLINK = re.compile(r"<((?:https?://|mailto:)[^\s<>]*)>", re.IGNORECASE)
_BARE_URL = re.compile(r"https?://[^\s<>]+", re.IGNORECASE)
_LINK_DESTINATION = re.compile(r"[^\s()]*(?:\([^\s()]*\)[^\s()]*)*")
_LINK_TITLE = re.compile(r"\"[^\"]*\"|'[^']*'|\([^()]*\)")
_ASCII_PUNCTUATION = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")

# Emphasis spans are bounded so a long line full of unmatched markers stays linear.
_EMPHASIS = (
    (re.compile(r"\*\*\*(?=[^\s*])(.{1,1000}?)(?<=[^\s*])\*\*\*"), _BOLD + _ITALIC),
    (re.compile(r"(?<![\w_])___(?=[^\s_])(.{1,1000}?)(?<=[^\s_])___(?![\w_])"), _BOLD + _ITALIC),
    (re.compile(r"\*\*(?=[^\s*])(.{1,1000}?)(?<=[^\s*])\*\*"), _BOLD),
    (re.compile(r"(?<![\w_])__(?=[^\s_])(.{1,1000}?)(?<=[^\s_])__(?![\w_])"), _BOLD),
    (re.compile(r"(?<![\w*])\*(?=[^\s*])(.{1,1000}?)(?<=[^\s*])\*(?![\w*])"), _ITALIC),
    (re.compile(r"(?<![\w_])_(?=[^\s_])(.{1,1000}?)(?<=[^\s_])_(?![\w_])"), _ITALIC),
    (re.compile(r"~~(?=[^\s~])(.{1,1000}?)(?<=[^\s~])~~"), _STRIKE),
)
_MARKERS = {
    "mrkdwn": {_BOLD: "*", _ITALIC: "_", _STRIKE: "~"},
    "heading": {_BOLD: "", _ITALIC: "_", _STRIKE: "~"},  # the whole line is bold already
    "plain": {_BOLD: "", _ITALIC: "", _STRIKE: ""},
}

_Style = Literal["mrkdwn", "heading", "plain"]
_Alignment = Literal["left", "right", "center"]

_INDENT = "    "
_HORIZONTAL_RULE = "──────────"


def escape(text: str) -> str:
    """Escape Slack's three control characters, so the text shows as written and pings no one."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def link(url: str, label: str = "") -> str:
    """A Slack link to a web or mail address showing `label`; only the escaped label otherwise."""
    url = url.strip()
    label = " ".join(label.split())  # a newline would end the link
    if not _SAFE_URL.match(url):
        return escape(label or url)
    # `|` and `>` would end Slack's link syntax early; percent-encoding keeps the address.
    target = url.replace("&", "&amp;").replace("<", "%3C").replace(">", "%3E").replace("|", "%7C")
    target = re.sub(r"\s", "%20", target)
    return f"<{target}|{escape(label)}>" if label else f"<{target}>"


def to_mrkdwn(markdown: str) -> str:
    """Convert Markdown to Slack mrkdwn; any input gives a result, never an exception."""
    lines = _CONTROL.sub("", markdown.replace("\r\n", "\n").replace("\r", "\n")).split("\n")
    out: list[str] = []  # one element per output line, or one per code block
    list_indents: list[int] = []
    index = 0
    while index < len(lines):
        fence = _fence_opening(lines[index])
        if fence is not None:
            index, code = _fenced_code(lines, index, fence)
            out.append(code)
        elif _is_table_start(lines, index):
            index, table = _table(lines, index)
            out.append(table)
            list_indents.clear()
        else:
            out.append(_block_line(lines[index], list_indents))
            index += 1
    return _tidy(out)


@dataclass(frozen=True)
class MarkdownTable:
    """A GFM table found by `split_tables`: the cells as plain text, the header first."""

    rows: tuple[tuple[str, ...], ...]  # every row as long as the header
    alignments: tuple[_Alignment, ...]  # one per column, from the delimiter row
    markdown: str  # the table as written, for when it must show as text


def split_tables(markdown: str) -> list[str | MarkdownTable]:
    """The Markdown in order: the lines between tables as Markdown, each table parsed.

    Tables are found as `to_mrkdwn` finds them, so a table inside a code block stays code.
    Joined by newlines, the text parts and the tables' `markdown` are the input again (with
    line ends made `\\n` and control characters dropped), blank lines between tables too.
    """
    lines = _CONTROL.sub("", markdown.replace("\r\n", "\n").replace("\r", "\n")).split("\n")
    parts: list[str | MarkdownTable] = []
    text: list[str] = []
    index = 0
    while index < len(lines):
        fence = _fence_opening(lines[index])
        if fence is not None:
            end, _ = _fenced_code(lines, index, fence)
            text += lines[index:end]
            index = end
        elif _is_table_start(lines, index):
            end, cells, alignments = _table_cells(lines, index)
            if text:
                parts.append("\n".join(text))
            text = []
            parts.append(
                MarkdownTable(
                    rows=tuple(tuple(row) for row in cells),
                    alignments=tuple(alignments),
                    markdown="\n".join(lines[index:end]),
                )
            )
            index = end
        else:
            text.append(lines[index])
            index += 1
    if text:
        parts.append("\n".join(text))
    return parts


def _tidy(elements: list[str]) -> str:
    # Runs of blank lines shrink to one; Slack shows every blank line a model writes.
    kept: list[str] = []
    for element in elements:
        if element or (kept and kept[-1]):
            kept.append(element)
    while kept and not kept[-1]:
        kept.pop()
    return "\n".join(kept)


def _block_line(line: str, list_indents: list[int]) -> str:
    if not line.strip():
        return ""
    if _THEMATIC_BREAK.match(line):
        list_indents.clear()
        return _HORIZONTAL_RULE
    heading = _HEADING.match(line)
    if heading:
        list_indents.clear()
        text = _inline(heading.group(2) or "", "heading")
        return f"*{text}*" if text else ""
    quote = _QUOTE.match(line)
    if quote:
        list_indents.clear()
        text = _inline(quote.group(1).strip(), "mrkdwn")
        return f"> {text}" if text else ""
    item = _LIST_ITEM.match(line)
    if item:
        level = _list_level(len(item.group(1).expandtabs(4)), list_indents)
        marker = item.group(2)
        if marker in "-*+":
            marker = "•" if level == 0 else "◦"
        text = _inline((item.group(3) or "").strip(), "mrkdwn")
        return f"{_INDENT * level}{marker} {text}".rstrip()
    if list_indents and line[0] in " \t":
        # A continuation of the list item above keeps that item's indentation.
        return f"{_INDENT * len(list_indents)}{_inline(line.strip(), 'mrkdwn')}"
    list_indents.clear()
    return _inline(line.strip(), "mrkdwn")


def _list_level(indent: int, list_indents: list[int]) -> int:
    # Models indent nested items by 2, 3 or 4 spaces; a stack of the indents seen so far
    # turns any of these into levels.
    while list_indents and list_indents[-1] > indent:
        list_indents.pop()
    if not list_indents or list_indents[-1] < indent:
        list_indents.append(indent)
    return len(list_indents) - 1


def _fence_opening(line: str) -> tuple[int, str] | None:
    match = _FENCE_OPEN.match(line)
    if match is None:
        return None
    indent, fence, info = match.groups()
    if fence[0] == "`" and "`" in info:
        return None  # "```x```" on one line is inline code, not a fence
    return len(indent), fence


def _fenced_code(lines: list[str], start: int, fence: tuple[int, str]) -> tuple[int, str]:
    indent, marker = fence
    closing = re.compile(rf"^ {{0,3}}{re.escape(marker[0])}{{{len(marker)},}}[ \t]*$")
    code: list[str] = []
    index = start + 1
    while index < len(lines) and not closing.match(lines[index]):
        line = lines[index]
        # The fence's own indentation (inside a list item, say) is not part of the code.
        strip = min(indent, len(line) - len(line.lstrip(" ")))
        code.append(escape(line[strip:]))
        index += 1
    # Slack shows a language name after ``` as code, so it is dropped; an unclosed fence
    # (a stream cut mid-block) runs to the end, as in CommonMark.
    return index + 1, "\n".join(["```", *code, "```"])


def _is_table_start(lines: list[str], index: int) -> bool:
    if index + 1 >= len(lines) or "|" not in lines[index] or "|" not in lines[index + 1]:
        return False
    if not _TABLE_DELIMITER.match(lines[index + 1]):
        return False
    return len(_cells(lines[index])) == len(_cells(lines[index + 1]))


def _cells(line: str) -> list[str]:
    row = line.strip()
    if row.startswith("|"):
        row = row[1:]
    if row.endswith("|") and not row.endswith("\\|"):
        row = row[:-1]
    return [cell.strip().replace("\\|", "|") for cell in _CELL_SEPARATOR.split(row)]


def _table(lines: list[str], start: int) -> tuple[int, str]:
    index, plain, alignments = _table_cells(lines, start)
    widths = [max(3, *(_display_width(row[col]) for row in plain)) for col in range(len(plain[0]))]
    rendered = [_table_row(plain[0], widths, alignments)]
    rendered.append("-+-".join("-" * width for width in widths))
    rendered += [_table_row(row, widths, alignments) for row in plain[1:]]
    return index, "\n".join(["```", *(escape(row) for row in rendered), "```"])


def _table_cells(lines: list[str], start: int) -> tuple[int, list[list[str]], list[_Alignment]]:
    """The table at `start`: the index after it, its cells as plain text, its alignments."""
    header = _cells(lines[start])
    alignments = [_alignment(cell) for cell in _cells(lines[start + 1])]
    rows = [header]
    index = start + 2
    while (
        index < len(lines)
        and lines[index].strip()
        and "|" in lines[index]
        and _fence_opening(lines[index]) is None
    ):
        rows.append(_fit_row(_cells(lines[index]), len(header)))
        index += 1
    return index, [[_inline(cell, "plain") for cell in row] for row in rows], alignments


def _fit_row(cells: list[str], columns: int) -> list[str]:
    if len(cells) < columns:
        return cells + [""] * (columns - len(cells))
    # GFM drops extra cells; joining them into the last column loses no text.
    return [*cells[: columns - 1], " | ".join(cells[columns - 1 :])]


def _alignment(delimiter: str) -> _Alignment:
    if delimiter.startswith(":") and delimiter.endswith(":") and len(delimiter) > 1:
        return "center"
    return "right" if delimiter.endswith(":") else "left"


def _table_row(cells: list[str], widths: list[int], alignments: list[_Alignment]) -> str:
    padded = []
    for cell, width, alignment in zip(cells, widths, alignments, strict=True):
        space = width - _display_width(cell)
        if alignment == "right":
            padded.append(" " * space + cell)
        elif alignment == "center":
            padded.append(" " * (space // 2) + cell + " " * (space - space // 2))
        else:
            padded.append(cell + " " * space)
    return " | ".join(padded).rstrip()


def _display_width(text: str) -> int:
    # Wide (CJK, most emoji) characters take two columns in a monospace block.
    width = 0
    for char in text:
        if unicodedata.combining(char):
            continue
        width += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return width


def _inline(text: str, style: _Style) -> str:
    """Convert one line's inline Markdown; `plain` gives unescaped text without formatting."""
    buffer: list[str] = []
    pieces: list[str] = []  # finished output, referenced from `buffer` by placeholders
    brackets = _matching_brackets(text)
    backticks = _backtick_runs(text)

    def keep(rendered: str) -> None:
        buffer.append(f"\x00{len(pieces)}\x00")
        pieces.append(rendered)

    index = 0
    while index < len(text):
        char = text[index]
        if char == "`":
            run = 1
            while text.startswith("`", index + run):
                run += 1
            close = _closing_backticks(backticks, run, index + run)
            if close is None:
                buffer.append(text[index : index + run])
            else:
                code = text[index + run : close]
                keep(code if style == "plain" else f"`{escape(code)}`")
                run = close + run - index
            index += run
            continue
        if char == "\\" and index + 1 < len(text) and text[index + 1] in _ASCII_PUNCTUATION:
            escaped = text[index + 1]
            keep(escaped if style == "plain" else escape(escaped))
            index += 2
            continue
        image = char == "!" and text.startswith("[", index + 1)
        if char == "[" or image:
            parsed = _markdown_link(text, index + image, brackets)
            if parsed is not None:
                label, url, index = parsed
                keep(_render_link(label, url, style))
                continue
        if char == "<":
            autolink = _AUTOLINK.match(text, index)
            if autolink:
                url = autolink.group(1)
                keep(url if style == "plain" else link(url))
                index = autolink.end()
                continue
        if char in "hH" and (index == 0 or not text[index - 1].isalnum()):
            bare = _BARE_URL.match(text, index)
            if bare:
                url = _trim_url(bare.group())
                # A bare URL stays as written; Slack links it, and no emphasis touches it.
                keep(url if style == "plain" else escape(url))
                index += len(url)
                continue
        buffer.append(char)
        index += 1

    converted = "".join(buffer)
    if style != "plain":
        converted = escape(converted)
    for pattern, marker in _EMPHASIS:
        converted = pattern.sub(marker + r"\1" + marker[::-1], converted)
    for sentinel, marker in _MARKERS[style].items():
        converted = converted.replace(sentinel, marker)
    return _PLACEHOLDER.sub(lambda m: pieces[int(m.group(1))], converted)


def _matching_brackets(text: str) -> dict[int, int]:
    # One pass pairs every `[` with its `]`, so trying a link at each `[` stays linear.
    pairs: dict[int, int] = {}
    stack: list[int] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 2
            continue
        if char == "[":
            stack.append(index)
        elif char == "]" and stack:
            pairs[stack.pop()] = index
        index += 1
    return pairs


def _backtick_runs(text: str) -> dict[int, list[int]]:
    runs: dict[int, list[int]] = defaultdict(list)
    for match in _BACKTICKS.finditer(text):
        runs[len(match.group())].append(match.start())
    return runs


def _closing_backticks(runs: dict[int, list[int]], length: int, start: int) -> int | None:
    # A code span ends at the next run of exactly as many backticks.
    starts = runs.get(length, [])
    position = bisect.bisect_left(starts, start)
    return starts[position] if position < len(starts) else None


def _markdown_link(text: str, start: int, brackets: dict[int, int]) -> tuple[str, str, int] | None:
    """`[label](url "title")` at `start`: the label, the url and the index after it."""
    close = brackets.get(start)
    if close is None or not text.startswith("(", close + 1):
        return None
    index = close + 2
    while index < len(text) and text[index] in " \t":
        index += 1
    if text.startswith("<", index):
        end = text.find(">", index)
        if end < 0:
            return None
        url, index = text[index + 1 : end], end + 1
    else:
        destination = _LINK_DESTINATION.match(text, index, min(len(text), index + 2048))
        if destination is None:
            return None
        url, index = destination.group(), destination.end()
    while index < len(text) and text[index] in " \t":
        index += 1
    title = _LINK_TITLE.match(text, index)
    if title:
        index = title.end()
        while index < len(text) and text[index] in " \t":
            index += 1
    if not text.startswith(")", index):
        return None
    return text[start + 1 : close], url, index + 1


def _render_link(label: str, url: str, style: _Style) -> str:
    text = _inline(label, "plain").strip()
    if style == "plain":
        return text or url
    if _SAFE_URL.match(url.strip()):
        return link(url, text)
    # Other schemes (javascript:, relative paths) must not become links; the address stays
    # readable so nothing the model wrote is lost.
    shown = _inline(label, style)
    return f"{shown} ({escape(url)})" if url else shown


def _trim_url(url: str) -> str:
    # As GFM does: trailing punctuation and an unbalanced `)` belong to the sentence.
    while url:
        last = url[-1]
        if last in ".,:;!?'\"*_~" or (last == ")" and url.count(")") > url.count("(")):
            url = url[:-1]
        else:
            break
    return url
