"""Strata of subjects (dose level, any subject column) and how to label them.

VPCs, profile plots and GOF plots split subjects by a column of the data: a subject-level
covariate (``DOSE_LEVEL``, ``COHORT``, ``LD``), an outcome column, or ``DOSE`` (the first dose
amount, taken from the dose records when the data have no such column). Labels name the dose
and the number of subjects, e.g. ``"0.5 1e6 CAR+ T cells/kg (n=6)"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["first_dose", "subject_strata", "stratum_label", "ALL"]

#: Stratum of every subject when no column is given.
ALL = "all"


def first_dose(data: Any, subjects: Sequence[str] | None = None) -> pd.Series:
    """First dose amount of each subject (data amount unit), indexed by subject ID (str)."""
    doses = data.doses.sort_values(["ID", "TIME"], kind="stable")
    first = doses.groupby("ID", sort=False)["AMT"].first()
    first.index = first.index.astype(str)
    if subjects is not None:
        first = first.reindex([str(s) for s in subjects])
    return first.astype(float)


def _fmt(v: Any) -> str:
    if isinstance(v, float | np.floating):
        if not np.isfinite(v):
            return "missing"
        return f"{v:g}"
    return str(v)


def subject_strata(data: Any, column: str | None, subjects: Sequence[str]) -> pd.Series:
    """The stratum (a string) of each subject under ``column``.

    Parameters
    ----------
    data : CKData
        The data (``covariates``, ``outcomes``, ``doses``).
    column : str or None
        A subject-level column (covariate or outcome), or ``DOSE`` (first dose amount when the
        data have no ``DOSE`` column); None puts every subject in stratum ``"all"``.
    subjects : sequence of str
        Subjects to classify.

    Returns
    -------
    pandas.Series
        Stratum label per subject (index: subject ID as str), numbers written with ``%g``;
        the series is ordered categorical, levels sorted numerically when they are numbers.

    Raises
    ------
    KeyError
        When ``column`` is not a subject-level column of the data, naming those there are.
    """
    ids = [str(s) for s in subjects]
    if column is None:
        return pd.Series(pd.Categorical([ALL] * len(ids)), index=ids)
    tables = [getattr(data, "covariates", None), getattr(data, "outcomes", None)]
    values = None
    for t in tables:
        if t is not None and column in t.columns:
            col = t[column].copy()
            col.index = col.index.astype(str)
            values = col.reindex(ids)
            break
    if values is None and column.upper() == "DOSE":
        values = first_dose(data, ids)
    if values is None:
        known = list(dict.fromkeys(str(c) for t in tables if t is not None for c in t.columns))
        if "DOSE" not in known:
            known.append("DOSE (first dose amount)")
        raise KeyError(f"{column!r} is not a subject-level column of the data (columns: "
                       f"{', '.join(known)})")
    num = pd.to_numeric(values, errors="coerce")
    if num.notna().all():
        levels = sorted(pd.unique(num))
        labels = num.map(_fmt)
        order = [_fmt(v) for v in levels]
    else:
        labels = values.map(_fmt)
        order = sorted(pd.unique(labels))
    return pd.Series(pd.Categorical(labels, categories=order, ordered=True), index=ids)


def stratum_label(data: Any, column: str | None, stratum: str, subjects: Sequence[str],
                  amount_unit: str = "") -> str:
    """A panel title: the dose of the stratum's subjects and their number.

    ``"0.5 1e6 CAR+ T cells/kg (n=6)"`` when the stratum's subjects share one first dose,
    ``"DOSE_LEVEL 2: 1-3 1e6 CAR+ T cells/kg (n=9)"`` when they do not, ``"COHORT 3 (n=3)"``
    without dose records, ``"all subjects (n=30)"`` without a column.
    """
    n = len(subjects)
    if column is None or stratum == ALL:
        return f"all subjects (n={n})"
    unit = f" {amount_unit}" if amount_unit and amount_unit != "-" else ""
    try:
        doses = first_dose(data, subjects).dropna().unique()
    except (AttributeError, KeyError):
        doses = np.array([])
    is_dose = column.upper() in ("DOSE", "DOSE_LEVEL", "DOSE_LEVELS", "DL", "DOSELEVEL")
    if doses.size == 1 and is_dose:
        return f"{_fmt(float(doses[0]))}{unit} (n={n})"
    if doses.size and is_dose:
        return (f"{column} {stratum}: {_fmt(float(doses.min()))}-{_fmt(float(doses.max()))}"
                f"{unit} (n={n})")
    return f"{column} {stratum} (n={n})"
