"""Typed record tables: text cells to numbers and strings, with every unparsable cell reported.

Both :func:`ckmodel.data.read_ck` (text from a file) and :meth:`CKData.from_frames` (frames built
in memory) go through :func:`coerce_table`, so the same checks see the same kind of table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ckmodel.data import schema as S
from ckmodel.errors import Problem

ROW = "_ROW"  # internal column: 1-based source line (or frame row) of each record
_LEADING_ZERO = re.compile(r"^[+-]?0\d")


@dataclass
class Table:
    """A typed table plus what is needed to point at its cells.

    ``frame`` holds the standard columns that were present (numbers as float64 with NaN,
    text as object with None), covariates, and ``_ROW``. ``bad`` marks cells that held a
    value that is not a number (already reported), so rules do not report them again as
    missing.
    """

    frame: pd.DataFrame
    file: str | None
    present: frozenset[str]
    bad: dict[str, np.ndarray] = field(default_factory=dict)
    covariates: tuple[str, ...] = ()
    sources: np.ndarray | None = None  # per-row file label when rows come from several frames

    def where(self, i: int) -> str | None:
        """File label of row ``i``."""
        return self.file if self.sources is None else str(self.sources[i])

    def missing(self, col: str) -> np.ndarray:
        """Cells that are truly missing (not unparsable)."""
        if col not in self.frame:
            return np.ones(len(self.frame), dtype=bool)
        na = self.frame[col].isna().to_numpy()
        bad = self.bad.get(col)
        return na if bad is None else na & ~bad

    def problems(self, mask: np.ndarray, rule: str, message: str, *, column: str | None,
                 severity: str = "error", values: dict[str, str] | None = None) -> list[Problem]:
        """One problem per row where ``mask`` holds.

        ``message`` may use ``{name}`` fields; each is filled from column ``values[name]`` of the
        offending row (e.g. ``{"value": "DV"}``).
        """
        idx = np.flatnonzero(np.asarray(mask, dtype=bool))
        if idx.size == 0:
            return []
        rows = self.frame[ROW].to_numpy()
        ids = self.frame[S.ID].to_numpy() if S.ID in self.frame else np.full(len(rows), None)
        cols = {k: self.frame[v].to_numpy() if v in self.frame else None
                for k, v in (values or {}).items()}
        out = []
        for i in idx:
            msg = message
            if cols:
                msg = message.format(**{k: _show(c[i] if c is not None else None)
                                        for k, c in cols.items()})
            out.append(Problem(msg, file=self.where(i), row=_int_or_none(rows[i]), column=column,
                               subject=_text_or_none(ids[i]), rule=rule, severity=severity))
        return out


def _show(v: object) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "missing"
    if isinstance(v, float | np.floating) and float(v).is_integer():
        return str(int(v))
    return str(v)


def _int_or_none(v: object) -> int | None:
    try:
        return None if v is None or pd.isna(v) else int(v)
    except (TypeError, ValueError):
        return None


def _text_or_none(v: object) -> str | None:
    return None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)


def text_missing(s: pd.Series) -> np.ndarray:
    """Cells that mean missing: NaN/None or a missing token (``.`` or empty)."""
    if pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
        return s.isna().to_numpy()
    na = s.isna().to_numpy()
    txt = _as_str(s).str.strip()
    return na | txt.isin(S.MISSING_TOKENS).to_numpy(dtype=bool, na_value=True)


def _as_str(s: pd.Series) -> pd.Series:
    """Text view of a column (pandas string dtype; missing stays missing)."""
    if isinstance(s.dtype, pd.StringDtype):
        return s
    if s.dtype == object and s.map(type).isin((float, np.float64)).any():
        s = s.map(_text_cell)  # from frames: render integral floats (IDs 1.0) as "1"
    return s.astype("str")


def to_number(s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Parse a column to float64.

    Returns
    -------
    values : numpy.ndarray
        float64, NaN where missing or unparsable.
    bad : numpy.ndarray
        bool, True where a cell held something that is not a finite number.
    """
    if pd.api.types.is_bool_dtype(s):
        s = s.astype(float)
    if pd.api.types.is_numeric_dtype(s):
        vals = s.to_numpy(dtype=float, na_value=np.nan)
        bad = np.isinf(vals)
        vals = np.where(bad, np.nan, vals)
        return vals, bad
    missing = text_missing(s)
    st = _as_str(s).str.strip().where(~missing)
    try:
        vals = pd.to_numeric(st, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    except (TypeError, ValueError, OverflowError):
        vals = np.array([_safe_float(x) for x in st], dtype=float)
    bad = ~missing & ~np.isfinite(vals)
    vals = np.where(np.isfinite(vals), vals, np.nan)
    return vals, bad


def _safe_float(x: object) -> float:
    try:
        return float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return np.nan


def to_text(s: pd.Series) -> pd.Series:
    """Stripped text (pandas ``str`` dtype); missing tokens become missing (NaN)."""
    missing = text_missing(s)
    if pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
        s = s.astype(object).map(_text_cell)
    out = _as_str(s).str.strip()
    return out.where(~missing)


def _text_cell(x: object) -> object:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return None
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    return str(x).strip()


def to_covariate(s: pd.Series) -> pd.Series:
    """Type a covariate column.

    Numeric when every present value is a finite number (and none has a leading zero, which
    marks a code such as site ``001``); int64 when also integral with nothing missing; else text.
    """
    if pd.api.types.is_bool_dtype(s):
        return s.astype(np.int64)
    vals, bad = to_number(s)
    missing = text_missing(s)
    present = ~missing
    if bad.any():
        return to_text(s)
    if not pd.api.types.is_numeric_dtype(s):
        txt = _as_str(s)[present].str.strip()
        if txt.str.match(_LEADING_ZERO).any():
            return to_text(s)
    if present.all() and present.any() and np.all(vals == np.round(vals)) \
            and np.all(np.abs(vals) < 2**53):
        return pd.Series(vals.astype(np.int64), index=s.index, name=s.name)
    return pd.Series(vals, index=s.index, name=s.name)


def coerce_table(
    raw: pd.DataFrame,
    *,
    numeric: tuple[str, ...],
    text: tuple[str, ...],
    defaults: dict[str, float],
    rows: np.ndarray,
    file: str | None,
    sources: np.ndarray | None = None,
    covariate_exclude: tuple[str, ...] = (),
) -> tuple[Table, list[Problem]]:
    """Type the columns of ``raw`` by role and report every cell that is not a number.

    Parameters
    ----------
    raw : pandas.DataFrame
        Standard-named columns holding text (from a file) or values (from frames).
    numeric, text : tuple of str
        Role columns parsed as float64 / stripped text.
    defaults : dict of str to float
        Value used for a missing cell of a role column (NONMEM defaults: EVID, MDV, BLQ = 0).
    rows : numpy.ndarray
        1-based source line of each row.
    file : str, optional
        File label for problems.
    sources : numpy.ndarray, optional
        Per-row file label overriding ``file``.
    covariate_exclude : tuple of str
        Non-role columns that are not covariates (typed as numbers, e.g. HSCT_TIME).

    Returns
    -------
    table : Table
    problems : list of Problem
        ``non_numeric`` errors, one per cell.
    """
    raw = raw.reset_index(drop=True)
    cols: dict[str, object] = {ROW: np.asarray(rows, dtype=np.int64)}
    bad_masks: dict[str, np.ndarray] = {}
    present = frozenset(c for c in raw.columns if c in numeric or c in text
                        or c in covariate_exclude)
    covs = []
    for c in raw.columns:
        if c == ROW:
            continue
        if c in numeric or c in covariate_exclude:
            vals, bad = to_number(raw[c])
            if c in defaults:
                vals = np.where(np.isnan(vals) & ~bad, defaults[c], vals)
            cols[c] = vals
            bad_masks[c] = bad
        elif c in text:
            cols[c] = to_text(raw[c])
        else:
            cols[c] = to_covariate(raw[c])
            covs.append(c)
    frame = pd.DataFrame(cols, index=pd.RangeIndex(len(raw)))
    table = Table(frame, file, present, bad_masks, tuple(covs), sources)
    problems: list[Problem] = []
    for c, bad in bad_masks.items():
        if bad.any():
            tmp = pd.DataFrame({ROW: frame[ROW], "_v": raw[c].astype(object)})
            if S.ID in frame:
                tmp[S.ID] = frame[S.ID]
            sub = Table(tmp, file, present, sources=sources)
            problems += sub.problems(
                bad, "non_numeric",
                f"{c} must be a finite number but is '{{value}}'; use '.' or leave the cell empty "
                "for a missing value", column=c, values={"value": "_v"})
    return table, problems
