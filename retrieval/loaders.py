"""Turn Markdown, plain text, HTML and PDF files into `Document`s that keep their headings.

Every format ends up as headings plus text, so chunking can follow the document's structure
whatever it was written in. A file that cannot be read raises `UnreadableDocumentError`
naming the file and the reason; ingest reports it and goes on with the others. The content
is sniffed before it is parsed: a file that is not what its extension says (a PDF saved as
.md, a web page saved as .pdf, a Word file renamed) is refused with what it looks like.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from enum import Enum
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from pypdf import PdfReader
from pypdf.errors import FileNotDecryptedError

from retrieval.documents import (
    Document,
    Section,
    build_document,
    parse_front_matter,
    split_front_matter,
)
from retrieval.errors import RetrievalError, UnreadableDocumentError

log = logging.getLogger(__name__)

MARKDOWN_SUFFIXES = frozenset({".md", ".markdown"})
TEXT_SUFFIXES = frozenset({".txt"})
HTML_SUFFIXES = frozenset({".html", ".htm"})
PDF_SUFFIXES = frozenset({".pdf"})
SUPPORTED_SUFFIXES = MARKDOWN_SUFFIXES | TEXT_SUFFIXES | HTML_SUFFIXES | PDF_SUFFIXES


def collect_files(paths: Iterable[Path]) -> list[Path]:
    """Files to ingest: named files as given, folders searched recursively for known types.

    Hidden files and folders are left out, as are unknown types inside folders (a README.rst
    or an image next to the policies is not an error). A path that does not exist is.
    """
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(
                candidate
                for candidate in path.rglob("*")
                if candidate.is_file()
                and candidate.suffix.lower() in SUPPORTED_SUFFIXES
                and not _is_hidden(candidate.relative_to(path))
            )
            if not found:
                raise RetrievalError(
                    f"{path}: no policy files in this folder ({_supported_list()})"
                )
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise RetrievalError(f"{path}: no such file or folder")
    return list(dict.fromkeys(files))


def load_document(path: Path) -> Document:
    """Read one file of any supported type; raises `UnreadableDocumentError` with the reason."""
    suffix = path.suffix.lower()
    loader = _LOADERS.get(suffix)
    if loader is None:
        raise UnreadableDocumentError(
            str(path), f"unsupported file type '{suffix or path.name}' ({_supported_list()})"
        )
    try:
        data = path.read_bytes()
    except OSError as error:
        raise UnreadableDocumentError(str(path), f"cannot read it: {error.strerror}") from error
    if not data.strip():
        raise UnreadableDocumentError(str(path), "the file is empty")
    mismatch = content_mismatch(suffix, data)
    if mismatch:
        raise UnreadableDocumentError(str(path), mismatch)
    try:
        return loader(path, data)
    except ValueError as error:
        raise UnreadableDocumentError(str(path), str(error)) from error


class ContentKind(Enum):
    """What a file's first bytes say it is, whatever its name says."""

    PDF = "a PDF"
    ZIP = "a ZIP archive (a Word, Excel or other Office file?)"
    PNG = "a PNG image"
    GIF = "a GIF image"
    JPEG = "a JPEG image"
    UTF16 = "UTF-16 text"
    BINARY = "binary data"
    HTML = "an HTML page"
    TEXT = "plain text"


# File signatures ("magic bytes") of what people save policies as by mistake.
_SIGNATURES = (
    (b"PK\x03\x04", ContentKind.ZIP),
    (b"\x89PNG", ContentKind.PNG),
    (b"GIF8", ContentKind.GIF),
    (b"\xff\xd8\xff", ContentKind.JPEG),
    (b"\xff\xfe", ContentKind.UTF16),
    (b"\xfe\xff", ContentKind.UTF16),
)
_SNIFF_BYTES = 8192
_HTML_START = re.compile(rb"\s*(<!--.*?-->\s*)*<(!doctype\s+html|html|head|body)\b", re.I | re.S)
_EXPECTED = {
    **dict.fromkeys(MARKDOWN_SUFFIXES, "Markdown"),
    **dict.fromkeys(TEXT_SUFFIXES, "plain text"),
    **dict.fromkeys(HTML_SUFFIXES, "HTML"),
    **dict.fromkeys(PDF_SUFFIXES, "a PDF"),
}
_TEXT_KINDS = frozenset({ContentKind.TEXT, ContentKind.HTML})
_ADVICE = {
    ContentKind.PDF: "rename it to .pdf",
    ContentKind.HTML: "rename it to .html",
    ContentKind.TEXT: "rename it to .md or .txt",
    ContentKind.UTF16: "save it as UTF-8 text and ingest it again",
    ContentKind.ZIP: "save or export it as PDF, Markdown or HTML",
}
_DEFAULT_ADVICE = "ingest the policy as PDF, Markdown, HTML or text instead"


def sniff_content(data: bytes) -> ContentKind:
    """What `data` looks like from its first bytes."""
    if data[:1024].lstrip().startswith(b"%PDF-"):
        return ContentKind.PDF
    for signature, kind in _SIGNATURES:
        if data.startswith(signature):
            return kind
    head = data[:_SNIFF_BYTES]
    if b"\x00" in head:
        return ContentKind.BINARY
    if _HTML_START.match(head.removeprefix(b"\xef\xbb\xbf")):
        return ContentKind.HTML
    return ContentKind.TEXT


def content_mismatch(suffix: str, data: bytes) -> str | None:
    """Why a file's content does not fit its extension (and what to do), or None if it does."""
    found = sniff_content(data)
    if suffix in PDF_SUFFIXES:
        # PDF readers accept a little junk before the header.
        fits = found is ContentKind.PDF or b"%PDF-" in data[:1024]
    else:  # text formats; HTML inside Markdown or text is fine, and text saved as .html too
        fits = found in _TEXT_KINDS
    if fits:
        return None
    advice = _ADVICE.get(found, _DEFAULT_ADVICE)
    return f"looks like {found.value}, not {_EXPECTED[suffix]}: {advice}"


def _supported_list() -> str:
    return "supported: " + ", ".join(sorted(SUPPORTED_SUFFIXES))


def _is_hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


class SectionBuilder:
    """Collects headings and text in reading order and cuts them into sections."""

    def __init__(self) -> None:
        self._stack: list[tuple[int, str]] = []
        self._lines: list[str] = []
        self.sections: list[Section] = []

    def heading(self, level: int, text: str) -> None:
        self._flush()
        while self._stack and self._stack[-1][0] >= level:
            self._stack.pop()
        self._stack.append((level, text))

    def line(self, text: str) -> None:
        self._lines.append(text)

    def take_back_line(self) -> str:
        """Remove the last line added, when it turns out to be an underlined heading."""
        return self._lines.pop()

    def finish(self) -> list[Section]:
        self._flush()
        return self.sections

    def _flush(self) -> None:
        text = _tidy_paragraphs("\n".join(self._lines))
        self._lines = []
        if text:
            headings = tuple(heading for _, heading in self._stack)
            self.sections.append(Section(headings=headings, text=text))


def _tidy_paragraphs(text: str) -> str:
    """Trim line ends and keep at most one blank line between paragraphs."""
    lines = [line.rstrip() for line in text.strip("\n").splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


# --- Markdown and plain text -----------------------------------------------------------------

_ATX_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$")
_SETEXT_UNDERLINE = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_THEMATIC_BREAK = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_INLINE_MARKUP = re.compile(r"[*_`]+")


def _load_markdown(path: Path, data: bytes) -> Document:
    raw, body = split_front_matter(_decode_text(data))
    declared = parse_front_matter(raw)
    return build_document(path, declared, markdown_sections(body), fallback_title=None)


def markdown_sections(body: str) -> list[Section]:
    """Sections of Markdown (ATX `#` and underlined headings); plain text policies use the same.

    Lines inside fenced code blocks are text, never headings.
    """
    builder = SectionBuilder()
    fence: str | None = None
    paragraph: list[str] = []  # the current paragraph, to spot an underlined heading
    for line in body.splitlines():
        fence_match = _FENCE.match(line)
        if fence_match:
            marker = fence_match.group(1)[0]
            fence = None if fence == marker else (fence or marker)
        if fence or fence_match:
            builder.line(line)
            continue
        atx = _ATX_HEADING.match(line)
        underline = _SETEXT_UNDERLINE.match(line)
        if atx:
            builder.heading(len(atx.group(1)), _heading_text(atx.group(2)))
            paragraph = []
        elif underline and len(paragraph) == 1:
            # "Title\n=====" is a level 1 heading, "Part\n-----" level 2; the line above was
            # already added as text, so take it back.
            heading = builder.take_back_line()
            builder.heading(1 if underline.group(1)[0] == "=" else 2, _heading_text(heading))
            paragraph = []
        elif _THEMATIC_BREAK.match(line):
            paragraph = []
        else:
            builder.line(line)
            paragraph = [*paragraph, line] if line.strip() else []
    return builder.finish()


def _heading_text(text: str) -> str:
    return " ".join(_INLINE_MARKUP.sub("", text).split())


def _decode_text(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(
            f"not UTF-8 text (byte {error.start}); save it as UTF-8 and ingest it again"
        ) from error


# --- HTML ------------------------------------------------------------------------------------

_HEADING_TAGS = {f"h{level}": level for level in range(1, 7)}
_SKIPPED_TAGS = frozenset({"script", "style", "template", "noscript", "svg", "head"})
_BLOCK_TAGS = frozenset(
    {
        "p", "div", "section", "article", "main", "header", "footer", "aside", "nav",
        "ul", "ol", "dl", "dt", "dd", "table", "blockquote",
        "pre", "figure", "figcaption", "form", "hr", "address", "details", "summary",
    }
)  # fmt: skip
_META_KEYS = frozenset(
    {"doc_id", "title", "version", "effective_from", "effective_to", "audience", "tags", "url"}
)


class _PolicyHTMLParser(HTMLParser):
    """Headings become section boundaries; paragraphs, list items and table rows become lines."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.builder = SectionBuilder()
        self.meta: dict[str, str] = {}
        self.title_parts: list[str] = []
        self._skip_depth = 0
        self._in_title = False
        self._heading: tuple[int, list[str]] | None = None
        self._line: list[str] = []
        self._cells: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "meta":
            self._read_meta(dict(attrs))
        elif tag == "title":
            self._in_title = True
        elif tag in _SKIPPED_TAGS:
            self._skip_depth += 1
        elif tag in _HEADING_TAGS:
            self._end_line()
            self._heading = (_HEADING_TAGS[tag], [])
        elif tag == "tr":
            self._end_line()
            self._cells = []
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "li":
            self._end_line()
            self._line.append("- ")
        elif tag == "br":
            self._end_line()
        elif tag in _BLOCK_TAGS:
            self._end_paragraph()

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in _SKIPPED_TAGS:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag in _HEADING_TAGS and self._heading:
            level, parts = self._heading
            self._heading = None
            text = " ".join("".join(parts).split())
            if text:
                self.builder.heading(level, text)
        elif tag in ("td", "th") and self._cell is not None and self._cells is not None:
            self._cells.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._cells is not None:
            self.builder.line(" | ".join(self._cells))
            self._cells = None
        elif tag == "li":
            self._end_line()
        elif tag in _BLOCK_TAGS:
            self._end_paragraph()

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title_parts.append(data)
        elif self._skip_depth:
            return
        elif self._heading is not None:
            self._heading[1].append(data)
        elif self._cell is not None:
            self._cell.append(data)
        else:
            self._line.append(data)

    def close(self) -> None:
        super().close()
        self._end_line()

    def _read_meta(self, attrs: dict[str, str | None]) -> None:
        name = (attrs.get("name") or "").strip().lower()
        content = attrs.get("content")
        if name in _META_KEYS and content is not None:
            self.meta[name] = content

    def _end_line(self) -> None:
        text = " ".join("".join(self._line).split())
        self._line = []
        if text and text != "-":
            self.builder.line(text)

    def _end_paragraph(self) -> None:
        self._end_line()
        self.builder.line("")


def _load_html(path: Path, data: bytes) -> Document:
    parser = _PolicyHTMLParser()
    parser.feed(_decode_text(data))
    parser.close()
    declared = parse_front_matter(dict(parser.meta))
    title = " ".join("".join(parser.title_parts).split()) or None
    return build_document(path, declared, parser.builder.finish(), fallback_title=title)


# --- PDF -------------------------------------------------------------------------------------

# A line this much larger than the body text, and short, is taken for a heading.
_HEADING_SIZE_RATIO = 1.15
_HEADING_MAX_WORDS = 16
_PDF_INFO_KEYS = (
    "doc_id", "version", "effective_from", "effective_to", "audience", "tags", "url"
)  # fmt: skip


def _load_pdf(path: Path, data: bytes) -> Document:
    try:
        reader = PdfReader(path)
        if reader.is_encrypted:
            reader.decrypt("")
        lines = [line for page in reader.pages for line in _pdf_lines(page)]
        info: Mapping[str, Any] = reader.metadata or {}
    except FileNotDecryptedError as error:
        raise ValueError(
            "the PDF is encrypted; save an unencrypted copy and ingest that"
        ) from error
    except Exception as error:
        # pypdf meets every kind of broken file in the wild and fails in many ways; one bad
        # PDF must be reported and skipped, never end the whole ingest.
        raise ValueError(f"damaged or unsupported PDF ({type(error).__name__}: {error})") from error
    if not any(text.strip() for text, _ in lines):
        raise ValueError("the PDF has no extractable text (a scan? run OCR on it first)")
    raw: dict[str, Any] = {key: info[f"/{key}"] for key in _PDF_INFO_KEYS if f"/{key}" in info}
    if "tags" not in raw and info.get("/Keywords"):
        raw["tags"] = info["/Keywords"]
    declared = parse_front_matter(raw)
    title = str(info.get("/Title") or "").strip() or None
    return build_document(path, declared, pdf_sections(lines), fallback_title=title)


def _pdf_lines(page: Any) -> list[tuple[str, float]]:
    """The page's text lines, each with the font size most of its characters are set in."""
    lines: list[tuple[str, float]] = []
    parts: list[str] = []
    sizes: Counter[float] = Counter()

    def end_line() -> None:
        text = " ".join("".join(parts).split())
        size = sizes.most_common(1)[0][0] if sizes else 0.0
        lines.append((text, size))
        parts.clear()
        sizes.clear()

    def visit(text: str, cm: list[float], tm: list[float], font: Any, font_size: float) -> None:
        # The rendered size is the font size scaled by the text and graphics matrices.
        size = round(abs(font_size * math.hypot(tm[2], tm[3]) * math.hypot(cm[2], cm[3])), 1)
        pieces = text.split("\n")
        for index, piece in enumerate(pieces):
            if piece.strip():
                parts.append(piece)
                sizes[size] += len(piece.strip())
            elif piece:
                parts.append(piece)
            if index < len(pieces) - 1:
                end_line()

    page.extract_text(visitor_text=visit)
    if parts:
        end_line()
    return lines


def pdf_sections(lines: list[tuple[str, float]]) -> list[Section]:
    """Sections of a PDF: lines set clearly larger than the body text are headings.

    The largest heading size is level 1, the next level 2 and so on; wrapped body lines
    are joined into paragraphs. A PDF without larger lines is one section.
    """
    weight: Counter[float] = Counter()
    for text, size in lines:
        weight[size] += len(text)
    body_size = weight.most_common(1)[0][0]
    heading_sizes = sorted(
        {
            size
            for text, size in lines
            if size > body_size * _HEADING_SIZE_RATIO
            and 0 < len(text.split()) <= _HEADING_MAX_WORDS
        },
        reverse=True,
    )
    level_of = {size: index + 1 for index, size in enumerate(heading_sizes)}
    builder = SectionBuilder()
    paragraph: list[str] = []
    pending: tuple[int, list[str]] | None = None  # a heading that may wrap onto more lines

    def flush_paragraph() -> None:
        if paragraph:
            builder.line(" ".join(paragraph))
            builder.line("")
            paragraph.clear()

    def flush_heading() -> None:
        nonlocal pending
        if pending:
            builder.heading(pending[0], " ".join(pending[1]))
            pending = None

    for text, size in lines:
        level = level_of.get(size) if len(text.split()) <= _HEADING_MAX_WORDS else None
        if level and text:
            if pending and pending[0] == level and not paragraph:
                pending[1].append(text)
                continue
            flush_paragraph()
            flush_heading()
            pending = (level, [text])
            continue
        flush_heading()
        if text:
            paragraph.append(text)
        else:
            flush_paragraph()
    flush_paragraph()
    flush_heading()
    return builder.finish()


_LOADERS: dict[str, Callable[[Path, bytes], Document]] = {
    **dict.fromkeys(MARKDOWN_SUFFIXES | TEXT_SUFFIXES, _load_markdown),
    **dict.fromkeys(HTML_SUFFIXES, _load_html),
    **dict.fromkeys(PDF_SUFFIXES, _load_pdf),
}
