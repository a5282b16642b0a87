"""CKData to other forms: canonical bytes (for the hash), NONMEM-style CSV, xarray, text."""

from __future__ import annotations

import csv
import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ckmodel.data import schema as S
from ckmodel.files import atomic_write

if TYPE_CHECKING:
    import xarray as xr

    from ckmodel.data.ckdata import CKData

CANON_VERSION = "ckdata-canonical-v1"
DATA_VARS = (S.DV, S.LLOQ, S.BLQ, S.MDV, "AFTER_HSCT")


def _canon_frame(df: pd.DataFrame, keys: list[str], index: bool = False) -> str:
    """Deterministic text of a frame: fixed column order, rows sorted, floats as %.17g."""
    if index:
        df = df.sort_index(kind="mergesort").reset_index()
    rest = sorted(c for c in df.columns if c not in keys)
    df = df[[*keys, *rest]]
    if len(df):
        df = df.sort_values(list(df.columns), kind="mergesort", na_position="last")
    return df.to_csv(index=False, float_format="%.17g", na_rep="", lineterminator="\n")


def canonical_hash(ck: CKData) -> str:
    """SHA-256 of the content: records, covariates, outcomes, time unit, analyte units.

    Source path, ROW (source line numbers) and problems are provenance, not content.
    """
    h = hashlib.sha256()
    parts = [CANON_VERSION, ck.time_unit, repr(tuple(sorted(ck.analyte_units.items()))),
             _canon_frame(ck._observations.drop(columns="ROW"), [S.ID, S.TIME, S.ANALYTE]),
             _canon_frame(ck._doses.drop(columns="ROW"), [S.ID, S.TIME]),
             _canon_frame(ck._covariates, [S.ID], index=True),
             _canon_frame(ck._time_varying, [S.ID, S.TIME, S.EVID, S.ANALYTE]),
             "none" if ck._outcomes is None else _canon_frame(ck._outcomes, [S.ID], index=True)]
    for p in parts:
        h.update(p.encode("utf-8"))
        h.update(b"\x1e")
    return h.hexdigest()


def _keyed(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    df = df.copy()
    df["_k"] = df.groupby(keys, dropna=False, sort=False).cumcount()
    return df


def long_records(ck: CKData) -> pd.DataFrame:
    """All records in one NONMEM-style frame (doses before observations at equal times)."""
    o, d = ck._observations, ck._doses
    obs = pd.DataFrame({S.ID: o[S.ID], S.TIME: o[S.TIME], S.EVID: 0, S.AMT: np.nan,
                        S.CMT: pd.Series(None, index=o.index, dtype="str"),
                        S.ANALYTE: o[S.ANALYTE], S.DV: o[S.DV], S.LLOQ: o[S.LLOQ],
                        S.BLQ: o[S.BLQ], S.MDV: o[S.MDV], S.MDV_REASON: o[S.MDV_REASON],
                        "_r": o["ROW"]})
    dos = pd.DataFrame({S.ID: d[S.ID], S.TIME: d[S.TIME], S.EVID: 1, S.AMT: d[S.AMT],
                        S.CMT: d[S.CMT], S.ANALYTE: pd.Series(None, index=d.index, dtype="str"),
                        S.DV: np.nan, S.LLOQ: np.nan, S.BLQ: 0, S.MDV: 1,
                        S.MDV_REASON: pd.Series(None, index=d.index, dtype="str"), "_r": d["ROW"]})
    rec = pd.concat([obs, dos], ignore_index=True)
    rec["_c"] = pd.Categorical(rec[S.ID], categories=list(ck.subjects)).codes
    rec = rec.sort_values(["_c", S.TIME, S.EVID, S.ANALYTE, "_r"], kind="mergesort")
    tv = ck._time_varying
    if len(tv.columns) > 4:
        keys = [S.ID, S.TIME, S.EVID, S.ANALYTE]
        rec = _keyed(rec, keys).merge(_keyed(tv, keys), on=[*keys, "_k"], how="left",
                                      sort=False).drop(columns="_k")
    cov = ck._covariates
    if len(cov.columns):
        rec = rec.merge(cov, left_on=S.ID, right_index=True, how="left", sort=False)
    rec = rec.sort_values(["_c", S.TIME, S.EVID, S.ANALYTE, "_r"],
                          ascending=[True, True, False, True, True], kind="mergesort")
    drop = ["_c", "_r"] + [c for c in (S.CMT, S.MDV_REASON) if rec[c].isna().all()]
    return rec.drop(columns=drop).reset_index(drop=True)


def write_csv_atomic(df: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write ``df`` as NONMEM-style CSV (``.`` for missing), atomically."""
    for c in df.columns:
        if df[c].dtype == object or pd.api.types.is_string_dtype(df[c]):
            if df[c].astype("str").str.contains("[\r\n]", regex=True, na=False).any():
                raise ValueError(f"column {c} holds a line break; it cannot be written one "
                                 "record per line")
    first = df.iloc[:, 0].astype("str") if len(df.columns) else pd.Series(dtype="str")
    quoting = csv.QUOTE_ALL if first.str.match(r"\s*[#@]", na=False).any() else csv.QUOTE_MINIMAL
    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            df.to_csv(fh, index=False, na_rep=".", lineterminator="\n", quoting=quoting)

    atomic_write(path, write)


def to_xarray(ck: CKData) -> xr.Dataset:
    """Observations on a (subject, time, analyte) grid; see :meth:`CKData.to_xarray`."""
    import xarray as xr

    o = ck._observations.sort_values(S.MDV, ascending=False, kind="mergesort")
    subjects, analytes = list(ck.subjects), list(ck.analytes)
    times = np.unique(o[S.TIME].to_numpy(dtype=float))
    si = pd.Categorical(o[S.ID], categories=subjects).codes
    ai = pd.Categorical(o[S.ANALYTE], categories=analytes).codes
    ti = np.searchsorted(times, o[S.TIME].to_numpy(dtype=float))
    shape = (len(subjects), len(times), len(analytes))
    data = {}
    for v in DATA_VARS:
        arr = np.full(shape, np.nan)
        arr[si, ti, ai] = o[v].to_numpy(dtype=float)  # later (MDV=0) records win on ties
        data[v] = (("subject", "time", "analyte"), arr)
    coords: dict[str, object] = {
        "subject": np.array(subjects, dtype=object),
        "time": times,
        "analyte": np.array(analytes, dtype=object),
        "unit": ("analyte", np.array([ck.analyte_units.get(a, "") for a in analytes],
                                     dtype=object)),
    }
    taken = set(coords) | set(DATA_VARS)
    for c in ck._covariates.columns:
        name = c if c not in taken else f"cov_{c}"
        col = ck._covariates[c]
        vals = col.to_numpy(dtype=object) if not pd.api.types.is_numeric_dtype(col) \
            else col.to_numpy()
        coords[name] = ("subject", vals)
    attrs = {"time_unit": ck.time_unit, "source": ck.source or "",
             "description": "CAR-T cellular kinetics observations (ckmodel.data)"}
    return xr.Dataset(data, coords=coords, attrs=attrs)


def _g(x: float) -> str:
    return f"{x:.4g}" if np.isfinite(x) else "-"


def summary_text(ck: CKData) -> str:
    """Readable multi-line overview of ``ck`` (see :meth:`CKData.summary`)."""
    o, d, u = ck._observations, ck._doses, ck.time_unit
    lines = [f"CKData: {len(ck.subjects)} subjects, {len(o)} observations, {len(d)} doses"
             f" (time unit: {u})"]
    if ck.source:
        lines.append(f"source: {ck.source}")
    lines.append(f"{'analyte':<10} {'unit':<16} {'records':>7} {'subjects':>8} {'BLQ %':>6} "
                 f"{'MDV=1':>5} {'DV range':>20}")
    for a in ck.analytes:
        sub = o[o[S.ANALYTE] == a]
        dv = sub[S.DV].to_numpy(dtype=float)
        rng = f"{_g(np.nanmin(dv))} - {_g(np.nanmax(dv))}" if np.isfinite(dv).any() else "-"
        lines.append(f"{a:<10} {ck.analyte_units.get(a, ''):<16} {len(sub):>7} "
                     f"{sub[S.ID].nunique():>8} {100 * sub[S.BLQ].mean():>6.1f} "
                     f"{int(sub[S.MDV].sum()):>5} {rng:>20}")
    if len(o):
        lines.append(f"observation times: {_g(o[S.TIME].min())} to {_g(o[S.TIME].max())} {u}")
    if len(d):
        lines.append(f"doses: AMT {_g(d[S.AMT].min())} to {_g(d[S.AMT].max())}, "
                     f"{d[S.ID].nunique()} subjects dosed, times {_g(d[S.TIME].min())} to "
                     f"{_g(d[S.TIME].max())} {u}")
    cov = list(ck._covariates.columns)
    tv = [c for c in ck._time_varying.columns if c not in (S.ID, S.TIME, S.EVID, S.ANALYTE)]
    lines.append(f"baseline covariates: {', '.join(cov) or 'none'}")
    lines.append(f"time-varying covariates: {', '.join(tv) or 'none'}")
    n_after = int(o["AFTER_HSCT"].sum())
    n_hsct = len(ck.hsct_time)
    lines.append(f"flagged: {n_after} observation(s) after allo-HSCT ({n_hsct} subject(s) with "
                 f"HSCT); {int(o[S.MDV].sum())} excluded with MDV=1")
    if ck._outcomes is None:
        lines.append("outcomes: none")
    else:
        lines.append(f"outcomes: {len(ck._outcomes)} subjects; "
                     f"{', '.join(map(str, ck._outcomes.columns)) or 'no columns'}")
    lines.append(f"warnings: {len(ck.problems)}")
    return "\n".join(lines)
