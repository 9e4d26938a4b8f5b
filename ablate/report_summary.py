"""The report as a document: one list of blocks, written as `summary.md` and as `report.html`.

Both files come from the same blocks, so they say the same thing. The HTML page is
self-contained (figures embedded as base64 PNG) and can be mailed or archived on its own.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from kernels.files import atomic_write_text


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    frame: pd.DataFrame


@dataclass(frozen=True)
class FigureBlock:
    """A saved figure: its PNG path relative to the output folder, and its caption."""

    png: str
    caption: str


Block = Heading | Paragraph | Bullets | Table | FigureBlock


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "" if pd.isna(value) else f"{value:.4g}"
    return str(value)


def _markdown_table(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = [
        "| " + " | ".join(_cell(v).replace("|", "\\|") for v in row) + " |"
        for row in frame.itertuples(index=False)
    ]
    return "\n".join([header, rule, *rows])


def to_markdown(title: str, blocks: list[Block]) -> str:
    """The blocks as GitHub-flavoured Markdown; figures link to the PNG files beside it."""
    parts = [f"# {title}"]
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Paragraph):
            parts.append(block.text)
        elif isinstance(block, Bullets):
            parts.append("\n".join(f"- {item}" for item in block.items))
        elif isinstance(block, Table):
            parts.append(_markdown_table(block.frame))
        else:
            parts.append(f"![{Path(block.png).stem}]({block.png})\n\n*{block.caption}*")
    return "\n\n".join(parts) + "\n"


def _inline_html(text: str) -> str:
    """Escape text, then render Markdown's `code`, **bold** and *italic* spans (code spans
    literally, as Markdown keeps them)."""
    codes: list[str] = []

    def hold(match: re.Match) -> str:  # a code span's place, kept from the emphasis
        codes.append(match.group(1))
        return f"\x00{len(codes) - 1}\x00"

    held = _emphasis(re.sub(r"`([^`]+)`", hold, html.escape(text)))
    return re.sub(r"\x00(\d+)\x00", lambda m: f"<code>{codes[int(m.group(1))]}</code>", held)


def _emphasis(text: str) -> str:
    text = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"(?<![\w*])\*([^*\s][^*]*?)\*(?![\w*])", r"<em>\1</em>", text)


STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
table { border-collapse: collapse; font-size: 0.85em; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; }
th { background: #f2f2f2; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; }
figcaption { font-style: italic; color: #555; }
code { background: #f5f5f5; padding: 0 0.2em; }
"""


def to_html(title: str, blocks: list[Block], out_dir: Path) -> str:
    """The blocks as one HTML page with every figure embedded as a base64 PNG."""
    parts = [f"<h1>{html.escape(title)}</h1>"]
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"<h{block.level}>{_inline_html(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            parts.append(f"<p>{_inline_html(block.text)}</p>")
        elif isinstance(block, Bullets):
            items = "".join(f"<li>{_inline_html(item)}</li>" for item in block.items)
            parts.append(f"<ul>{items}</ul>")
        elif isinstance(block, Table):
            formatted = block.frame.map(_cell)
            parts.append(formatted.to_html(index=False, border=0, escape=True))
        else:
            data = base64.b64encode((out_dir / block.png).read_bytes()).decode("ascii")
            parts.append(
                f'<figure><img alt="{html.escape(Path(block.png).stem)}" '
                f'src="data:image/png;base64,{data}"/>'
                f"<figcaption>{_inline_html(block.caption)}</figcaption></figure>"
            )
    body = "\n".join(parts)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"/>'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n"
        f"<body>\n{body}\n</body></html>\n"
    )


def write_documents(title: str, blocks: list[Block], out_dir: Path) -> list[Path]:
    """Write `summary.md` and `report.html` into `out_dir` and return their paths."""
    markdown, page = out_dir / "summary.md", out_dir / "report.html"
    atomic_write_text(markdown, to_markdown(title, blocks))
    atomic_write_text(page, to_html(title, blocks, out_dir))
    return [markdown, page]
