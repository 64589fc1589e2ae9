"""HTML of the report: one self-contained, printable page (inline CSS, images as data URIs, no script)."""

from __future__ import annotations

from collections.abc import Iterable
from html import escape

CSS = """
body { font-family: sans-serif; margin: 24px auto; max-width: 1000px; color: #222; line-height: 1.4; }
h1 { font-size: 24px; margin-bottom: 4px; } h2 { font-size: 19px; border-bottom: 1px solid #ccc; margin-top: 28px; }
table { border-collapse: collapse; font-size: 13px; } th, td { border: 1px solid #ddd; padding: 3px 6px; }
th { background: #f2f2f2; text-align: left; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
.note { color: #555; font-size: 13px; } .warn { background: #fff4e0; border-left: 4px solid #e69500;
  padding: 6px 10px; font-size: 14px; }
.maps { display: flex; flex-wrap: wrap; gap: 14px; } .maps figure { margin: 0; text-align: center; font-size: 12px; }
img.chart { max-width: 100%; height: auto; } img.thumb { width: 64px; height: auto; }
.moment { display: inline-block; width: 118px; vertical-align: top; font-size: 11px; margin: 0 4px 4px 0; }
img.map { width: 128px; height: 128px; image-rendering: auto; }
section { page-break-inside: avoid; }
@media print { body { margin: 0; max-width: none; } h2 { page-break-after: avoid; } }
"""


def page(title: str, subtitle: str, sections: Iterable[str]) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
            f"<h1>{escape(title)}</h1><p class=\"note\">{escape(subtitle)}</p>"
            + "\n".join(sections) + "</body></html>\n")


def section(sid: str, title: str, *parts: str) -> str:
    return f'<section id="{sid}"><h2>{escape(title)}</h2>' + "".join(parts) + "</section>"


def note(text: str, raw: bool = False) -> str:
    return f'<p class="note">{text if raw else escape(text)}</p>'


def warn(text: str) -> str:
    """A clearly marked message in place of what a section could not show."""
    return f'<p class="warn"><b>Not shown:</b> {escape(text)}</p>'


def img(uri: str, alt: str, cls: str = "chart") -> str:
    return f'<img class="{cls}" src="{uri}" alt="{escape(alt)}">'


def table(header: list[str], rows: Iterable[list[str]], numeric: set[int] | None = None) -> str:
    """rows hold already-escaped HTML cells."""
    numeric = numeric or set()
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f'<td class="n">{c}</td>' if i in numeric else f"<td>{c}</td>"
                                    for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def facts_list(facts: list[tuple[str, str]]) -> str:
    return table(["fact", "value"], ([escape(k), escape(v)] for k, v in facts))


def fmt_time(seconds: float | None) -> str:
    """Seconds since the session's start as h:mm:ss (or m:ss)."""
    if seconds is None:
        return "—"
    s = max(0, round(seconds))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"
