"""What a policy document is once loaded: metadata, sections with their heading paths, a hash.

Loaders fill these types from Markdown, text, HTML or PDF; chunking and ingest only see them.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DEFAULT_AUDIENCE = "all"
SECTION_SEPARATOR = " > "
# Ids as companies write them ("HL-OPS-201", "POL 7.2", "HR/Leave-03"): printable, no
# control characters, no space at either end, at most DOC_ID_MAX_LENGTH characters.
DOC_ID_MAX_LENGTH = 80
_FRONT_MATTER = re.compile(r"\A\ufeff?---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.DOTALL)


class FrontMatter(BaseModel):
    """Metadata a document may declare about itself; anything left out gets a default later."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    doc_id: str | None = None
    title: str | None = None
    version: int | None = Field(default=None, ge=1)
    effective_from: date | None = None
    effective_to: date | None = None
    audience: str | None = None
    tags: tuple[str, ...] = ()
    # Where people read the policy (an intranet page); citations link to it.
    url: str | None = Field(default=None, pattern=r"^https?://\S+$")

    @field_validator("tags", mode="before")
    @classmethod
    def _split_tags(cls, value: Any) -> Any:
        # HTML meta and PDF info carry tags as one comma-separated string.
        if isinstance(value, str):
            return tuple(tag.strip() for tag in value.split(",") if tag.strip())
        return value

    @field_validator("doc_id", "title", "audience", "url", mode="before")
    @classmethod
    def _blank_is_missing(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)  # YAML reads `doc_id: 7.2` as a number
        if isinstance(value, str):
            value = value.strip()
            return value or None
        return value

    @field_validator("doc_id")
    @classmethod
    def _printable_id(cls, value: str | None) -> str | None:
        if value is not None and (len(value) > DOC_ID_MAX_LENGTH or not value.isprintable()):
            raise ValueError(
                f"doc_id must be printable text of at most {DOC_ID_MAX_LENGTH} characters, "
                f"without tabs or line breaks, such as HL-OPS-201 (got {value!r})"
            )
        return value

    @model_validator(mode="after")
    def _window_is_ordered(self) -> FrontMatter:
        if self.effective_from and self.effective_to and self.effective_to <= self.effective_from:
            raise ValueError("effective_to must be after effective_from")
        return self


@dataclass(frozen=True)
class Section:
    """A run of text under one heading path ("Title > Part > Subpart"); the path may be empty."""

    headings: tuple[str, ...]
    text: str


@dataclass(frozen=True)
class Document:
    """A loaded document: stable id, title, source and sections, plus what it declared."""

    doc_id: str
    title: str
    source: str
    sections: tuple[Section, ...]
    declared: FrontMatter

    @property
    def audience(self) -> str:
        return self.declared.audience or DEFAULT_AUDIENCE

    def content_hash(self) -> str:
        """Hash of the text and the metadata that change what the document says or when.

        The source path and the link are left out on purpose: moving a file or a page does
        not make a new version.
        """
        digest = hashlib.sha256()
        declared = self.declared
        if declared.doc_id is not None:  # "HL-OPS-201" and "hl-ops-201" are one document
            declared = declared.model_copy(update={"doc_id": declared.doc_id.casefold()})
        digest.update(declared.model_dump_json(exclude={"url"}).encode())
        digest.update(self.title.encode())
        for section in self.sections:
            digest.update(b"\x00" + SECTION_SEPARATOR.join(section.headings).encode())
            digest.update(b"\x01" + " ".join(section.text.split()).encode())
        return digest.hexdigest()


def split_front_matter(text: str) -> tuple[dict[str, Any], str]:
    """Separate a leading `---` YAML block from the body; no block gives an empty mapping."""
    match = _FRONT_MATTER.match(text)
    if not match:
        return {}, text.removeprefix("\ufeff")
    try:
        raw = yaml.safe_load(match.group(1))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 2})" if mark else ""
        raise ValueError(f"front matter is not valid YAML{where}") from error
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ValueError("front matter must be a mapping of `key: value` lines")
    return raw, text[match.end() :]


def parse_front_matter(raw: dict[str, Any]) -> FrontMatter:
    """Validate declared metadata; the error names the offending keys."""
    try:
        return FrontMatter.model_validate(raw)
    except ValidationError as error:
        problems = "; ".join(_describe(issue) for issue in error.errors())
        raise ValueError(f"bad front matter: {problems}") from error


def _describe(issue: Any) -> str:
    field = ".".join(str(part) for part in issue["loc"])
    if issue["type"] == "extra_forbidden":
        known = ", ".join(FrontMatter.model_fields)
        return f"unknown key '{field}' (known keys: {known})"
    message = issue["msg"].removeprefix("Value error, ")
    return f"{field}: {message}" if field else message


def slug(text: str) -> str:
    """A doc_id from a file name: lower case, runs of other characters become one hyphen."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "document"


def build_document(
    path: Path, declared: FrontMatter, sections: list[Section], fallback_title: str | None
) -> Document:
    """Fill in the defaults: doc_id from the file name, title from the first H1 or the stem."""
    sections = [section for section in sections if section.text.strip()]
    if not sections:
        raise ValueError("no text to index (the file is empty apart from metadata or headings)")
    title = declared.title or fallback_title or _first_top_heading(sections) or path.stem
    return Document(
        doc_id=declared.doc_id or slug(path.stem),
        title=title,
        source=str(path),
        sections=tuple(sections),
        declared=declared,
    )


def _first_top_heading(sections: list[Section]) -> str | None:
    return next((section.headings[0] for section in sections if section.headings), None)
