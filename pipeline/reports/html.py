"""Building blocks of a self-contained HTML report: sections, tables and PNG figures as ``data:`` URIs."""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Section", "data_uri", "figure_html", "page", "table_html"]

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1f2933;background:#f7f8fa}
header{background:#1f2933;color:#fff;padding:18px 32px}
header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#cbd2d9;font-size:13px}
main{padding:8px 32px 40px;max-width:1200px}
section{background:#fff;border:1px solid #e4e7eb;border-radius:6px;margin:18px 0;padding:14px 20px}
section h2{font-size:17px;margin:4px 0 10px}
table{border-collapse:collapse;font-size:13px;margin:6px 0}
th,td{border:1px solid #e4e7eb;padding:3px 8px;text-align:right}
th{background:#f0f2f5}
td:first-child,th:first-child{text-align:left}
figure{margin:8px 0;display:inline-block;vertical-align:top}
figure img{max-width:100%;border:1px solid #e4e7eb}
figcaption{font-size:12px;color:#52606d;max-width:720px}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 14px;font-size:13px}
dt{font-weight:600}
dd{margin:0;font-family:ui-monospace,monospace;word-break:break-all}
"""


def data_uri(png: bytes, mime: str = "image/png") -> str:
    """``data:image/png;base64,...`` for ``png`` (what both the HTML page and Prefect markdown embed)."""
    return f"data:{mime};base64,{base64.b64encode(png).decode('ascii')}"


def figure_html(png: bytes, caption: str = "", *, alt: str | None = None) -> str:
    """A ``<figure>`` with the PNG inline and an optional caption."""
    alt_text = html.escape(alt or caption or "figure")
    cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return f'<figure><img alt="{alt_text}" src="{data_uri(png)}">{cap}</figure>'


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def table_html(
    rows: Iterable[Mapping[str, Any]] | Iterable[Sequence[Any]],
    columns: Sequence[str] | None = None,
    *,
    caption: str = "",
    table_id: str | None = None,
) -> str:
    """An HTML table from dict rows (columns: their keys, first-seen order) or sequence rows + ``columns``."""
    items: list[Any] = list(rows)
    if columns is None:
        cols: list[str] = []
        for r in items:
            cols += [str(k) for k in r if str(k) not in cols]
        columns = cols
    body = []
    for r in items:
        values = [r.get(c, "") for c in columns] if isinstance(r, Mapping) else list(r)
        body.append("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in values) + "</tr>")
    head = "<tr>" + "".join(f"<th>{html.escape(str(c))}</th>" for c in columns) + "</tr>"
    ident = f' id="{html.escape(table_id)}"' if table_id else ""
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f"<table{ident}>{cap}<thead>{head}</thead><tbody>{''.join(body)}</tbody></table>"


def facts_html(facts: Mapping[str, Any]) -> str:
    """A definition list (key → value), e.g. the headline of a report."""
    items = "".join(f"<dt>{html.escape(str(k))}</dt><dd>{html.escape(str(v))}</dd>" for k, v in facts.items())
    return f"<dl>{items}</dl>"


@dataclass
class Section:
    """One titled block of a report: raw HTML (tables, figures, text), optionally with an anchor id."""

    title: str
    body: str
    anchor: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_html(self) -> str:
        ident = f' id="{html.escape(self.anchor)}"' if self.anchor else ""
        notes = "".join(f"<p>{html.escape(n)}</p>" for n in self.notes)
        return f"<section{ident}><h2>{html.escape(self.title)}</h2>{notes}{self.body}</section>"


def page(title: str, sections: Iterable[Section], *, subtitle: str = "") -> str:
    """A complete, self-contained HTML document (inline CSS, images as data: URIs, no scripts)."""
    sub = f"<p>{html.escape(subtitle)}</p>" if subtitle else ""
    body = "".join(s.to_html() for s in sections)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><header><h1>{html.escape(title)}</h1>{sub}</header><main>{body}</main></body></html>\n"
    )
