"""Text summary of a CKData."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ckmodel.data import schema as S

if TYPE_CHECKING:
    from ckmodel.data.ckdata import CKData


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
