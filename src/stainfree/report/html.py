"""A self-contained HTML report: headings, text, tables and figures embedded as base64 PNG."""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from stainfree.io.atomic import write_text

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
h1{border-bottom:2px solid #444}
h2{margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;font-size:0.9em;margin:1em 0}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f0f0f0}
img,video{max-width:100%;margin:0.5em 0;border:1px solid #ddd}
.note{color:#666;font-size:0.9em}
"""


@dataclass
class Section:
    """One part of a report.

    Attributes
    ----------
    title : str
        Section heading.
    text : str
        Paragraph(s) of plain text (blank lines separate paragraphs).
    figures : list of path-like
        PNG files to embed, in order.
    tables : list of (caption, DataFrame)
        Tables to render.
    movies : list of path-like
        MP4 movies (embedded as looping HTML5 video, which plays in a browser) or GIFs, after the figures.
    """

    title: str
    text: str = ""
    figures: Sequence[str | os.PathLike] = field(default_factory=list)
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    movies: Sequence[str | os.PathLike] = field(default_factory=list)


def _img(path: str | os.PathLike) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    mime = "image/gif" if Path(path).suffix.lower() == ".gif" else "image/png"
    return f'<figure><img alt="{html.escape(Path(path).name)}" src="data:{mime};base64,{data}"></figure>'


def _movie(path: str | os.PathLike) -> str:
    """An MP4 as an embedded, looping, muted HTML5 video (a GIF as an image)."""
    if Path(path).suffix.lower() != ".mp4":
        return _img(path)
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return (
        f'<figure><video controls autoplay loop muted playsinline title="{html.escape(Path(path).name)}">'
        f'<source type="video/mp4" src="data:video/mp4;base64,{data}"></video></figure>'
    )


def render_html(title: str, sections: Sequence[Section], footer: str = "") -> str:
    """Render sections to one HTML document (figures embedded, so the file stands alone)."""
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>",
    ]
    for sec in sections:
        parts.append(f"<h2>{html.escape(sec.title)}</h2>")
        for para in filter(None, (p.strip() for p in sec.text.split("\n\n"))):
            parts.append(f"<p>{html.escape(para)}</p>")
        for caption, table in sec.tables:
            parts.append(f"<p class='note'>{html.escape(caption)}</p>")
            parts.append(table.to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0))
        parts.extend(_img(f) for f in sec.figures)
        parts.extend(_movie(m) for m in sec.movies)
    if footer:
        parts.append(f"<hr><p class='note'>{html.escape(footer)}</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(path: str | os.PathLike, title: str, sections: Sequence[Section], footer: str = "") -> Path:
    """Write a standalone HTML report atomically and return its path."""
    return write_text(path, render_html(title, sections, footer))
