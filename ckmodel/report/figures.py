"""Figures as deterministic image bytes for the report, and the model's equations as MathML.

Matplotlib figures become PNG (no ``Software`` metadata), so the same fit and seed give the
same bytes. Equations come from :meth:`ModelSpec.to_latex <ckmodel.spec.ModelSpec.to_latex>`
and are converted to MathML by ``latex2mathml`` (pure Python, no TeX installation), which
browsers typeset natively: no network (no MathJax) is needed to write or to read the report.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ckmodel.report.document import Equation, FigureBlock
from ckmodel.report.drawing import active_renderer

if TYPE_CHECKING:  # pragma: no cover
    from ckmodel.spec.model import ModelSpec

__all__ = ["figure_block", "equation_blocks", "equation_rows", "deterministic_rc", "DPI",
           "draw_png"]

#: Resolution of report figures (dots per inch): sharp on screen, a few hundred kB each.
DPI = 80


@contextmanager
def deterministic_rc() -> Iterator[None]:
    """Matplotlib settings under which figure bytes depend only on the figure."""
    import matplotlib

    with matplotlib.rc_context({"path.simplify": True}):
        yield


def draw_png(fig: Any, dpi: int) -> bytes:
    """The figure as PNG bytes at ``dpi``, deterministic (no ``Software`` metadata)."""
    buf = io.BytesIO()
    with deterministic_rc():
        fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


def figure_block(fig: Any, name: str, *, caption: str, dpi: int = DPI, alt: str = "",
                 close: bool = True) -> FigureBlock:
    """Render a matplotlib figure to a PNG :class:`FigureBlock` (and close it).

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure.
    name : str
        Its name in the report (``gof``, ``vpc-PB_QPCR``).
    caption : str
        What it shows.

    Other Parameters
    ----------------
    dpi : int
        Resolution.
    alt : str
        Alternative text (default the caption).
    close : bool
        Close the figure after rendering (frees its memory). Inside
        :func:`~ckmodel.report.drawing.background_rendering` a figure to close is drawn by a
        worker process and the block's ``data`` stay empty until the renderer resolves it.

    Returns
    -------
    FigureBlock
        Width in CSS pixels: the figure's width at 80 dpi, so text stays readable when the
        browser scales it to the page.
    """
    width = int(round(fig.get_size_inches()[0] * 80))
    # inside background_rendering a worker process draws it and closes it later (the data
    # are filled in by Renderer.resolve); a figure the caller keeps is drawn here
    renderer = active_renderer()
    if close and renderer is not None and renderer.submit(fig, name, dpi):
        return FigureBlock(name=name, data=b"", mime="image/png", caption=caption,
                           alt=alt or caption, width=width)
    data = draw_png(fig, dpi)
    if close:
        import matplotlib.pyplot as plt

        plt.close(fig)
    return FigureBlock(name=name, data=data, mime="image/png", caption=caption,
                       alt=alt or caption, width=width)


def equation_rows(spec: ModelSpec) -> list[tuple[str, str]]:
    """The rows of the spec's LaTeX ``aligned`` block as ``(group, equation)`` pairs.

    Groups are ``"ode"`` (``dX/dt = ...``), ``"dose"`` (``X(0+) = ...``), ``"solution"`` (the
    closed form ``X(t) = ...``) and ``"output"`` (analyte = ...); ``&=`` becomes ``=``.
    """
    tex = spec.to_latex().strip()
    body = tex.removeprefix("\\begin{aligned}").removesuffix("\\end{aligned}").strip()
    rows = []
    for row in body.split("\\\\\n"):
        eq = " ".join(row.split()).replace("&=", "=").strip()
        if not eq:
            continue
        lhs = eq.split("=", 1)[0]
        group = ("ode" if lhs.startswith("\\frac{d") else "dose" if "(0^+)" in lhs
                 else "solution" if lhs.rstrip().endswith("(t)") else "output")
        rows.append((group, eq))
    return rows


def equation_blocks(spec: ModelSpec) -> list[tuple[str, Equation]]:
    """Each equation of ``spec`` as TeX and MathML, with its group (see :func:`equation_rows`).

    MathML is typeset by the browser itself (offline, selectable, sharp at any zoom) and
    costs nothing to draw. An equation that does not convert is skipped here; the report
    also prints every equation as the model file writes it, so nothing is lost.

    Returns
    -------
    list of (str, Equation)
        Group and block; blocks are named ``eq-<k>``.
    """
    from latex2mathml.converter import convert

    out = []
    for k, (group, tex) in enumerate(equation_rows(spec), start=1):
        try:
            # inline in a block of its own (a centred display block would not line up
            # with the text), typeset as a display equation: full-size fractions
            mathml = convert(tex, display="inline").replace(
                'display="inline"', 'display="inline" displaystyle="true"', 1)
            out.append((group, Equation(name=f"eq-{k}", tex=tex, mathml=mathml)))
        except Exception:  # noqa: BLE001 - the converter raises many types on what it lacks
            continue
    return out
