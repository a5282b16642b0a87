"""Rules for the subject-level outcomes table (DESIGN.md section 3).

All outcome columns are optional except ID. Grades are integers 0-5, flags and event indicators
are 0/1, BOR is one of :data:`~ckmodel.data.schema.BOR_CATEGORIES` (case-sensitive), times are
>= 0 in the CK file's ``time_unit``, and an event flag comes with its time. Other columns are kept
as they are. Outcome IDs that are not in the CK data are warnings (kept).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

import numpy as np
import pandas as pd

from ckmodel.data import schema as S
from ckmodel.data._records import ROW, Table
from ckmodel.errors import Problem

__all__ = ["OUTCOME_RULES", "check_outcomes", "hsct_times"]

OutcomeRule = Callable[[Table, tuple[str, ...], "int | None"], list[Problem]]


def _num(t: Table, col: str) -> np.ndarray:
    return t.frame[col].to_numpy(dtype=float)


def id_column(t: Table, subjects: tuple[str, ...], header_line: int | None) -> list[Problem]:
    """ID present, filled, unique; IDs known to the CK data (warning otherwise)."""
    f = t.frame
    if S.ID not in f:
        return [Problem("the outcomes table needs an ID column (the subject IDs of the CK "
                        "file); rename it or pass column_map={'your_name': 'ID'}",
                        file=t.file, row=header_line, column=S.ID, rule="missing_column")]
    out = t.problems(t.missing(S.ID), "missing_value", "ID is empty; every outcome row needs "
                     "the subject ID", column=S.ID)
    ids = f[S.ID]
    dup = (ids.notna() & ids.duplicated(keep="first")).to_numpy()
    out += t.problems(dup, "duplicate_subject", "subject appears more than once in the "
                      "outcomes table; keep one row per subject", column=S.ID)
    if subjects:
        unknown = (ids.notna() & ~ids.isin(list(subjects))).to_numpy()
        out += t.problems(unknown, "unknown_subject",
                          "subject is not in the CK data (IDs are compared as text, so '01' and "
                          "'1' differ); the row is kept but has no CK records",
                          column=S.ID, severity="warning")
    return out


def value_ranges(t: Table, subjects: tuple[str, ...], header_line: int | None) -> list[Problem]:
    """Grades 0-5 integers, flags 0/1, BOR in the list, times >= 0."""
    f, out = t.frame, []
    for col in S.GRADE_COLUMNS:
        if col in f:
            v = _num(t, col)
            bad = ~np.isnan(v) & ((v != np.round(v)) | (v < 0) | (v > 5))
            out += t.problems(bad, "grade_value", f"{col}={{value}} must be an integer grade "
                              "0-5 (ASTCT consensus grading)", column=col, values={"value": col})
    for col in S.FLAG_COLUMNS:
        if col in f:
            v = _num(t, col)
            out += t.problems(~np.isnan(v) & ~np.isin(v, (0, 1)), "flag_value",
                              f"{col}={{value}} must be 0 or 1", column=col,
                              values={"value": col})
    for col in S.OUTCOME_TIME_COLUMNS:
        if col in f:
            out += t.problems(_num(t, col) < 0, "negative_time",
                              f"{col}={{value}} is negative; outcome times are measured from "
                              "infusion, in the CK file's time unit", column=col,
                              values={"value": col})
    if S.BOR in f:
        bor = f[S.BOR]
        bad = bor.notna() & ~bor.isin(list(S.BOR_CATEGORIES))
        for i in np.flatnonzero(bad.to_numpy()):
            val = str(bor.iat[i])
            close = difflib.get_close_matches(val, S.BOR_CATEGORIES, n=1, cutoff=0.5)
            hint = f" (did you mean {close[0]}?)" if close else ""
            out.append(Problem(
                f"BOR={val!r} is not a response category{hint}; use one of "
                f"{', '.join(S.BOR_CATEGORIES)}", file=t.where(i), row=int(f[ROW].iat[i]),
                column=S.BOR, subject=_sid(f, i), rule="bor_value"))
    return out


def event_pairs(t: Table, subjects: tuple[str, ...], header_line: int | None) -> list[Problem]:
    """An event flag and its time go together (both given or both missing)."""
    f, out = t.frame, []
    for tcol, ecol in S.EVENT_TIME_PAIRS:
        if tcol in f and ecol in f:
            tm, ev = t.missing(tcol), t.missing(ecol)
            out += t.problems(tm & ~ev, "event_without_time", f"{ecol} is given but {tcol} is "
                              f"missing; give the event or censoring time", column=tcol)
            out += t.problems(ev & ~tm, "time_without_event", f"{tcol} is given but {ecol} is "
                              "missing; give 1 (event) or 0 (censored)", column=ecol)
        elif (tcol in f) != (ecol in f):
            have, lack = (tcol, ecol) if tcol in f else (ecol, tcol)
            out.append(Problem(f"column {have} needs its partner column {lack}",
                               file=t.file, row=header_line, column=lack, rule="missing_column"))
    return out


def _sid(f: pd.DataFrame, i: int) -> str | None:
    if S.ID not in f:
        return None
    v = f[S.ID].iat[i]
    return None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)


OUTCOME_RULES: tuple[OutcomeRule, ...] = (id_column, value_ranges, event_pairs)


def check_outcomes(t: Table, subjects: tuple[str, ...], header_line: int | None = 1
                   ) -> list[Problem]:
    """Run every outcome rule.

    Parameters
    ----------
    t : Table
        Typed outcomes table.
    subjects : tuple of str
        Subject IDs of the CK data (empty to skip the cross-check).
    header_line : int, optional
        Line of the header in the outcomes file.

    Returns
    -------
    list of Problem
    """
    out: list[Problem] = []
    for rule in OUTCOME_RULES:
        out += rule(t, subjects, header_line)
    return out


def hsct_times(ck: Table, outcomes: Table | None) -> tuple[pd.Series, list[Problem]]:
    """Per-subject HSCT time from the CK file's HSCT_TIME column and/or the outcomes table.

    Returns
    -------
    hsct : pandas.Series
        Time of allo-HSCT by subject ID (float, NaN where none).
    problems : list of Problem
        ``hsct_mismatch`` errors where both sources give different times.
    """
    parts = []
    if S.HSCT_TIME in ck.frame and S.ID in ck.frame:
        parts.append(ck.frame.groupby(S.ID, sort=False)[S.HSCT_TIME].first())
    problems: list[Problem] = []
    if outcomes is not None and S.HSCT_TIME in outcomes.frame and S.ID in outcomes.frame:
        of = outcomes.frame.dropna(subset=[S.ID]).drop_duplicates(S.ID)
        oh = pd.Series(of[S.HSCT_TIME].to_numpy(dtype=float), index=of[S.ID].to_numpy())
        if parts:
            ck_h = parts[0].reindex(oh.index)
            bad = (ck_h.notna() & oh.notna() & (ck_h != oh)).to_numpy()
            tt = Table(of.assign(_CK=ck_h.to_numpy()).reset_index(drop=True), outcomes.file,
                       outcomes.present)
            problems += tt.problems(bad, "hsct_mismatch", "HSCT_TIME={value} here but {ck} in "
                                    "the CK file; make the two agree", column=S.HSCT_TIME,
                                    values={"value": S.HSCT_TIME, "ck": "_CK"})
        parts.append(oh)
    if not parts:
        return pd.Series(dtype=float), problems
    h = parts[0] if len(parts) == 1 else parts[0].combine_first(parts[1])
    return h.astype(float), problems
