"""The report as plain data: sections of paragraphs, tables and figures, before any format.

:mod:`ckmodel.report.sections` builds a :class:`Report` from a fit;
:mod:`ckmodel.report.html` and :mod:`ckmodel.report.markdown` write it. Keeping the content
format-free means the HTML and Markdown reports say the same thing, and a test can read the
sections and figures of a report without parsing either.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

__all__ = ["Text", "Table", "FigureBlock", "Equation", "Section", "Report", "Block",
           "as_blocks", "is_safe_mathml"]


@dataclass(frozen=True)
class Text:
    """A paragraph, a list, a preformatted block or a coloured notice.

    Attributes
    ----------
    text : str or sequence of str
        The words (plain text, escaped when written); a sequence for ``kind="list"``.
    kind : {"p", "list", "pre", "ok", "alert", "note"}
        Paragraph, bullet list, preformatted (monospace) text, a passed verdict, a problem
        to read first, or a side note.
    """

    text: str | Sequence[str]
    kind: str = "p"

    def __post_init__(self) -> None:
        if self.kind not in ("p", "list", "pre", "ok", "alert", "note"):
            raise ValueError(f"unknown text kind {self.kind!r}")


@dataclass(frozen=True)
class Table:
    """A table with a caption; numbers are formatted with ``float_format`` when written.

    Attributes
    ----------
    frame : pandas.DataFrame
        The table; its index is written when ``index`` is True.
    caption : str
        What the table shows (units belong in the column names or a unit column).
    index : bool
        Write the index as the first column.
    float_format : str
        Format of float cells (``"{:.4g}"``); NaN cells are written empty.
    """

    frame: pd.DataFrame
    caption: str = ""
    index: bool = False
    float_format: str = "{:.4g}"

    def cells(self) -> tuple[list[str], list[list[str]]]:
        """Header and body cells as text (NaN empty, floats with :attr:`float_format`)."""
        df = self.frame.reset_index() if self.index else self.frame
        header = [str(c) for c in df.columns]
        body = [[_cell(v, self.float_format) for v in row]
                for row in df.itertuples(index=False, name=None)]
        return header, body


def _cell(v: Any, fmt: str) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return "" if v != v else fmt.format(v)
    try:
        if pd.isna(v):
            return ""
    except (TypeError, ValueError):
        pass
    if hasattr(v, "dtype") and getattr(v.dtype, "kind", "") == "f":
        return fmt.format(float(v))
    return str(v)


@dataclass(frozen=True)
class FigureBlock:
    """A rendered figure: image bytes, their MIME type and a caption.

    Attributes
    ----------
    name : str
        Identifier, unique within the report (``gof``, ``vpc-PB_QPCR``); the HTML id
        is ``fig-<name>`` and the Markdown variant writes ``<name>.png`` / ``.svg``.
    data : bytes
        The image (PNG or SVG), deterministic for the same figure.
    mime : {"image/png", "image/svg+xml"}
        Its type.
    caption : str
        What the figure shows.
    alt : str
        Alternative text (default the caption).
    width : int or None
        Display width in CSS pixels (default: the image's own width, at most the page's).
    """

    name: str
    data: bytes
    mime: str
    caption: str = ""
    alt: str = ""
    width: int | None = None

    @property
    def suffix(self) -> str:
        """File suffix of the image (``.png`` or ``.svg``)."""
        return ".svg" if self.mime == "image/svg+xml" else ".png"


@dataclass(frozen=True)
class Equation:
    """An equation of the model, as TeX and as MathML (text, not an image).

    Attributes
    ----------
    name : str
        Identifier, unique within the report (``eq-3``); the HTML id.
    tex : str
        The equation in TeX (what the Markdown report writes in its ``math`` block).
    mathml : str
        The same as one MathML ``<math>`` element (what the HTML report writes; browsers
        typeset it natively, offline).
    """

    name: str
    tex: str
    mathml: str

    def __post_init__(self) -> None:
        if not is_safe_mathml(self.mathml):
            raise ValueError(f"equation {self.name}: not one well-formed MathML <math> element "
                             "of MathML elements without links or event handlers")


_MATHML_NS = "{http://www.w3.org/1998/Math/MathML}"
#: Presentation MathML elements an equation may use. Not ``annotation-xml``, nor anything
#: else: inside ``<mi>``, ``<mo>`` or ``<mtext>`` an HTML parser reads HTML again, so an
#: element outside this list (``<script>``) would be HTML there.
_MATHML_ELEMENTS = frozenset(
    "math mrow mi mn mo ms mtext mspace mfrac msqrt mroot mstyle merror mpadded mphantom "
    "mfenced menclose msub msup msubsup munder mover munderover mmultiscripts mprescripts "
    "none mtable mtr mtd".split())


def is_safe_mathml(text: str) -> bool:
    """Whether ``text`` is one well-formed ``<math>`` element that can go into HTML as is.

    Every element must be a presentation MathML element in the MathML namespace, and no
    attribute may be an event handler (``on...``), a link (``href``, ``src``) or a style; so
    an equation block cannot carry script, links or markup into the report.
    """
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        return False
    if root.tag != f"{_MATHML_NS}math":
        return False
    for el in root.iter():
        tag = str(el.tag)
        if not tag.startswith(_MATHML_NS) or tag[len(_MATHML_NS):] not in _MATHML_ELEMENTS:
            return False
        for attr in el.attrib:
            local = attr.rsplit("}", 1)[-1].lower()
            if local.startswith("on") or local in ("href", "src", "style"):
                return False
    return True


Block = Text | Table | FigureBlock | Equation


@dataclass(frozen=True)
class Section:
    """A numbered section of the report.

    Attributes
    ----------
    key : str
        Identifier (``verdict``, ``data``, ``nca`` ...); the HTML anchor.
    title : str
        Heading.
    blocks : tuple of Block
        Content, in order.
    """

    key: str
    title: str
    blocks: tuple[Block, ...] = ()

    @property
    def figures(self) -> list[FigureBlock]:
        """The section's figures."""
        return [b for b in self.blocks if isinstance(b, FigureBlock)]


@dataclass(frozen=True)
class Report:
    """A whole report: title, lines under it, sections in order, and provenance.

    Attributes
    ----------
    title : str
        Report title.
    subtitle : sequence of str
        Lines under the title (model, data file, sampler ...).
    sections : tuple of Section
        In reading order; the convergence verdict first.
    meta : dict
        Seed, replicates and versions used to build it (written in the last section too).
    """

    title: str
    subtitle: tuple[str, ...]
    sections: tuple[Section, ...]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def figures(self) -> list[FigureBlock]:
        """Every figure of the report, in order."""
        return [f for s in self.sections for f in s.figures]

    def section(self, key: str) -> Section:
        """The section with ``key``."""
        for s in self.sections:
            if s.key == key:
                return s
        raise KeyError(f"no section {key!r}; the report has {[s.key for s in self.sections]}")


def as_blocks(content: Any, *, name: str) -> tuple[Block, ...]:
    """Turn user-given section content into blocks (the ``extra`` hook of the report).

    Parameters
    ----------
    content : str, pandas.DataFrame, matplotlib Figure, Block, Section or a sequence of these
        A string becomes a paragraph, a DataFrame a table, a matplotlib figure a PNG figure
        named ``<name>-<k>``; blocks pass through; a Section gives its blocks.
    name : str
        Prefix of the names of figures made here.

    Returns
    -------
    tuple of Block
    """
    from ckmodel.report.figures import figure_block

    if isinstance(content, Section):
        return content.blocks
    items = list(content) if isinstance(content, list | tuple) else [content]
    out: list[Block] = []
    for k, item in enumerate(items):
        if isinstance(item, Text | Table | FigureBlock | Equation):
            out.append(item)
        elif isinstance(item, str):
            out.append(Text(item))
        elif isinstance(item, pd.DataFrame):
            out.append(Table(item, index=not isinstance(item.index, pd.RangeIndex)))
        elif hasattr(item, "savefig"):
            out.append(figure_block(item, f"{name}-{k + 1}", caption=""))
        else:
            raise TypeError(f"cannot put a {type(item).__name__} into the report section "
                            f"{name!r}: give text, a DataFrame, a matplotlib figure or "
                            "ckmodel.report blocks")
    return tuple(out)
