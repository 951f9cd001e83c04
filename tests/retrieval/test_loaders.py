"""Each loader keeps metadata and headings; bad files are refused by name with a reason."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from pypdf import PdfWriter
from reportlab.lib.pagesizes import letter
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.platypus import Paragraph, SimpleDocTemplate
from retrieval_support import Ingest, WriteDoc, write

from retrieval.errors import RetrievalError, UnreadableDocumentError
from retrieval.ingest import FileStatus
from retrieval.loaders import collect_files, load_document

MARKDOWN = """---
doc_id: load-approval
title: Load Approval Thresholds
version: 3
effective_from: 2026-03-01
audience: dispatch
tags: [dispatch, loads]
url: https://intranet.example/policies/load-approval
---
# Load Approval Thresholds

## Approval by weight

| Cargo weight | Who approves |
|---|---|
| 26,001 to 40,000 lb | Shift lead on duty |

### Reweighs

A scale ticket off by more than 500 lb needs a new approval.

```
# not a heading, just a comment in a code block
```

## Overweight permits

Ask the permits desk.
"""


def test_markdown_front_matter_and_heading_paths(write_doc: WriteDoc) -> None:
    document = load_document(write_doc("load-approval.md", MARKDOWN))

    assert document.doc_id == "load-approval"
    assert document.title == "Load Approval Thresholds"
    assert document.declared.version == 3
    assert document.declared.effective_from == date(2026, 3, 1)
    assert document.declared.effective_to is None
    assert document.audience == "dispatch"
    assert document.declared.tags == ("dispatch", "loads")
    assert document.declared.url == "https://intranet.example/policies/load-approval"
    assert [section.headings for section in document.sections] == [
        ("Load Approval Thresholds", "Approval by weight"),
        ("Load Approval Thresholds", "Approval by weight", "Reweighs"),
        ("Load Approval Thresholds", "Overweight permits"),
    ]
    assert "26,001 to 40,000 lb | Shift lead on duty" in document.sections[0].text
    # A "#" line inside a fenced code block stays text of its section.
    assert "# not a heading" in document.sections[1].text


def test_a_new_link_is_not_a_new_version(write_doc: WriteDoc) -> None:
    linked = load_document(write_doc("linked.md", MARKDOWN))
    moved = load_document(
        write_doc("moved.md", MARKDOWN.replace("intranet.example", "wiki.example"))
    )

    assert moved.declared.url != linked.declared.url
    assert moved.content_hash() == linked.content_hash()


def test_plain_text_without_front_matter_gets_defaults(write_doc: WriteDoc) -> None:
    text = (
        "Fuel Card Rules\n"
        "===============\n\n"
        "Lost cards\n"
        "----------\n\n"
        "Call fuel card support at once.\n"
    )
    document = load_document(write_doc("Fuel Card Rules.txt", text))

    assert document.doc_id == "fuel-card-rules"
    assert document.title == "Fuel Card Rules"  # the first heading
    assert document.declared.version is None  # ingest assigns one
    assert document.declared.effective_from is None  # ingest uses the ingest date
    assert document.audience == "all"
    assert document.sections[0].headings == ("Fuel Card Rules", "Lost cards")
    assert document.sections[0].text == "Call fuel card support at once."


def test_text_without_headings_is_one_section_titled_by_file_name(write_doc: WriteDoc) -> None:
    document = load_document(write_doc("yard-rules.txt", "Walk, do not run.\n\nWear a vest."))

    assert document.title == "yard-rules"
    assert len(document.sections) == 1
    assert document.sections[0].headings == ()
    assert document.sections[0].text == "Walk, do not run.\n\nWear a vest."


HTML = """<!DOCTYPE html>
<html><head>
<title>Reefer Temperature Control</title>
<meta name="doc_id" content="reefer-temperature">
<meta name="version" content="4">
<meta name="effective_from" content="2026-05-15">
<meta name="audience" content="service">
<meta name="tags" content="reefer, temperature">
<style>h2 { color: red; }</style>
</head><body>
<h1>Reefer Temperature Control</h1>
<script>var secret = "not policy text";</script>
<h2>Setpoints by commodity</h2>
<table>
<thead><tr><th>Commodity</th><th>Setpoint</th></tr></thead>
<tbody><tr><td>Ice cream</td><td>-20&deg;F</td></tr></tbody>
</table>
<h2>Out-of-range rules</h2>
<p>An excursion lasts <strong>30 minutes</strong>.</p>
<ul><li>Call the reefer desk.</li><li>Log the reading.</li></ul>
</body></html>
"""


def test_html_meta_title_headings_and_tables(write_doc: WriteDoc) -> None:
    document = load_document(write_doc("reefer.html", HTML))

    assert document.doc_id == "reefer-temperature"
    assert document.title == "Reefer Temperature Control"
    assert document.declared.version == 4
    assert document.declared.effective_from == date(2026, 5, 15)
    assert document.declared.tags == ("reefer", "temperature")
    assert [section.headings[-1] for section in document.sections] == [
        "Setpoints by commodity",
        "Out-of-range rules",
    ]
    assert document.sections[0].text == "Commodity | Setpoint\nIce cream | -20°F"
    assert document.sections[1].text == (
        "An excursion lasts 30 minutes.\n\n- Call the reefer desk.\n- Log the reading."
    )
    assert "secret" not in " ".join(section.text for section in document.sections)


def make_pdf(
    path: Path, *, title: str | None, with_headings: bool = True, info: dict[str, str] | None = None
) -> Path:
    """A real PDF: headings in larger type than the body, optional document info entries."""
    styles = getSampleStyleSheet()
    story = []
    if with_headings:
        story.append(Paragraph("Fuel Policy", styles["Title"]))
        story.append(Paragraph("Approved stops", styles["Heading2"]))
    story.append(Paragraph("Drivers fuel only at approved truck stops. " * 12, styles["BodyText"]))
    if with_headings:
        story.append(Paragraph("Receipts", styles["Heading2"]))
    story.append(Paragraph("Keep every fuel receipt for 30 days.", styles["BodyText"]))
    SimpleDocTemplate(str(path), pagesize=letter, title=title or "").build(story)
    if info:
        writer = PdfWriter(clone_from=path)
        writer.add_metadata({f"/{key}": value for key, value in info.items()})
        writer.write(path)
    return path


def test_pdf_metadata_and_headings_from_font_sizes(tmp_path: Path) -> None:
    info = {"doc_id": "fuel-card", "version": "2", "effective_from": "2027-02-01"}
    path = make_pdf(tmp_path / "fuel.pdf", title="Fuel and Fuel Card Policy", info=info)

    document = load_document(path)

    assert document.doc_id == "fuel-card"
    assert document.title == "Fuel and Fuel Card Policy"
    assert document.declared.version == 2
    assert document.declared.effective_from == date(2027, 2, 1)
    assert [section.headings for section in document.sections] == [
        ("Fuel Policy", "Approved stops"),
        ("Fuel Policy", "Receipts"),
    ]
    assert document.sections[0].text.startswith("Drivers fuel only at approved truck stops.")
    assert document.sections[1].text == "Keep every fuel receipt for 30 days."


def test_pdf_without_title_or_headings_falls_back_to_file_name(tmp_path: Path) -> None:
    document = load_document(make_pdf(tmp_path / "fuel-rules.pdf", title=None, with_headings=False))

    assert document.title == "fuel-rules"
    assert len(document.sections) == 1
    assert document.sections[0].headings == ()
    assert "Keep every fuel receipt for 30 days." in document.sections[0].text


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.md", b"", "the file is empty"),
        ("blank.txt", b"  \n\n  \n", "the file is empty"),
        ("only-metadata.md", b"---\ntitle: Nothing\n---\n# Heading only\n", "no text to index"),
        ("fake.pdf", b"Just some text, not a PDF at all.", "not a PDF"),
        ("broken.pdf", b"%PDF-1.4\n1 0 obj garbage\n%%EOF", "damaged or unsupported PDF"),
        ("binary.md", b"\x00\x01\x02binary\x00", "binary"),
        ("report.html", b"%PDF-1.7 a PDF saved as .html", "looks like a PDF, not HTML"),
        ("latin1.txt", "Caf\u00e9 policy".encode("latin-1"), "not UTF-8"),
        ("notes.docx", b"PK\x03\x04", "unsupported file type '.docx'"),
        ("bad-yaml.md", b"---\ntitle: [unclosed\n---\ntext\n", "front matter is not valid YAML"),
        (
            "typo.md",
            b"---\neffective-from: 2026-01-01\n---\ntext\n",
            "unknown key 'effective-from'",
        ),
        ("bad-date.md", b"---\neffective_from: next week\n---\ntext\n", "effective_from"),
        (
            "backwards.md",
            b"---\neffective_from: 2026-05-01\neffective_to: 2026-01-01\n---\ntext\n",
            "effective_to must be after effective_from",
        ),
        ("bad-version.md", b"---\nversion: v2\n---\ntext\n", "version"),
        ("bad-link.md", b"---\nurl: javascript:alert(1)\n---\ntext\n", "url"),
    ],
)
def test_unreadable_files_are_refused_with_their_name_and_reason(
    tmp_path: Path, name: str, content: bytes, reason: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)

    with pytest.raises(UnreadableDocumentError) as raised:
        load_document(path)

    assert raised.value.path == str(path)
    assert reason in raised.value.reason
    assert str(path) in str(raised.value)


PDF_BYTES = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n"
ZIP = "looks like a ZIP archive (a Word, Excel or other Office file?)"


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        (
            "fuel.pdf",
            b"Drivers fuel only at approved truck stops.\n",
            "looks like plain text, not a PDF: rename it to .md or .txt",
        ),
        (
            "fuel.pdf",
            b"\n<!DOCTYPE html>\n<html><body><h1>Fuel</h1></body></html>",
            "looks like an HTML page, not a PDF: rename it to .html",
        ),
        ("fuel.pdf", b"PK\x03\x04\x14\x00word/document.xml", f"{ZIP}, not a PDF: save or export"),
        ("scan.pdf", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "looks like a PNG image, not a PDF"),
        ("fuel.md", PDF_BYTES, "looks like a PDF, not Markdown: rename it to .pdf"),
        ("fuel.md", b"PK\x03\x04\x14\x00", f"{ZIP}, not Markdown"),
        ("fuel.txt", b"GIF89a\x01\x00\x01\x00", "looks like a GIF image, not plain text"),
        ("fuel.txt", b"\xff\xd8\xff\xe0\x00\x10JFIF", "looks like a JPEG image, not plain text"),
        (
            "fuel.txt",
            "Fuel policy".encode("utf-16"),
            "looks like UTF-16 text, not plain text: save it as UTF-8",
        ),
        ("fuel.md", b"Fuel policy\x00\x00\x01", "looks like binary data, not Markdown"),
        ("fuel.htm", b"  %PDF-1.4 saved from the browser", "looks like a PDF, not HTML"),
    ],
)
def test_a_file_that_is_not_what_its_extension_says_is_refused_with_what_it_looks_like(
    tmp_path: Path, name: str, content: bytes, reason: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)

    with pytest.raises(UnreadableDocumentError) as raised:
        load_document(path)

    assert reason in raised.value.reason


def test_content_that_fits_its_extension_is_read(tmp_path: Path) -> None:
    html_in_markdown = "# Fuel\n\n<details><summary>Stops</summary>Approved only.</details>\n"
    mentions_pdf = "# Exports\n\nA PDF file starts with %PDF- and a version number.\n"
    pdf = make_pdf(tmp_path / "fuel.pdf", title="Fuel")
    junk_first = tmp_path / "junk-first.pdf"
    junk_first.write_bytes(b"\r\n" + pdf.read_bytes())  # PDF readers accept this

    loaded = [
        load_document(write(tmp_path, "details.md", html_in_markdown)),
        load_document(write(tmp_path, "exports.md", mentions_pdf)),
        load_document(write(tmp_path, "page.html", "Walk, do not run, in the yard.")),
        load_document(junk_first),
    ]

    assert [doc.title for doc in loaded] == ["Fuel", "Exports", "page", "Fuel"]


def test_ingest_skips_mislabelled_files_with_the_reason_and_ingests_the_rest(
    tmp_path: Path, ingest: Ingest
) -> None:
    good = write(tmp_path, "yard.md", "# Yard Rules\n\nWalk, do not run.\n")
    disguised = tmp_path / "fuel.md"
    disguised.write_bytes(PDF_BYTES)
    web_page = write(tmp_path, "sla.pdf", "<html><body><h1>SLAs</h1></body></html>")

    report = ingest(disguised, good, web_page)

    outcomes = {Path(outcome.path).name: outcome for outcome in report.outcomes}
    assert outcomes["yard.md"].status is FileStatus.NEW
    assert outcomes["fuel.md"].status is FileStatus.SKIPPED
    assert outcomes["fuel.md"].reason == "looks like a PDF, not Markdown: rename it to .pdf"
    assert outcomes["sla.pdf"].status is FileStatus.SKIPPED
    assert outcomes["sla.pdf"].reason == "looks like an HTML page, not a PDF: rename it to .html"


def test_pdf_without_text_is_refused(tmp_path: Path) -> None:
    writer = PdfWriter()
    writer.add_blank_page(width=612, height=792)
    path = tmp_path / "scan.pdf"
    writer.write(path)

    with pytest.raises(UnreadableDocumentError, match="no extractable text"):
        load_document(path)


def test_collect_files_walks_folders_and_skips_hidden_and_unknown_files(tmp_path: Path) -> None:
    for name in ("a.md", "sub/b.txt", "sub/deeper/c.html", "d.pdf", ".hidden.md", ".git/e.md"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    named = tmp_path / "notes.docx"
    named.write_text("x")

    files = collect_files([tmp_path, named, tmp_path / "a.md"])

    relative = [path.relative_to(tmp_path).as_posix() for path in files]
    # A file named on the command line is kept whatever its type (load reports it);
    # a file reached twice is ingested once.
    assert relative == ["a.md", "d.pdf", "sub/b.txt", "sub/deeper/c.html", "notes.docx"]


def test_collect_files_rejects_missing_paths_and_empty_folders(tmp_path: Path) -> None:
    with pytest.raises(RetrievalError, match="no such file or folder"):
        collect_files([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.rst").write_text("x")
    with pytest.raises(RetrievalError, match=r"no policy files in this folder \(supported: .*\.md"):
        collect_files([tmp_path / "empty"])
