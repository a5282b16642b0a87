"""The analysis table of an exposure-response model: one row per subject, checked.

:func:`endpoint_kind` says what an endpoint is (binary, ordinal, time to event) and
:func:`analysis_table` builds, for an endpoint, an exposure and baseline covariates, the rows
the model uses, counting every subject left out by reason (no outcome, no exposure, missing
covariate, non-positive exposure on the log scale) so the model's output can state them.

Endpoints follow :mod:`ckmodel.response.endpoints` (one definition each): ``CRc`` = BOR in CR,
CRh, CRi; ``ORR`` = CR, CRi, CRh, MLFS, PR; ``CRS3`` / ``ICANS3`` = grade >= 3; ``MRD_NEG``,
``DLT``, ``ADA`` and any 0/1 column are binary; ``CRS_GRADE``, ``ICANS_GRADE`` and any integer
column with more than two values are ordinal; ``EFS``, ``OS``, ``DOR``, ``MRD_DUR`` and any
``X`` with ``X_TIME``/``X_EVENT`` columns are time to event (HSCT rule of
:func:`~ckmodel.response.endpoints.time_to_event`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ckmodel.data import schema as S
from ckmodel.response.endpoints import CRC, ORR, TIME_TO_EVENT, time_to_event

__all__ = ["DERIVED_BINARY", "ENDPOINT_KINDS", "analysis_table", "available",
           "covariate_column", "endpoint_kind", "endpoint_values", "subject_column"]

ENDPOINT_KINDS = ("binary", "ordinal", "tte")
#: Binary endpoints derived from other columns: name -> (source column, rule, description).
DERIVED_BINARY = {
    "CRc": (S.BOR, lambda v: v.isin(CRC), "BOR in CR, CRh, CRi"),
    "ORR": (S.BOR, lambda v: v.isin(ORR), "BOR in CR, CRi, CRh, MLFS, PR"),
    "CRS3": (S.CRS_GRADE, lambda v: v >= 3, "CRS grade >= 3"),
    "ICANS3": (S.ICANS_GRADE, lambda v: v >= 3, "ICANS grade >= 3"),
}


def _tte_columns(outcomes: pd.DataFrame, name: str) -> tuple[str, str] | None:
    if name in TIME_TO_EVENT:
        spec = TIME_TO_EVENT[name]
        return spec.time, spec.event
    if f"{name}_TIME" in outcomes.columns and f"{name}_EVENT" in outcomes.columns:
        return f"{name}_TIME", f"{name}_EVENT"
    return None


def endpoint_kind(outcomes: pd.DataFrame, name: str) -> str:
    """``"binary"``, ``"ordinal"`` or ``"tte"`` for endpoint ``name`` of ``outcomes``.

    Raises
    ------
    ValueError
        When ``name`` is none of these, listing the endpoints the table offers.
    """
    if name in DERIVED_BINARY:
        src = DERIVED_BINARY[name][0]
        if src not in outcomes.columns:
            raise ValueError(f"endpoint {name} ({DERIVED_BINARY[name][2]}) needs the column "
                             f"{src}, which the outcomes table lacks")
        return "binary"
    if _tte_columns(outcomes, name) is not None:
        return "tte"
    if name in outcomes.columns and name != S.BOR:
        v = pd.to_numeric(outcomes[name], errors="coerce").dropna()
        if len(v) and np.all(v == np.round(v)):
            return "binary" if set(np.unique(v)) <= {0.0, 1.0} else "ordinal"
    raise ValueError(f"unknown endpoint {name!r}: use one of {', '.join(available(outcomes))}")


def available(outcomes: pd.DataFrame) -> list[str]:
    """The endpoints ``outcomes`` offers, named as :func:`endpoint_kind` accepts them."""
    names = [n for n, (src, _, _) in DERIVED_BINARY.items() if src in outcomes.columns]
    names += [n for n in TIME_TO_EVENT if _tte_columns(outcomes, n) and
              set(_tte_columns(outcomes, n)) <= set(outcomes.columns)]
    for c in outcomes.columns:
        if c.endswith("_TIME") and f"{c[:-5]}_EVENT" in outcomes.columns and \
                c[:-5] not in names and c[:-5] not in TIME_TO_EVENT:
            names.append(c[:-5])
        elif not c.endswith(("_TIME", "_EVENT", "_START")) and c not in (S.BOR, S.HSCT_TIME):
            v = pd.to_numeric(outcomes[c], errors="coerce").dropna()
            if len(v) and np.all(v == np.round(v)):
                names.append(c)
    return names


def endpoint_values(outcomes: pd.DataFrame, name: str, *, hsct: str = "censor"
                    ) -> tuple[str, pd.DataFrame, str]:
    """The endpoint per subject: kind, a frame indexed by ID, and the rule applied.

    Binary and ordinal: column ``Y`` (float; grades as integers). Time to event: ``TIME``,
    ``EVENT`` (0/1) and ``HSCT`` (1 where the record ends at allo-HSCT without the event: a
    competing event for ``hsct="competing"``, censoring otherwise).
    """
    kind = endpoint_kind(outcomes, name)
    if kind == "tte":
        if name in TIME_TO_EVENT:
            tte = time_to_event(outcomes, name, hsct="ignore" if hsct == "competing" else hsct)
            rule = tte.attrs["hsct_rule"]
            if hsct == "competing":
                tte = time_to_event(outcomes, name, hsct="censor")
                rule = (f"{name}: allo-HSCT is a competing event (cause-specific hazards); "
                        f"{int(tte['HSCT_CENSORED'].sum())} record(s) end at HSCT")
        else:
            tcol, ecol = _tte_columns(outcomes, name)
            keep = outcomes[tcol].notna() & outcomes[ecol].notna()
            o = outcomes[keep]
            tte = pd.DataFrame({"TIME": o[tcol].astype(float),
                                "EVENT": o[ecol].astype(float).astype(int),
                                "HSCT_CENSORED": False}, index=o.index)
            rule = f"{name}: {tcol}/{ecol} as given"
        out = pd.DataFrame({"TIME": tte["TIME"].astype(float), "EVENT": tte["EVENT"].astype(int),
                            "HSCT": tte["HSCT_CENSORED"].astype(int)})
        return kind, out, rule
    if name in DERIVED_BINARY:
        src, rule_fn, desc = DERIVED_BINARY[name]
        v = outcomes[src]
        if src != S.BOR:
            v = pd.to_numeric(v, errors="coerce")
        y = rule_fn(v).astype(float).where(v.notna())
        return kind, pd.DataFrame({"Y": y}), f"{name}: {desc}"
    y = pd.to_numeric(outcomes[name], errors="coerce")
    return kind, pd.DataFrame({"Y": y}), f"{name}: column as given"


def covariate_column(name: str) -> str:
    """The column a covariate term reads: ``log(BM_BLAST_PCT)`` -> ``BM_BLAST_PCT``."""
    return name[4:-1] if name.startswith("log(") and name.endswith(")") else name


def subject_column(outcomes: pd.DataFrame, covariate_table: pd.DataFrame | None,
                   column: str) -> pd.Series | None:
    """A subject-level column from the outcomes, else the covariates (index ID as str)."""
    if column in outcomes.columns:
        return outcomes[column]
    if covariate_table is not None and column in covariate_table.columns:
        v = covariate_table[column].copy()
        v.index = v.index.astype(str)
        return v
    return None


def analysis_table(outcomes: pd.DataFrame, endpoint: str, *, exposure: pd.Series | None,
                   exposure_scale: str = "log", covariates: Sequence[str] = (),
                   covariate_table: pd.DataFrame | None = None, hsct: str = "censor"
                   ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Rows of the model (index ID) and what was done: kind, rule, counts left out by reason.

    Parameters
    ----------
    outcomes : pandas.DataFrame
        Outcomes indexed by ID.
    endpoint : str
        See the module docstring.
    exposure : pandas.Series, optional
        Exposure per subject (index ID), as entered; None for a model without exposure.
    exposure_scale : {"log", "linear"}
        The model uses ``log(exposure)`` (default) or the exposure itself.
    covariates : sequence of str
        Baseline columns, from ``outcomes`` or else ``covariate_table``; ``log(COLUMN)``
        enters the log of a positive column (e.g. ``log(BM_BLAST_PCT)``).
    covariate_table : pandas.DataFrame, optional
        Subject-level covariates (e.g. the CK file's, index ID).
    hsct : {"censor", "competing", "ignore"}
        HSCT rule for time-to-event endpoints.

    Returns
    -------
    table : pandas.DataFrame
        ``Y`` (or ``TIME``, ``EVENT``, ``HSCT``), ``X`` (model-scale exposure), one column
        per covariate.
    info : dict
        ``kind``, ``rule``, ``left_out`` (reason -> count), ``n``.

    Raises
    ------
    ValueError
        On an unknown endpoint, a covariate in neither table (naming those there are) or an
        unknown scale.
    """
    if exposure_scale not in ("log", "linear"):
        raise ValueError(f"exposure_scale must be 'log' or 'linear', got {exposure_scale!r}")
    if hsct not in ("censor", "competing", "ignore"):
        raise ValueError(f"hsct must be censor, competing or ignore, got {hsct!r}")
    kind, y, rule = endpoint_values(outcomes, endpoint, hsct=hsct)
    frame = y.reindex(outcomes.index)
    left: dict[str, int] = {}
    have = frame["Y"].notna() if "Y" in frame else frame["TIME"].notna()
    left[f"no {endpoint}"] = int((~have).sum())
    frame = frame[have]
    if exposure is not None:
        x = pd.to_numeric(exposure, errors="coerce").reindex(frame.index.astype(str))
        x.index = frame.index
        miss = x.isna()
        left["no exposure"] = int(miss.sum())
        if exposure_scale == "log":
            bad = ~miss & (x <= 0)
            left["exposure <= 0 (log scale)"] = int(bad.sum())
            miss = miss | bad
            x = np.log(x.where(~miss))
        frame = frame.assign(X=x)[~miss]
    for c in covariates:
        col = covariate_column(c)
        v = subject_column(outcomes, covariate_table, col)
        if v is None:
            cols = list(outcomes.columns) + ([] if covariate_table is None
                                             else list(covariate_table.columns))
            raise ValueError(f"covariate {c!r} is in neither the outcomes nor the CK data; "
                             f"columns: {', '.join(map(str, cols))}")
        v = pd.to_numeric(v, errors="coerce").reindex(frame.index.astype(str))
        v.index = frame.index
        if col != c:  # log(COLUMN): positive values only
            left[f"{col} <= 0 (log)"] = int((v <= 0).sum())
            v = np.log(v.where(v > 0))
        left[f"no {c}"] = int(v.isna().sum())
        frame = frame.assign(**{c: v})[v.notna()]
    if kind == "ordinal":
        frame["Y"] = frame["Y"].astype(int)
    info = {"kind": kind, "rule": rule, "left_out": {k: v for k, v in left.items() if v},
            "n": int(len(frame))}
    return frame, info
