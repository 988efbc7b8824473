"""One document, two renderers (issue 20): report.md and report.html of a run come from the same Document, so they
hold the same sections and numbers; every block escapes untrusted text in both renderers."""

from __future__ import annotations

import html
import re
from pathlib import Path

from markdown_it import MarkdownIt
from test_analysis_report import IMAGE, LINK, SCRIPT_LINK, analyse, write_run

from experiments.analysis.document import (
    Alert,
    Box,
    Bullets,
    Code,
    CodeBlock,
    Document,
    Heading,
    Image,
    Paragraph,
    Strong,
    TableBlock,
    to_html,
    to_markdown,
)

HOSTILE = f"<script>x</script> {IMAGE} {LINK} {SCRIPT_LINK} a|b *c* nul\x00"


def test_report_md_and_html_have_the_same_sections_and_numbers(tmp_path: Path) -> None:
    files = write_run(tmp_path / "run")
    analyse(files)
    md, page = files.report_md.read_text(), files.report_html.read_text()
    md_headings = [html.unescape(h) for h in re.findall(r"^#+ (.+)$", md, re.MULTILINE)]
    html_headings = [html.unescape(h) for h in re.findall(r"<h[1-6]>(.*?)</h[1-6]>", page)]
    assert md_headings == html_headings and len(md_headings) > 10
    for number in ("0.2500", "[0.0889, 0.5323]", "3 / 12", "8.3%", "0.1429"):
        assert number in md and number in page, number


def every_block(text: str) -> Document:
    return Document(text).add(
        Heading(text), Paragraph(text, Strong(text), Code(text)), Alert(text, (text,)), Bullets((text,)),
        TableBlock((text,), ((text,), (Code(text),))), CodeBlock(text), Box((Paragraph(text),)),
        Image(Path("missing.png"), text))


def test_every_block_escapes_untrusted_text_in_both_renderers() -> None:
    doc = every_block(HOSTILE)
    rendered = MarkdownIt("commonmark").enable("table").render(to_markdown(doc))
    assert "<img" not in rendered and "<a " not in rendered and "<script" not in rendered and "<em>" not in rendered
    page = to_html(doc)
    assert "<script" not in page and "<img" not in page  # the image file is missing: nothing at all
    for text in (to_markdown(doc), page):
        assert "\x00" not in text and "nul\\x00" in text
