"""Write a :class:`~ckmodel.report.document.Report` as one self-contained HTML file.

Figures are embedded as base64 ``data:`` URIs and the style sheet is inline: the file opens
with no network access and no other file beside it. No script runs in it (nothing can fail
in a browser console), and all text is escaped, so a label from a data file cannot inject
markup.
"""

from __future__ import annotations

import base64
import html

from ckmodel.report.document import Equation, FigureBlock, Report, Section, Table, Text

__all__ = ["to_html", "CSS"]

#: Inline style sheet: readable tables, wide figures scaled to the page, coloured notices.
CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;margin:0;
color:#1b1b1b;background:#fff;line-height:1.45}
main{max-width:1150px;margin:0 auto;padding:1.2em 2em 4em}
h1{font-size:1.7em;margin-bottom:.1em}h2{margin-top:2em;border-bottom:2px solid #0072B2;
padding-bottom:.2em}.subtitle{color:#555;margin:.1em 0}
nav ol{columns:2;font-size:.95em}
table{border-collapse:collapse;margin:.6em 0 1.4em;font-size:.86em}
th,td{border:1px solid #ccc;padding:.25em .55em;text-align:right;vertical-align:top}
th{background:#eef4fa;text-align:center}td:first-child,th:first-child{text-align:left}
caption{caption-side:top;text-align:left;font-weight:600;padding:.3em 0;color:#333}
figure{margin:1em 0 2em}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.9em;color:#444;margin-top:.3em}
pre{background:#f6f8fa;padding:.8em;overflow-x:auto;font-size:.82em;border-radius:4px}
.eq{margin:.4em 0 .4em 1.5em;overflow-x:auto}.eq math{font-size:1.1em}
.notice{padding:.7em 1em;border-radius:4px;margin:.8em 0;border-left:6px solid}
.ok{background:#e8f5ee;border-color:#009E73}.alert{background:#fdecea;border-color:#D55E00;
font-weight:600}.note{background:#f4f4f4;border-color:#999;font-size:.92em}
"""


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _text(b: Text) -> str:
    if b.kind == "list":
        items = [b.text] if isinstance(b.text, str) else list(b.text)
        return "<ul>" + "".join(f"<li>{_esc(t)}</li>" for t in items) + "</ul>"
    if b.kind == "pre":
        return f"<pre>{_esc(b.text)}</pre>"
    if b.kind in ("ok", "alert", "note"):
        return f'<div class="notice {b.kind}">{_esc(b.text)}</div>'
    return f"<p>{_esc(b.text)}</p>"


def _table(b: Table) -> str:
    header, body = b.cells()
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    rows = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in row) + "</tr>"
                   for row in body)
    cap = f"<caption>{_esc(b.caption)}</caption>" if b.caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _uri(f: FigureBlock) -> str:
    return f"data:{f.mime};base64,{base64.b64encode(f.data).decode('ascii')}"


def _equation(e: Equation) -> str:
    # the MathML was checked when the block was made (Equation: one <math> element, MathML
    # elements only, no links, handlers or styles)
    return f'<div class="eq" id="{_esc(e.name)}">{e.mathml}</div>'


def _figure(f: FigureBlock, number: int) -> str:
    alt = _esc(f.alt or f.caption or f.name)
    width = f' width="{f.width}"' if f.width else ""
    return (f'<figure id="fig-{_esc(f.name)}"><img src="{_uri(f)}" alt="{alt}"{width}>'
            f"<figcaption>Figure {number}. {_esc(f.caption)}</figcaption></figure>")


def _section(s: Section, k: int, counter: list[int]) -> str:
    parts = [f'<section id="{_esc(s.key)}"><h2>{k}. {_esc(s.title)}</h2>']
    for b in s.blocks:
        if isinstance(b, Text):
            parts.append(_text(b))
        elif isinstance(b, Table):
            parts.append(_table(b))
        elif isinstance(b, Equation):
            parts.append(_equation(b))
        else:
            counter[0] += 1
            parts.append(_figure(b, counter[0]))
    parts.append("</section>")
    return "\n".join(parts)


def to_html(report: Report) -> str:
    """The report as one HTML document (UTF-8 text; figures and style inline).

    Parameters
    ----------
    report : Report
        The report.

    Returns
    -------
    str
    """
    counter = [0]
    toc = "".join(f'<li><a href="#{_esc(s.key)}">{_esc(s.title)}</a></li>'
                  for s in report.sections)
    body = "\n".join(_section(s, k, counter) for k, s in enumerate(report.sections, start=1))
    sub = "".join(f'<p class="subtitle">{_esc(t)}</p>' for t in report.subtitle)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<meta name=\"generator\" content=\"ckmodel\"><title>{_esc(report.title)}</title>"
            # a data: favicon, so the browser asks the network for nothing
            "<link rel=\"icon\" href=\"data:,\">"
            f"<style>{CSS}</style></head><body><main><h1>{_esc(report.title)}</h1>{sub}"
            f"<nav><ol>{toc}</ol></nav>\n{body}\n</main></body></html>\n")
