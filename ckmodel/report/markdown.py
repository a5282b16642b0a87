"""Write a :class:`~ckmodel.report.document.Report` as Markdown with its figures beside it.

The Markdown file links its figures from a folder ``<stem>_files/`` next to it (PNG), which
is what GitHub, GitLab and most viewers render; the equations are written as LaTeX in a
``math`` block, which GitHub, GitLab and Jupyter typeset. Tables are GitHub pipe tables, with
``|`` in cells escaped.
"""

from __future__ import annotations

from ckmodel.report.document import Equation, Report, Table, Text

__all__ = ["to_markdown", "figure_folder"]


def figure_folder(stem: str) -> str:
    """Name of the folder of the figures of the Markdown report ``<stem>.md``."""
    return f"{stem}_files"


def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _table(b: Table) -> list[str]:
    header, body = b.cells()
    lines = [f"*{b.caption}*", ""] if b.caption else []
    lines.append("| " + " | ".join(_cell(h) for h in header) + " |")
    lines.append("|" + "---|" * len(header))
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in body]
    return lines + [""]


def _text(b: Text) -> list[str]:
    if b.kind == "list":
        items = [b.text] if isinstance(b.text, str) else list(b.text)
        return [f"- {t}" for t in items] + [""]
    if b.kind == "pre":
        return ["```text", str(b.text), "```", ""]
    if b.kind == "alert":
        return [f"> **Warning.** {b.text}", ""]
    if b.kind == "ok":
        return [f"> **OK.** {b.text}", ""]
    if b.kind == "note":
        return [f"> {b.text}", ""]
    return [str(b.text), ""]


def to_markdown(report: Report, folder: str) -> str:
    """The report as Markdown text whose figures are ``<folder>/<name><suffix>``.

    Parameters
    ----------
    report : Report
        The report.
    folder : str
        Relative folder of the figures (see :func:`figure_folder`).

    Returns
    -------
    str
    """
    lines = [f"# {report.title}", ""]
    lines += [f"{t}  " for t in report.subtitle] + [""]
    lines += [f"{k}. [{s.title}](#{s.key})" for k, s in enumerate(report.sections, start=1)]
    lines.append("")
    number = 0
    for k, s in enumerate(report.sections, start=1):
        lines += [f'<a id="{s.key}"></a>', "", f"## {k}. {s.title}", ""]
        equations = []
        for b in s.blocks:
            if isinstance(b, Text):
                lines += _text(b)
            elif isinstance(b, Table):
                lines += _table(b)
            elif isinstance(b, Equation):
                equations.append(b.tex)
            else:
                number += 1
                lines += [f"![{b.alt or b.caption}]({folder}/{b.name}{b.suffix})", "",
                          f"*Figure {number}. {b.caption}*", ""]
        if equations:
            lines += ["```math", "\\begin{aligned}", " \\\\\n".join(equations),
                      "\\end{aligned}", "```", ""]
    return "\n".join(lines)
