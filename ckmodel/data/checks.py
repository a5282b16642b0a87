"""Rules that check a CK record table; each returns every violation it finds.

Each rule is a small function ``rule(ctx) -> list[Problem]`` over a :class:`CheckContext`. The
rules are vectorised with pandas/NumPy; Python loops run only over offending rows, to build
their :class:`~ckmodel.errors.Problem`. Every problem names the file, the 1-based line of the
record (header = line 1, comment lines counted), the column, the subject, and what to do.

Decisions
---------
* ID, TIME and DV are required columns. ANALYTE is required too, unless the caller names exactly
  one analyte with ``analytes=[...]``: then every observation is taken to measure that analyte.
* EVID, MDV, BLQ default to 0 where the column or the cell is missing (NONMEM convention).
* Negative TIME is an error, except on an observation with MDV=1 (a kept, excluded pre-infusion
  sample).
* Duplicates are observations (EVID=0, MDV=0) with the same ID, TIME and ANALYTE. A replicate
  excluded with MDV=1 is not a duplicate.
* A covariate named in ``baseline_covariates`` (and HSCT_TIME in the CK file) must be constant
  within each subject (error). Any other covariate that is constant within at least
  :data:`BASELINE_FRACTION` of the subjects with two or more values, but varies in a few, gets a
  warning per varying subject (a likely typo); it is then treated as time-varying.
* Records after allo-HSCT are warnings: flagged (``AFTER_HSCT``) and kept.
* CMT of doses is not checked against a model here (no model is known yet); the model spec
  does that at fit time. Subjects with doses but no observations are allowed.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ckmodel.data import schema as S
from ckmodel.data._records import ROW, Table
from ckmodel.errors import Problem, hint

__all__ = ["CheckContext", "CK_RULES", "BASELINE_FRACTION", "run_checks", "split_covariates"]

#: A covariate constant in at least this fraction of informative subjects looks like a baseline
#: covariate; the subjects where it varies are warned about.
BASELINE_FRACTION = 0.8


@dataclass
class CheckContext:
    """Everything a CK rule may look at."""

    table: Table
    analytes: Mapping[str, S.Analyte]
    baseline: tuple[str, ...] = ()
    hsct: pd.Series = field(default_factory=lambda: pd.Series(dtype=float))
    single_analyte: str | None = None
    header_line: int | None = 1
    header: tuple[str, ...] = ()
    time_unit: str = "day"

    @property
    def f(self) -> pd.DataFrame:
        """The typed record frame."""
        return self.table.frame

    def num(self, col: str, fill: float = np.nan) -> np.ndarray:
        """Column as float array (``fill`` when the column is absent)."""
        if col in self.f:
            return self.f[col].to_numpy(dtype=float)
        return np.full(len(self.f), fill)

    def header_problem(self, message: str, column: str | None, rule: str,
                       severity: str = "error") -> Problem:
        """A problem about the file as a whole, pointing at the header line."""
        return Problem(message, file=self.table.file, row=self.header_line, column=column,
                       rule=rule, severity=severity)


Rule = Callable[[CheckContext], list[Problem]]


def _is_obs(ctx: CheckContext) -> np.ndarray:
    return ctx.num(S.EVID, 0.0) == 0


def _is_dose(ctx: CheckContext) -> np.ndarray:
    return ctx.num(S.EVID, 0.0) == 1


def no_records(ctx: CheckContext) -> list[Problem]:
    """The file has a header but no data records."""
    if len(ctx.f):
        return []
    return [ctx.header_problem("the file has no data records below the header", None,
                               "no_records")]


def required_columns(ctx: CheckContext) -> list[Problem]:
    """ID, TIME, DV (and ANALYTE, AMT when needed) must be present."""
    present, out = ctx.table.present, []
    extra = ""
    if len(ctx.header) == 1 and any(sep in ctx.header[0] for sep in ";\t|"):
        extra = " The header is a single field: the file must be comma-separated."
    have = ", ".join(ctx.header) if ctx.header else "nothing"
    for col in S.REQUIRED_COLUMNS:
        if col not in present:
            out.append(ctx.header_problem(
                f"required column {col} is missing (the header has: {have}); rename your "
                f"column to {col} or pass "
                + hint(python=f"column_map={{'your_name': '{col}'}}",
                       cli=f"--column-map your_name={col}") + f".{extra}",
                col, "missing_column"))
    if S.ANALYTE not in present and ctx.single_analyte is None:
        out.append(ctx.header_problem(
            f"column ANALYTE is missing; add it (one of {', '.join(ctx.analytes)}), or if every "
            "observation measures the same analyte pass "
            + hint(python="analytes=['NAME'] with that one name",
                   cli="--units NAME=UNIT with that one name"),
            S.ANALYTE, "missing_column"))
    if S.AMT not in present and _is_dose(ctx).any():
        out.append(ctx.header_problem(
            "column AMT is missing but the file has dose records (EVID=1); add AMT (the dose, "
            "e.g. in 1e6 CAR+ T cells/kg)", S.AMT, "missing_column"))
    return out


def required_values(ctx: CheckContext) -> list[Problem]:
    """Every record needs an ID and a TIME."""
    t, out = ctx.table, []
    if S.ID in ctx.f:
        out += t.problems(t.missing(S.ID), "missing_value",
                          "ID is empty; every record needs a subject ID", column=S.ID)
    if S.TIME in ctx.f:
        out += t.problems(t.missing(S.TIME), "missing_value",
                          f"TIME is empty; every record needs a time ({ctx.time_unit}s since "
                          "infusion)", column=S.TIME)
    return out


def _not_in(ctx: CheckContext, col: str, allowed: tuple[float, ...]) -> np.ndarray:
    v = ctx.num(col)
    return ~np.isnan(v) & ~np.isin(v, allowed)


def flag_values(ctx: CheckContext) -> list[Problem]:
    """EVID must be 0/1 (others unsupported); BLQ and MDV must be 0/1."""
    t = ctx.table
    out = t.problems(_not_in(ctx, S.EVID, (0, 1)), "evid_value",
                     "EVID={value} is not supported yet: only 0 (observation) and 1 (dose) are; "
                     "remove or convert NONMEM EVID 2/3/4 records", column=S.EVID,
                     values={"value": S.EVID})
    for col, what in ((S.BLQ, "1 when the sample is below LLOQ, else 0"),
                      (S.MDV, "1 to exclude the record, else 0")):
        out += t.problems(_not_in(ctx, col, (0, 1)), f"{col.lower()}_value",
                          f"{col}={{value}} must be 0 or 1 ({what})", column=col,
                          values={"value": col})
    return out


def negative_time(ctx: CheckContext) -> list[Problem]:
    """TIME < 0, except on excluded (MDV=1) observations."""
    mask = (ctx.num(S.TIME) < 0) & ~(_is_obs(ctx) & (ctx.num(S.MDV, 0.0) == 1))
    return ctx.table.problems(
        mask, "negative_time",
        "TIME={value} is negative but TIME is time since infusion; shift the times so the "
        "infusion is at 0, or set MDV=1 (with MDV_REASON) to keep a pre-infusion sample excluded",
        column=S.TIME, values={"value": S.TIME})


def dose_amount(ctx: CheckContext) -> list[Problem]:
    """Doses need AMT > 0; observations must not carry a dose amount."""
    t, amt = ctx.table, ctx.num(S.AMT)
    if S.AMT not in ctx.f:
        return []
    bad = _is_dose(ctx) & (t.missing(S.AMT) | (amt <= 0))
    out = t.problems(bad, "dose_amount", "dose record (EVID=1) needs AMT > 0 but AMT is "
                     "{value}; give the dose amount or delete the row", column=S.AMT,
                     values={"value": S.AMT})
    out += t.problems(_is_obs(ctx) & (amt > 0), "amt_on_observation",
                      "AMT={value} on an observation record (EVID=0); if this row is a dose set "
                      "EVID=1, otherwise leave AMT empty", column=S.AMT, values={"value": S.AMT})
    return out


def observation_value(ctx: CheckContext) -> list[Problem]:
    """A quantified observation (BLQ=0, MDV=0) needs DV > 0."""
    t = ctx.table
    if S.DV not in ctx.f:
        return []
    live = _is_obs(ctx) & (ctx.num(S.MDV, 0.0) != 1) & (ctx.num(S.BLQ, 0.0) != 1)
    bad = live & (t.missing(S.DV) | (ctx.num(S.DV) <= 0))
    return t.problems(
        bad, "dv_not_positive",
        "observation DV is {value} but a quantified value must be > 0; if the sample was below "
        "the LLOQ set BLQ=1 and give LLOQ, to exclude the record set MDV=1 (with MDV_REASON)",
        column=S.DV, values={"value": S.DV})


def blq_lloq(ctx: CheckContext) -> list[Problem]:
    """BLQ=1 needs an LLOQ; LLOQ must be > 0; DV and BLQ should agree with LLOQ (warnings)."""
    t, obs = ctx.table, _is_obs(ctx)
    blq, dv, lloq = ctx.num(S.BLQ, 0.0), ctx.num(S.DV), ctx.num(S.LLOQ)
    out = t.problems(obs & (blq == 1) & t.missing(S.LLOQ), "blq_without_lloq",
                     "BLQ=1 but LLOQ is missing; give the record's lower limit of quantification "
                     "(same unit as DV) in column LLOQ", column=S.LLOQ)
    out += t.problems(lloq <= 0, "lloq_not_positive", "LLOQ={value} must be > 0 (same unit as DV); "
                      "give the assay's limit or leave the cell empty",
                      column=S.LLOQ, values={"value": S.LLOQ})
    live = obs & (ctx.num(S.MDV, 0.0) != 1) & (lloq > 0)
    out += t.problems(live & (blq == 1) & (dv >= lloq), "blq_above_lloq",
                      "BLQ=1 but DV={dv} is not below LLOQ={lloq}; the record is kept as censored "
                      "at LLOQ (DV ignored); check the flag", column=S.BLQ, severity="warning",
                      values={"dv": S.DV, "lloq": S.LLOQ})
    out += t.problems(live & (blq == 0) & (dv > 0) & (dv < lloq), "quantified_below_lloq",
                      "DV={dv} is below LLOQ={lloq} but BLQ=0; the value is kept as measured; "
                      "set BLQ=1 if it should be censored", column=S.DV, severity="warning",
                      values={"dv": S.DV, "lloq": S.LLOQ})
    return out


def duplicates(ctx: CheckContext) -> list[Problem]:
    """Observations (EVID=0, MDV=0) with the same ID, TIME and ANALYTE."""
    f = ctx.f
    if not {S.ID, S.TIME}.issubset(f.columns):
        return []
    keys = [S.ID, S.TIME] + ([S.ANALYTE] if S.ANALYTE in f else [])
    live = _is_obs(ctx) & (ctx.num(S.MDV, 0.0) == 0) & f[S.TIME].notna().to_numpy()
    sub = f.loc[live, keys + [ROW]]
    dup = sub.duplicated(keys, keep="first")
    if not dup.any():
        return []
    first = sub.groupby(keys, dropna=False, sort=False)[ROW].transform("first")
    mask = np.zeros(len(f), dtype=bool)
    mask[np.flatnonzero(live)[dup.to_numpy()]] = True
    tmp = pd.Series(np.nan, index=f.index)
    tmp[live] = first.to_numpy()
    t = Table(f.assign(_FIRST=tmp), ctx.table.file, ctx.table.present, ctx.table.bad,
              sources=ctx.table.sources)
    return t.problems(mask, "duplicate_record",
                      "duplicate observation: same ID, TIME and ANALYTE as line {first}; keep one, "
                      "or set MDV=1 (with MDV_REASON) on the replicate", column=S.TIME,
                      values={"first": "_FIRST"})


def no_dose(ctx: CheckContext) -> list[Problem]:
    """Subjects with observations but no dose record."""
    f = ctx.f
    if S.ID not in f:
        return []
    obs, dose = _is_obs(ctx), _is_dose(ctx)
    dosed = list(f.loc[dose, S.ID].dropna().unique())
    first = f.loc[obs & f[S.ID].notna().to_numpy()].drop_duplicates(S.ID)
    mask = np.zeros(len(f), dtype=bool)
    mask[first.index[~first[S.ID].isin(dosed)]] = True
    return ctx.table.problems(mask, "no_dose",
                              "subject has observations but no dose record; add a row with "
                              "EVID=1, TIME of infusion and AMT", column=S.EVID)


def analyte_names(ctx: CheckContext) -> list[Problem]:
    """Observations need a known ANALYTE (one problem per unknown name)."""
    f, t = ctx.f, ctx.table
    if S.ANALYTE not in f:
        return []
    obs = _is_obs(ctx)
    out = t.problems(obs & t.missing(S.ANALYTE), "missing_analyte",
                     f"ANALYTE is empty on an observation; give one of {', '.join(ctx.analytes)}",
                     column=S.ANALYTE)
    names = f.loc[obs, S.ANALYTE].dropna()
    unknown = names[~names.isin(list(ctx.analytes))]
    for name, idx in unknown.groupby(unknown, sort=False).groups.items():
        i = f.index.get_loc(idx[0])
        close = difflib.get_close_matches(str(name), list(ctx.analytes), n=1)
        mean = f" (did you mean {close[0]}?)" if close else ""
        fix = hint(python=f"analytes={{'{name}': 'unit'}}", cli=f"--units {name}=UNIT")
        out.append(Problem(
            f"unknown analyte {name!r} on {len(idx)} record(s){mean}; known analytes are "
            f"{', '.join(ctx.analytes)}; to add one, give its unit: {fix}",
            file=t.where(i), row=int(f[ROW].iat[i]), column=S.ANALYTE,
            subject=f[S.ID].iat[i] if S.ID in f else None, rule="unknown_analyte"))
    return out


def unsupported_columns(ctx: CheckContext) -> list[Problem]:
    """RATE/II/ADDL/SS holding anything but 0 or missing; CMT on observations (warning)."""
    f, t, out = ctx.f, ctx.table, []
    for col in S.UNSUPPORTED_COLUMNS:
        if col in f:
            v = pd.to_numeric(f[col], errors="coerce")
            mask = (f[col].notna() & ~(v == 0)).to_numpy()
            if mask.any():
                i = int(np.flatnonzero(mask)[0])
                out.append(Problem(
                    f"{col} is not supported yet ({int(mask.sum())} record(s) with a value other "
                    "than 0); write each dose as its own EVID=1 row with AMT", file=t.where(i),
                    row=int(f[ROW].iat[i]), column=col, rule="unsupported_column"))
    if S.CMT in f:
        mask = _is_obs(ctx) & f[S.CMT].notna().to_numpy()
        if mask.any():
            i = int(np.flatnonzero(mask)[0])
            out.append(Problem(
                f"CMT is given on {int(mask.sum())} observation record(s) and is ignored there "
                "(ANALYTE says what was measured); leave CMT empty on observations to silence "
                "this", file=t.where(i), row=int(f[ROW].iat[i]), column=S.CMT,
                rule="cmt_on_observation", severity="warning"))
    return out


def split_covariates(table: Table, declared: tuple[str, ...] = ()) -> tuple[list[str], list[str]]:
    """Split covariate columns into baseline (constant within every subject) and time-varying."""
    f = table.frame
    cols = [c for c in (*table.covariates, S.HSCT_TIME) if c in f]
    if not cols or S.ID not in f:
        return cols, []
    nun = f.groupby(S.ID, sort=False)[cols].nunique(dropna=True)
    varies = (nun > 1).any()
    return [c for c in cols if not varies[c]], [c for c in cols if varies[c]]


def baseline_covariates(ctx: CheckContext) -> list[Problem]:
    """Declared baseline covariates must be constant within subjects; near-constant ones warn."""
    f, t, out = ctx.f, ctx.table, []
    for name in ctx.baseline:
        if name in S.CK_STANDARD_NAMES and name != S.HSCT_TIME:
            out.append(ctx.header_problem(f"baseline_covariates names {name!r}, which is a data "
                                          "column, not a covariate; remove it", name,
                                          "baseline_declared"))
        elif name not in f:
            out.append(ctx.header_problem(
                f"baseline_covariates names {name!r}, which is not a column of the file "
                f"(covariates: {', '.join(t.covariates) or 'none'})", name, "baseline_declared"))
    _, varying = split_covariates(t)
    if not varying:
        return out
    declared = set(ctx.baseline) | {S.HSCT_TIME}
    g = f.groupby(S.ID, sort=False)
    for c in varying:
        nun, cnt = g[c].nunique(dropna=True), g[c].count()
        n_vary, n_inf = int((nun > 1).sum()), int((cnt >= 2).sum())
        if c in declared:
            sev, msg = "error", (f"baseline covariate {c} must be constant within a subject but "
                                 "takes values {values}; fix the values, or drop it from "
                                 "baseline_covariates if it is time-varying")
        elif n_vary <= (1 - BASELINE_FRACTION) * n_inf:
            sev, msg = "warning", (
                f"{c} is constant within {n_inf - n_vary} of {n_inf} subjects but takes values "
                "{values} here; it is treated as time-varying. If it is a baseline covariate "
                f"fix the values (pass baseline_covariates=['{c}'] to make this an error)")
        else:
            continue
        first = g[c].transform("first")
        differs = (f[c].notna() & (f[c] != first)).to_numpy()
        vals = g[c].agg(lambda s: ", ".join(map(str, pd.unique(s.dropna())[:5])))
        rows = np.flatnonzero(differs)
        rows = rows[~pd.Series(f[S.ID].to_numpy()[rows]).duplicated().to_numpy()]
        mask = np.zeros(len(f), dtype=bool)
        mask[rows] = True
        tt = Table(f.assign(_VALS=f[S.ID].map(vals)), t.file, t.present, sources=t.sources)
        out += tt.problems(mask, "baseline_varies", msg, column=c, severity=sev,
                           values={"values": "_VALS"})
    return out


def after_hsct(ctx: CheckContext) -> list[Problem]:
    """Records after allo-HSCT: warnings, flagged and kept."""
    f = ctx.f
    if S.ID not in f or S.TIME not in f or ctx.hsct.dropna().empty:
        return []
    h = f[S.ID].map(ctx.hsct).to_numpy(dtype=float)
    mask = f[S.TIME].to_numpy(dtype=float) > h
    t = Table(f.assign(_H=h), ctx.table.file, ctx.table.present, sources=ctx.table.sources)
    return t.problems(
        mask, "after_hsct",
        "record at TIME {time} is after allo-HSCT at {hsct} (HSCT_TIME); it is kept and flagged "
        "AFTER_HSCT=True; " + hint(python="use CKData.without_flagged()",
                                   cli="pass --after-hsct drop (nca, fit)")
        + " to stop each record at HSCT",
        column=S.TIME, severity="warning", values={"time": S.TIME, "hsct": "_H"})


CK_RULES: tuple[Rule, ...] = (
    no_records, required_columns, required_values, flag_values, negative_time, dose_amount,
    observation_value, blq_lloq, duplicates, no_dose, analyte_names, unsupported_columns,
    baseline_covariates, after_hsct,
)


def run_checks(ctx: CheckContext, rules: tuple[Rule, ...] = CK_RULES) -> list[Problem]:
    """Run every rule and return all problems found.

    Parameters
    ----------
    ctx : CheckContext
        The typed records and the check settings.
    rules : tuple of callables
        Rules to run, each ``rule(ctx) -> list[Problem]``.

    Returns
    -------
    list of Problem
        Errors and warnings, in rule order.
    """
    out: list[Problem] = []
    for rule in rules:
        out += rule(ctx)
    return out
