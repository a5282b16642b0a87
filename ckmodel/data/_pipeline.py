"""From typed tables to checked parts of a CKData: shared by read_ck, check_ck and from_frames."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ckmodel.data import schema as S
from ckmodel.data._records import ROW, Table, coerce_table
from ckmodel.data.checks import CheckContext, run_checks, split_covariates
from ckmodel.data.outcome_checks import check_outcomes, hsct_times
from ckmodel.errors import DatasetError, DataWarning, Problem, hint

CK_NUMERIC = S.NUMERIC_COLUMNS
CK_TEXT = S.TEXT_COLUMNS
CK_DEFAULTS = {S.EVID: 0.0, S.MDV: 0.0, S.BLQ: 0.0}
OUT_NUMERIC = S.GRADE_COLUMNS + S.FLAG_COLUMNS + S.OUTCOME_TIME_COLUMNS
OUT_TEXT = (S.ID, S.BOR)


@dataclass(frozen=True)
class Parts:
    """The frames a CKData is made of (already typed, sorted and checked)."""

    observations: pd.DataFrame
    doses: pd.DataFrame
    covariates: pd.DataFrame
    time_varying: pd.DataFrame
    outcomes: pd.DataFrame | None
    subjects: tuple[str, ...]
    analyte_units: tuple[tuple[str, str], ...]
    hsct: pd.Series


def coerce_ck(raw: pd.DataFrame, rows: np.ndarray, file: str | None,
              sources: np.ndarray | None = None) -> tuple[Table, list[Problem]]:
    """Type a CK record table (see :func:`~ckmodel.data._records.coerce_table`)."""
    return coerce_table(raw, numeric=CK_NUMERIC, text=CK_TEXT, defaults=CK_DEFAULTS, rows=rows,
                        file=file, sources=sources, covariate_exclude=(S.HSCT_TIME,))


def coerce_outcomes(raw: pd.DataFrame, rows: np.ndarray, file: str | None
                    ) -> tuple[Table, list[Problem]]:
    """Type an outcomes table."""
    return coerce_table(raw, numeric=OUT_NUMERIC, text=OUT_TEXT, defaults={}, rows=rows,
                        file=file)


def outcomes_from_frame(df: pd.DataFrame, column_map: Mapping[str, str] | str | None = None,
                        ) -> tuple[Table, list[Problem]]:
    """Type an in-memory outcomes frame (ID as a column or as the index)."""
    if S.ID not in [str(c).upper() for c in df.columns] and df.index.name is not None:
        df = df.reset_index()
    names, probs = S.standardize_header([str(c) for c in df.columns], column_map,
                                        standard=S.OUTCOME_COLUMNS, file="<outcomes>",
                                        line=None)
    raw = df.set_axis(names, axis=1).reset_index(drop=True)
    t, p2 = coerce_outcomes(raw, np.arange(1, len(raw) + 1), "<outcomes>")
    return t, probs + p2


def _single(analytes: Mapping[str, str] | Iterable[str] | None) -> str | None:
    if analytes is None:
        return None
    names = [analytes] if isinstance(analytes, str) else list(analytes)
    return str(names[0]).strip() if len(names) == 1 else None


def process(
    ck: Table,
    *,
    outcomes: Table | None = None,
    analytes: Mapping[str, str] | Iterable[str] | None = None,
    baseline: Iterable[str] = (),
    header: tuple[str, ...] = (),
    header_line: int | None = 1,
    outcome_header_line: int | None = 1,
    time_unit: str = "day",
    pre_ck: list[Problem] | None = None,
    pre_outcomes: list[Problem] | None = None,
) -> tuple[list[Problem], Parts | None]:
    """Check the tables; assemble the parts when there is no error.

    ``pre_ck`` and ``pre_outcomes`` are problems found while parsing (merged in).

    Returns
    -------
    problems : list of Problem
        Every problem found (errors and warnings), CK file first then outcomes, by line.
    parts : Parts or None
        None when any problem is an error.
    """
    registry = S.analyte_registry(analytes)
    single = _single(analytes) if S.ANALYTE not in ck.frame else None
    if single is not None:
        evid = ck.frame[S.EVID].to_numpy() if S.EVID in ck.frame else np.zeros(len(ck.frame))
        ck.frame[S.ANALYTE] = pd.Series(np.where(evid == 0, single, None), dtype="str")
        ck.present = ck.present | {S.ANALYTE}
    subjects = tuple(str(x) for x in pd.unique(ck.frame[S.ID].dropna())) \
        if S.ID in ck.frame else ()
    hsct, problems = hsct_times(ck, outcomes)
    ctx = CheckContext(ck, registry, tuple(baseline), hsct, single, header_line, header,
                       time_unit)
    ck_problems = list(pre_ck or []) + run_checks(ctx)
    out_problems = list(pre_outcomes or []) + problems
    if outcomes is not None:
        out_problems += check_outcomes(outcomes, subjects, outcome_header_line)
    problems = _ordered(ck_problems) + _ordered(out_problems)
    if any(p.severity == "error" for p in problems):
        return problems, None
    return problems, assemble(ctx, outcomes, subjects, hsct, registry)


def _ordered(problems: list[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: (p.file or "", -1 if p.row is None else p.row))


def _str(s: pd.Series | np.ndarray) -> pd.Series:
    return pd.Series(s).astype("str")


def assemble(ctx: CheckContext, outcomes: Table | None, subjects: tuple[str, ...],
             hsct: pd.Series, registry: Mapping[str, S.Analyte]) -> Parts:
    """Split a checked record table into observations, doses, covariates and outcomes."""
    f = ctx.f
    code = pd.Categorical(f[S.ID], categories=list(subjects)).codes
    evid = ctx.num(S.EVID, 0.0)
    o = f[evid == 0]
    blq = ctx.num(S.BLQ, 0.0)[evid == 0].astype(np.int64)
    h = o[S.ID].map(hsct).to_numpy(dtype=float) if len(hsct) else np.full(len(o), np.nan)
    obs = pd.DataFrame({
        S.ID: _str(o[S.ID].to_numpy()),
        S.TIME: o[S.TIME].to_numpy(dtype=float),
        S.ANALYTE: _str(o[S.ANALYTE].to_numpy()),
        S.DV: np.where(blq == 1, np.nan, o[S.DV].to_numpy(dtype=float)),
        S.LLOQ: o[S.LLOQ].to_numpy(dtype=float) if S.LLOQ in o else np.nan,
        S.BLQ: blq,
        S.MDV: ctx.num(S.MDV, 0.0)[evid == 0].astype(np.int64),
        S.MDV_REASON: _str(o[S.MDV_REASON].to_numpy() if S.MDV_REASON in o
                           else np.full(len(o), None, dtype=object)),
        "AFTER_HSCT": o[S.TIME].to_numpy(dtype=float) > h,
        "ROW": o[ROW].to_numpy(dtype=np.int64),
        "_c": code[evid == 0],
    })
    obs = obs.sort_values(["_c", S.TIME, S.ANALYTE, "ROW"], kind="mergesort")
    obs = obs.drop(columns="_c").reset_index(drop=True)
    d = f[evid == 1]
    doses = pd.DataFrame({
        S.ID: _str(d[S.ID].to_numpy()),
        S.TIME: d[S.TIME].to_numpy(dtype=float),
        S.AMT: d[S.AMT].to_numpy(dtype=float) if S.AMT in d else np.full(len(d), np.nan),
        S.CMT: _str(d[S.CMT].to_numpy() if S.CMT in d else np.full(len(d), None, dtype=object)),
        "ROW": d[ROW].to_numpy(dtype=np.int64),
        "_c": code[evid == 1],
    }).sort_values(["_c", S.TIME, "ROW"], kind="mergesort")
    doses = doses.drop(columns="_c").reset_index(drop=True)

    base, varying = split_covariates(ctx.table)
    cov = f.groupby(S.ID, sort=False)[base].first().reindex(list(subjects))
    cov.index = pd.Index(list(subjects), dtype="str", name=S.ID)
    cov = _text_to_str(cov)
    tv = f.loc[np.isin(evid, (0, 1)), [S.ID, S.TIME, S.EVID, S.ANALYTE, *varying, ROW]].copy()
    tv[S.EVID] = tv[S.EVID].astype(np.int64)
    tv[S.ANALYTE] = tv[S.ANALYTE].where(tv[S.EVID] == 0, None)
    tv["_c"] = code[np.isin(evid, (0, 1))]
    tv = tv.sort_values(["_c", S.TIME, S.EVID, S.ANALYTE, ROW], kind="mergesort")
    tv = tv.drop(columns=["_c", ROW]).reset_index(drop=True)
    tv[S.ID], tv[S.ANALYTE] = _str(tv[S.ID].to_numpy()), _str(tv[S.ANALYTE].to_numpy())
    tv = _text_to_str(tv) if varying else tv.iloc[:0]

    out = None
    if outcomes is not None:
        of = outcomes.frame.drop(columns=ROW)
        of.index = pd.Index(of.pop(S.ID).to_numpy(), dtype="str", name=S.ID)
        out = _text_to_str(of)
    seen = set(obs[S.ANALYTE].unique())
    present = [a for a in registry if a in seen]
    units = tuple((a, registry[a].unit) for a in present)
    hs = hsct[hsct.index.isin(list(subjects))].astype(float) if len(hsct) else hsct
    hs.index = pd.Index([str(i) for i in hs.index], dtype="str", name=S.ID)
    return Parts(obs, doses, cov, tv, out, subjects, units, hs.rename(S.HSCT_TIME))


def _text_to_str(df: pd.DataFrame) -> pd.DataFrame:
    for c in df.columns:
        if df[c].dtype == object:
            df[c] = df[c].astype("str")
    return df


def finish(problems: list[Problem], parts: Parts | None, file: str | None, *, stacklevel: int
           ) -> tuple[Parts, tuple[Problem, ...]]:
    """Raise DatasetError on errors; warn once (DataWarning) summarising the warnings."""
    if parts is None:
        raise DatasetError(problems, file=file)
    warns = tuple(p for p in problems if p.severity != "error")
    if warns:
        counts = pd.Series([p.rule for p in warns]).value_counts()
        what = "; ".join(f"{n} x {rule}" for rule, n in counts.items())
        warnings.warn(f"{len(warns)} data warning(s){f' in {file}' if file else ''} "
                      f"(records kept, flagged): {what}. First: {warns[0]}. " + hint(
                          python="See CKData.problems for the full list.",
                          cli="'ckmodel check' lists them all."),
                      DataWarning, stacklevel=stacklevel)
    return parts, warns
