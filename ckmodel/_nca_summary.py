"""Group summaries of an NCA table (private; public as :func:`ckmodel.nca.nca_summary`).

Exposure and rate metrics get geometric statistics, sampling times median and range, half-life
mean and SD (PKNCA's summary conventions); every summarised metric carries its unit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ckmodel._nca_kernel import COUNT_COLUMNS, TIME_METRICS
from ckmodel._nca_kernel import column_unit as _unit

__all__ = ["nca_summary"]

_MEAN_METRICS = ("LAMZHL", "R2ADJ")  # PKNCA summarises the half-life by mean (SD)
_SUMMARY_STATS = ("N", "N_GEO", "GEOMEAN", "GEOCV", "MEAN", "SD", "MEDIAN", "MIN", "MAX")


def _covariates(data: Any) -> pd.DataFrame:
    cov = getattr(data, "covariates", data)
    if not isinstance(cov, pd.DataFrame):
        raise TypeError("data must be CKData-like (.covariates) or a covariate DataFrame")
    if "ID" in cov.columns:
        cov = cov.drop_duplicates("ID").set_index("ID")
    cov = cov.copy()
    cov.index = cov.index.astype(str)
    return cov


def nca_summary(
    table: pd.DataFrame,
    data: Any = None,
    *,
    by: str | Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Summarise an :func:`~ckmodel.nca.nca` table per analyte (and group), one row per metric.

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`nca` (columns ID, ANALYTE and metrics).
    data : CKData or pandas.DataFrame, optional
        Source of subject-level ``by`` columns missing from ``table``: a ``CKData``-like object
        (its ``.covariates``, indexed by ID) or a covariate table (ID index or column).
    by : str or sequence of str, optional
        Grouping columns, e.g. ``"DOSE_LEVEL"``. Default: per analyte only.
    metrics : sequence of str, optional
        Metric columns to summarise; default every numeric column except LAMZNPT and the record
        counts (:data:`~ckmodel.nca.COUNT_COLUMNS`).

    Returns
    -------
    pandas.DataFrame
        Columns: the ``by`` columns, ANALYTE, METRIC, UNIT (the metric's unit, from
        ``table.attrs["units"]`` or the DV_UNIT and TIME_UNIT columns; empty when unknown),
        STATISTIC (the statistic to report), N (non-missing values), N_GEO (positive values
        used for the geometric statistics), GEOMEAN, GEOCV (%, ``100 sqrt(exp(s^2) - 1)`` with
        ``s`` the SD of the log values), MEAN, SD (n - 1), MEDIAN, MIN, MAX, in UNIT.

        STATISTIC follows PKNCA's summary: ``"median (range)"`` for the sampling-time metrics
        of :data:`~ckmodel.nca.TIME_METRICS` (TMAX, TLST, LAMZLL, LAMZUL), whose GEOMEAN and
        GEOCV are NaN and N_GEO 0 (a geometric mean of a sampling time means nothing);
        ``"mean (SD)"`` for LAMZHL and R2ADJ; ``"geometric mean (CV%)"`` for exposure and rate
        metrics (CMAX, CLST, AUCs, LAMZ) and any other column.

    Examples
    --------
    >>> import pandas as pd
    >>> tab = pd.DataFrame({"ID": ["1", "2", "3"], "ANALYTE": "PB_QPCR",
    ...                     "CMAX": [10.0, 100.0, 1000.0]})
    >>> s = nca_summary(tab, pd.DataFrame({"DOSE_LEVEL": [1, 1, 2]}, index=["1", "2", "3"]),
    ...                 by="DOSE_LEVEL")
    >>> s[["DOSE_LEVEL", "METRIC", "N", "GEOMEAN", "MEAN"]].round(3)
       DOSE_LEVEL METRIC  N   GEOMEAN    MEAN
    0           1   CMAX  2    31.623    55.0
    1           2   CMAX  1  1000.000  1000.0

    Tmax is summarised by median and range:

    >>> tab["TMAX"], tab["TIME_UNIT"] = [7.0, 14.0, 10.0], "day"
    >>> nca_summary(tab)[["METRIC", "UNIT", "STATISTIC", "GEOMEAN", "MEDIAN", "MIN", "MAX"]]
      METRIC     UNIT             STATISTIC  GEOMEAN  MEDIAN   MIN     MAX
    0   CMAX  DV unit  geometric mean (CV%)    100.0   100.0  10.0  1000.0
    1   TMAX      day        median (range)      NaN    10.0   7.0    14.0
    """
    by = [] if by is None else [by] if isinstance(by, str) else list(by)
    tab = table.copy()
    missing = [b for b in by if b not in tab.columns]
    if missing:
        if data is None:
            raise KeyError(f"by columns {missing} are not in the table; pass data= to look them up")
        cov = _covariates(data)
        absent = [b for b in missing if b not in cov.columns]
        if absent:
            raise KeyError(f"by columns {absent} are in neither the table nor the covariates")
        for b in missing:
            tab[b] = tab["ID"].astype(str).map(cov[b]).to_numpy()
    if metrics is None:
        skip = {"ID", "ANALYTE", "LAMZNPT", *COUNT_COLUMNS, *by}
        metrics = [c for c in tab.columns
                   if c not in skip and pd.api.types.is_numeric_dtype(tab[c])]  # fmt: skip
    keys = [*by, "ANALYTE"]
    long = tab.melt(id_vars=keys, value_vars=list(metrics), var_name="METRIC", value_name="V")
    v = long["V"].to_numpy(dtype=float, na_value=np.nan)
    positive = (v > 0) & ~long["METRIC"].isin(TIME_METRICS).to_numpy()
    long["LOGV"] = np.log(np.where(positive, v, 1.0))
    long.loc[~positive, "LOGV"] = np.nan
    long["V"] = v
    g = long.groupby([*keys, "METRIC"], sort=False, dropna=False)
    out = g.agg(
        N=("V", "count"), N_GEO=("LOGV", "count"), LMEAN=("LOGV", "mean"), LSD=("LOGV", "std"),
        MEAN=("V", "mean"), SD=("V", "std"), MEDIAN=("V", "median"), MIN=("V", "min"),
        MAX=("V", "max"),
    ).reset_index()  # fmt: skip
    lsd = out["LSD"].to_numpy(dtype=float, na_value=np.nan)
    out["GEOMEAN"] = np.exp(out["LMEAN"].to_numpy(dtype=float, na_value=np.nan))
    out["GEOCV"] = 100.0 * np.sqrt(np.expm1(lsd * lsd))
    out = out.sort_values([*keys], kind="stable").reset_index(drop=True)
    unit = _summary_units(tab)
    out["UNIT"] = [unit(a, m) for a, m in zip(out["ANALYTE"], out["METRIC"], strict=True)]
    out["STATISTIC"] = [
        "median (range)" if m in TIME_METRICS else "mean (SD)" if m in _MEAN_METRICS
        else "geometric mean (CV%)" for m in out["METRIC"]
    ]  # fmt: skip
    return out[[*keys, "METRIC", "UNIT", "STATISTIC", *_SUMMARY_STATS]]


def _summary_units(tab: pd.DataFrame) -> Any:
    """``unit(analyte, metric)`` from the table's attrs, else its DV_UNIT/TIME_UNIT columns."""
    given = tab.attrs.get("units")
    given = given if isinstance(given, Mapping) else {}

    def first(col: str, rows: pd.Series | slice) -> str:
        if col not in tab.columns:
            return ""
        vals = tab.loc[rows, col].dropna().astype(str)
        vals = vals[vals != ""]
        return str(vals.iloc[0]) if len(vals) else ""

    def unit(analyte: Any, metric: str) -> str:
        if metric in given.get(analyte, {}):
            return str(given[analyte][metric])
        time_unit = first("TIME_UNIT", slice(None))
        if not time_unit:
            return ""
        return _unit(metric, first("DV_UNIT", tab["ANALYTE"] == analyte), time_unit)

    return unit
