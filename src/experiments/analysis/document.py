"""A tiny document model rendered to Markdown and to self-contained HTML, so run comparisons and sweep
summaries are written once and read the same in a terminal, in MLflow's artifact viewer and in a browser.
Everything that came from data is escaped (questions and SQL are arbitrary text): HTML-escaped with its control
characters visible, and in Markdown table cells its Markdown syntax escaped too (analysis/shown_text.py)."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.analysis.shown_text import markdown_text, visible
from experiments.data.jsonl import write_text


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Alert:
    title: str
    lines: tuple[str, ...]


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]


@dataclass(frozen=True)
class Image:
    path: Path  # embedded in HTML as a data URI; linked by file name in Markdown
    alt: str


Block = Heading | Paragraph | Alert | Bullets | Table | Image


@dataclass
class Document:
    title: str
    blocks: list[Block] = field(default_factory=list)

    def add(self, *blocks: Block) -> Document:
        self.blocks.extend(blocks)
        return self


def png_data_uri(path: Path) -> str:
    """A PNG as a data URI, so an HTML page carries its figures inside itself."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def cell(value: Any) -> str:
    """Floats to 4 significant digits, None to blank; the one formatting rule for every table."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def _md_cell(value: Any) -> str:
    """Table-safe, HTML- and Markdown-escaped: Markdown viewers render raw HTML, images and links, and questions/SQL
    are arbitrary text."""
    return markdown_text(cell(value))


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    if not rows:
        return "(none)\n"
    lines = ["| " + " | ".join(_md_cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def to_markdown(doc: Document) -> str:
    parts = [f"# {doc.title}\n"]
    for block in doc.blocks:
        if isinstance(block, Heading):
            parts.append(f"{'#' * block.level} {block.text}\n")
        elif isinstance(block, Paragraph):
            parts.append(block.text + "\n")
        elif isinstance(block, Alert):
            parts.append("\n".join([f"> **WARNING: {block.title}**", ">", *(f"> - {line}" for line in block.lines)])
                         + "\n")
        elif isinstance(block, Bullets):
            parts.append("\n".join(f"- {item}" for item in block.items) + "\n")
        elif isinstance(block, Table):
            parts.append(markdown_table(block.headers, block.rows))
        elif isinstance(block, Image):
            parts.append(f"![{block.alt}]({block.path.name})\n")
    return "\n".join(parts)


_STYLE = """body{font-family:system-ui,sans-serif;margin:1em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;display:block;max-width:100%;overflow-x:auto}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top;overflow-wrap:break-word}
th{background:#f3f3f3}.warning{border:2px solid #c00;background:#fff0f0;padding:.5em 1em;
margin:1em 0}.warning h3{color:#c00;margin:.2em 0}img{max-width:100%}"""


def _esc(text: str) -> str:
    return html.escape(visible(text))


def to_html(doc: Document) -> str:
    esc = _esc
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc(doc.title)}</title>"
             f"<style>{_STYLE}</style></head><body><h1>{esc(doc.title)}</h1>"]
    for block in doc.blocks:
        if isinstance(block, Heading):
            level = min(max(block.level, 2), 6)
            parts.append(f"<h{level}>{esc(block.text)}</h{level}>")
        elif isinstance(block, Paragraph):
            parts.append(f"<p>{esc(block.text)}</p>")
        elif isinstance(block, Alert):
            items = "".join(f"<li>{esc(line)}</li>" for line in block.lines)
            parts.append(f"<div class='warning'><h3>WARNING: {esc(block.title)}</h3><ul>{items}</ul></div>")
        elif isinstance(block, Bullets):
            parts.append("<ul>" + "".join(f"<li>{esc(item)}</li>" for item in block.items) + "</ul>")
        elif isinstance(block, Table):
            head = "".join(f"<th>{esc(cell(h))}</th>" for h in block.headers)
            body = "".join("<tr>" + "".join(f"<td>{esc(cell(v))}</td>" for v in row) + "</tr>" for row in block.rows)
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>" if block.rows
                         else "<p>(none)</p>")
        elif isinstance(block, Image) and block.path.is_file():
            parts.append(f"<img alt='{esc(block.alt)}' src='{png_data_uri(block.path)}'>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_document(doc: Document, out_dir: Path, stem: str) -> dict[str, Path]:
    """`<stem>.md` and `<stem>.html` in out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"md": out_dir / f"{stem}.md", "html": out_dir / f"{stem}.html"}
    write_text(paths["md"], to_markdown(doc))
    write_text(paths["html"], to_html(doc))
    return paths
