"""The one document model of every report, rendered to Markdown and to self-contained HTML: a run's report.md and
report.html, run comparisons and sweep summaries are each built once as a `Document` and written twice, so what the
two files say cannot drift apart.

A document is a title and a list of blocks (heading, paragraph, warning, bullet list, table, code block, image, and a
box that groups blocks). Text inside them is made of inline pieces: a plain `str` is untrusted text (questions, SQL,
error messages, ids, dataset headers and cells) and is always escaped: in HTML with `html.escape`, in Markdown with
its Markdown syntax escaped too (images, links, `javascript:`, table pipes), and in both with its control characters
and lone surrogates visible (evaluation/shown_text.py, data/jsonl.py's write_text). `Code` is shown as code, `Strong`
in bold; only `Plain` (text this program wrote: numbers, intervals, fixed labels such as `>`) goes into Markdown as
is. Renderers do not shorten: the builder of a document shortens what comes whole from results.jsonl (shortened()),
since analysis.json's texts come shortened already. The HTML page loads nothing: its CSS is inline and its figures
are data URIs.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.evaluation.shown_text import markdown_text, visible
from experiments.fileio import write_text

# ---------------------------------------------------------------------------------------------------------------
# Inline pieces


@dataclass(frozen=True)
class Plain:
    """Text this program wrote (a number, an interval, an operator such as `>`): as is in Markdown, escaped in HTML.
    Never for data."""

    text: str


@dataclass(frozen=True)
class Code:
    """Inline code (SQL, an error message that quotes it); None shows as `(none)`."""

    text: str | None


@dataclass(frozen=True)
class Strong:
    """Untrusted text in bold."""

    text: str


Inline = str | Plain | Code | Strong  # a bare str is untrusted text


# ---------------------------------------------------------------------------------------------------------------
# Blocks


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True, init=False)
class Paragraph:
    """Inline pieces on one line; `note` shows it as a side note in HTML."""

    parts: tuple[Inline, ...]
    note: bool = False

    def __init__(self, *parts: Inline, note: bool = False) -> None:
        object.__setattr__(self, "parts", parts)
        object.__setattr__(self, "note", note)


@dataclass(frozen=True)
class Alert:
    """A warning: its title, and lines under it."""

    title: str
    lines: tuple[str, ...] = ()


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class TableBlock:
    """A table; each cell an inline piece or a number (see `cell`). `numeric`: the columns aligned right."""

    headers: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    numeric: tuple[int, ...] = ()


@dataclass(frozen=True)
class CodeBlock:
    """A block of code (a query), shown whole with its line breaks; None shows as `(none)`."""

    text: str | None
    language: str = "sql"


@dataclass(frozen=True)
class Image:
    """A PNG: embedded in HTML as a data URI. Markdown names the file (`href`, default its name) in text; with
    `inline_in_markdown`, as a Markdown image of that relative path."""

    path: Path
    alt: str
    href: str | None = None
    inline_in_markdown: bool = False


@dataclass(frozen=True)
class Box:
    """Blocks that belong together (one example of a failure): a framed box in HTML, just the blocks in Markdown."""

    blocks: tuple[Block, ...]
    css_class: str = "example"


Block = Heading | Paragraph | Alert | Bullets | TableBlock | CodeBlock | Image | Box


@dataclass
class Document:
    title: str
    blocks: list[Block] = field(default_factory=list)

    def add(self, *blocks: Block) -> Document:
        self.blocks.extend(blocks)
        return self

    def to_markdown(self) -> str:
        return to_markdown(self)

    def to_html(self) -> str:
        return to_html(self)


# ---------------------------------------------------------------------------------------------------------------
# Shared formatting


def png_data_uri(path: Path) -> str:
    """A PNG as a data URI, so an HTML page carries its figures inside itself."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def cell(value: Any) -> str:
    """Floats to 4 significant digits, None to blank; the one formatting rule for numbers in every table."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


# ---------------------------------------------------------------------------------------------------------------
# Markdown


def _md_text(text: str) -> str:
    """Untrusted text on one line, escaped (shown_text.markdown_text), keeping a space at either edge so that pieces
    join as written."""
    body = markdown_text(text)
    return (" " if text[:1].isspace() else "") + body + (" " if text[-1:].isspace() and body else "")


def _md_code(text: str | None) -> str:
    """A code span: controls visible, on one line, pipes escaped (for tables), in a fence longer than any backtick
    run inside (Markdown's other syntax means nothing in a code span)."""
    if text is None:
        return "(none)"
    one_line = " ".join(visible(text).split()).replace("|", "\\|")
    longest = max((len(run) for run in re.findall(r"`+", one_line)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if one_line.startswith("`") or one_line.endswith("`") else ""
    return f"{fence}{pad}{one_line}{pad}{fence}"


def _md_inline(piece: Any) -> str:
    if isinstance(piece, Plain):
        return piece.text.replace("|", "\\|")
    if isinstance(piece, Code):
        return _md_code(piece.text)
    if isinstance(piece, Strong):
        return f"**{markdown_text(piece.text)}**"
    if isinstance(piece, str):
        return _md_text(piece)
    return cell(piece)


def _md_fenced(text: str | None, language: str) -> str:
    """A fenced code block whose fence is longer than any backtick run inside (predictions can hold backticks)."""
    text = "(none)" if text is None else visible(text)
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{text}\n{fence}"


def markdown_table(headers: Sequence[Any], rows: Sequence[Sequence[Any]], numeric: Sequence[int] = ()) -> str:
    if not rows:
        return "(none)\n"
    lines = ["| " + " | ".join(_md_inline(h) for h in headers) + " |",
             "| " + " | ".join("---:" if i in numeric else "---" for i in range(len(headers))) + " |"]
    lines += ["| " + " | ".join(_md_inline(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _md_block(block: Block) -> str:
    if isinstance(block, Heading):
        return f"{'#' * min(max(block.level, 2), 6)} {_md_text(block.text)}\n"
    if isinstance(block, Paragraph):
        return "".join(_md_inline(p) for p in block.parts) + "\n"
    if isinstance(block, Alert):
        lines = [f"> **WARNING**: {_md_text(block.title)}"]
        if block.lines:
            lines += [">", *(f"> - {_md_text(line)}" for line in block.lines)]
        return "\n".join(lines) + "\n"
    if isinstance(block, Bullets):
        return "\n".join(f"- {_md_text(item)}" for item in block.items) + "\n"
    if isinstance(block, TableBlock):
        return markdown_table(block.headers, block.rows, block.numeric)
    if isinstance(block, CodeBlock):
        return _md_fenced(block.text, block.language) + "\n"
    if isinstance(block, Image):
        target = block.href or block.path.name
        if block.inline_in_markdown:
            return f"![{markdown_text(block.alt)}]({target})\n"
        return f"Figure: {_md_text(block.alt)} ({_md_code(target)})\n"
    if isinstance(block, Box):
        return "\n".join(_md_block(b) for b in block.blocks)
    raise TypeError(f"not a document block: {block!r}")


def to_markdown(doc: Document) -> str:
    return "\n".join([f"# {_md_text(doc.title)}\n", *(_md_block(b) for b in doc.blocks)])


# ---------------------------------------------------------------------------------------------------------------
# HTML

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1100px;
       padding: 0 1em; color: #222; line-height: 1.4; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { margin-top: 2em; border-bottom: 1px solid #eee; }
table { border-collapse: collapse; margin: .8em 0; font-size: .92em; display: block; max-width: 100%;
        overflow-x: auto; }
th, td { border: 1px solid #ddd; padding: .3em .6em; text-align: left; vertical-align: top;
         overflow-wrap: break-word; }
th { background: #f5f5f5; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
code, pre { font-family: ui-monospace, "SFMono-Regular", Menlo, monospace; font-size: .9em; }
pre { background: #f7f7f7; padding: .5em; white-space: pre-wrap; word-break: break-word; margin: .2em 0; }
.example { border-left: 3px solid #c33; padding: .2em 1em; margin: 1em 0; }
.note { color: #555; font-size: .9em; }
.warning { border: 2px solid #c00; background: #fff0f0; padding: .5em 1em; margin: 1em 0; }
figure { margin: 1em 0; }
img { max-width: 100%; border: 1px solid #eee; }
"""


def _e(value: Any) -> str:
    return html.escape(visible("" if value is None else str(value)), quote=True)


def _html_inline(piece: Any) -> str:
    if isinstance(piece, Plain):
        return _e(piece.text)
    if isinstance(piece, Code):
        return "(none)" if piece.text is None else f"<code>{_e(piece.text)}</code>"
    if isinstance(piece, Strong):
        return f"<b>{_e(piece.text)}</b>"
    if isinstance(piece, str):
        return _e(piece)
    return _e(cell(piece))


def html_table(headers: Sequence[Any], rows: Sequence[Sequence[Any]], numeric: Sequence[int] = ()) -> str:
    if not rows:
        return "<p>(none)</p>"
    head = "".join(f"<th>{_html_inline(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f'<td class="num">{_html_inline(v)}</td>' if i in numeric
                                    else f"<td>{_html_inline(v)}</td>" for i, v in enumerate(row)) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html_block(block: Block) -> str:
    if isinstance(block, Heading):
        level = min(max(block.level, 2), 6)
        return f"<h{level}>{_e(block.text)}</h{level}>"
    if isinstance(block, Paragraph):
        css = ' class="note"' if block.note else ""
        return f"<p{css}>" + "".join(_html_inline(p) for p in block.parts) + "</p>"
    if isinstance(block, Alert):
        items = "".join(f"<li>{_e(line)}</li>" for line in block.lines)
        return (f'<div class="warning"><b>WARNING:</b> {_e(block.title)}' + (f"<ul>{items}</ul>" if items else "")
                + "</div>")
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{_e(item)}</li>" for item in block.items) + "</ul>"
    if isinstance(block, TableBlock):
        return html_table(block.headers, block.rows, block.numeric)
    if isinstance(block, CodeBlock):
        return f"<pre>{_e('(none)' if block.text is None else block.text)}</pre>"
    if isinstance(block, Image):
        if not block.path.is_file():
            return ""
        return (f'<figure><img alt="{_e(block.alt)}" src="{png_data_uri(block.path)}">'
                f"<figcaption>{_e(block.alt)}</figcaption></figure>")
    if isinstance(block, Box):
        return f'<div class="{_e(block.css_class)}">' + "".join(_html_block(b) for b in block.blocks) + "</div>"
    raise TypeError(f"not a document block: {block!r}")


def to_html(doc: Document) -> str:
    """One self-contained page: inline CSS, figures as data URIs, every piece of data escaped."""
    body = "\n".join([f"<h1>{_e(doc.title)}</h1>", *(_html_block(b) for b in doc.blocks)])
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(doc.title)}</title>'
            f"<style>{CSS}</style></head><body>\n{body}\n</body></html>\n")


# ---------------------------------------------------------------------------------------------------------------
# Files


def write_markdown(doc: Document, path: Path) -> Path:
    path = Path(path)
    write_text(path, to_markdown(doc))
    return path


def write_html(doc: Document, path: Path) -> Path:
    path = Path(path)
    write_text(path, to_html(doc))
    return path


def write_document(doc: Document, out_dir: Path, stem: str) -> dict[str, Path]:
    """`<stem>.md` and `<stem>.html` in out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return {"md": write_markdown(doc, out_dir / f"{stem}.md"), "html": write_html(doc, out_dir / f"{stem}.html")}
