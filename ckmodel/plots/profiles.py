"""Observed concentration-time profiles (spaghetti plots and small multiples).

Matplotlib is imported inside the functions, never at ``import ckmodel``. Without a display (and
with no backend chosen by the user or ``MPLBACKEND``) the Agg backend is selected on first use.

Drawing conventions, shared by both functions:

- quantifiable records: filled circles joined by a line, log y-axis;
- BLQ records: drawn at their LLOQ with an open downward triangle, not joined;
- records after allo-HSCT (``AFTER_HSCT`` true): grey, same markers, dashed;
- the LLOQ: a dotted horizontal line per distinct LLOQ value in the panel;
- ``MDV == 1`` records (and ``EVID != 0`` rows) are not drawn.

Every artist carries a ``gid`` (``"obs:<key>"``, ``"blq:<key>"``, ``"hsct:<key>"``,
``"hsct-blq:<key>"``, ``"lloq"``) so that figures can be inspected programmatically.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ckmodel.plots._style import GREY, PALETTE, log_panel, time_label, value_label
from ckmodel.plots._style import pyplot as _pyplot

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_profiles", "plot_profiles_by_subject"]

# Okabe-Ito (colour-blind safe, ckmodel.plots._style.PALETTE); grey is reserved for records
# after HSCT


def _flag(df: pd.DataFrame, name: str) -> np.ndarray:
    if name not in df.columns:
        return np.zeros(len(df), dtype=bool)
    return np.nan_to_num(df[name].to_numpy(dtype=float, na_value=np.nan)) > 0


def _records(data: Any, analyte: str | Sequence[str] | None) -> pd.DataFrame:
    """Plottable records: ID, ANALYTE, TIME, Y (DV, or LLOQ when BLQ), BLQ, HSCT, LLOQ."""
    obs = getattr(data, "observations", data)
    if not isinstance(obs, pd.DataFrame):
        raise TypeError("data must be a CKData-like object (.observations) or a pandas DataFrame")
    missing = {"ID", "TIME", "DV"} - set(obs.columns)
    if missing:
        raise KeyError(f"observations lack columns {sorted(missing)}")
    keep = ~_flag(obs, "MDV")
    if "EVID" in obs.columns:
        keep &= np.nan_to_num(obs["EVID"].to_numpy(dtype=float, na_value=np.nan)) == 0
    obs = obs.loc[keep]
    lloq = (obs["LLOQ"].to_numpy(dtype=float, na_value=np.nan) if "LLOQ" in obs.columns
            else np.full(len(obs), np.nan))  # fmt: skip
    dv = obs["DV"].to_numpy(dtype=float, na_value=np.nan)
    blq = _flag(obs, "BLQ")
    rec = pd.DataFrame({
        "ID": obs["ID"].to_numpy(),
        "ANALYTE": obs["ANALYTE"].to_numpy() if "ANALYTE" in obs.columns else "DV",
        "TIME": obs["TIME"].to_numpy(dtype=float, na_value=np.nan),
        "Y": np.where(blq, lloq, dv), "BLQ": blq, "HSCT": _flag(obs, "AFTER_HSCT"), "LLOQ": lloq,
    }, index=obs.index)  # fmt: skip
    if analyte is not None:
        wanted = [analyte] if isinstance(analyte, str) else list(analyte)
        rec = rec[rec["ANALYTE"].isin(wanted)]
        if rec.empty:
            raise ValueError(f"no records for analyte(s) {wanted}")
    with np.errstate(invalid="ignore"):
        plottable = np.isfinite(rec["TIME"]) & (rec["Y"] > 0)
    return rec[plottable.to_numpy()]


def _draw(ax: Axes, rec: pd.DataFrame, color: Any, key: str) -> None:
    """Draw one series (one subject, or one analyte) with the module's conventions."""
    rec = rec.sort_values("TIME", kind="stable")
    groups = (
        ("obs", ~rec["HSCT"] & ~rec["BLQ"], dict(color=color, marker="o", ls="-", ms=4)),
        ("blq", ~rec["HSCT"] & rec["BLQ"],
         dict(color=color, marker="v", ls="none", ms=6, mfc="none")),
        ("hsct", rec["HSCT"] & ~rec["BLQ"], dict(color=GREY, marker="o", ls="--", ms=4)),
        ("hsct-blq", rec["HSCT"] & rec["BLQ"],
         dict(color=GREY, marker="v", ls="none", ms=6, mfc="none")),
    )  # fmt: skip
    for kind, mask, style in groups:
        part = rec[mask.to_numpy()]
        if len(part):
            ax.plot(part["TIME"], part["Y"], gid=f"{kind}:{key}", lw=1, **style)


def _lloq_lines(ax: Axes, rec: pd.DataFrame, color: Any = GREY) -> None:
    for value in np.unique(rec["LLOQ"].to_numpy(dtype=float)):
        if np.isfinite(value) and value > 0:
            ax.axhline(value, color=color, ls=":", lw=1, gid="lloq")


def _legend(ax: Axes, color: Any = "C0") -> None:
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], color=color, marker="o", ms=4, lw=1, label="quantifiable"),
        Line2D([], [], color=color, marker="v", ms=6, mfc="none", ls="none", label="BLQ (at LLOQ)"),
        Line2D([], [], color=GREY, marker="o", ms=4, ls="--", lw=1, label="after HSCT"),
        Line2D([], [], color=GREY, ls=":", lw=1, label="LLOQ"),
    ]
    ax.legend(handles=handles, fontsize="small", frameon=False)


def _grid(n_panels: int, ncols: int, ax: Axes | None, panel_size=(4.0, 3.2)):
    plt = _pyplot()
    if ax is not None:
        if n_panels != 1:
            raise ValueError(f"ax= needs exactly one panel, the data give {n_panels}")
        return ax.figure, [ax]
    ncols = max(1, min(int(ncols), n_panels))
    nrows = math.ceil(n_panels / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, squeeze=False, layout="constrained",
        figsize=(panel_size[0] * ncols, panel_size[1] * nrows),
    )  # fmt: skip
    flat = list(axes.ravel())
    for extra in flat[n_panels:]:
        fig.delaxes(extra)
    return fig, flat[:n_panels]


def _subject_level(data: Any, rec: pd.DataFrame, by: str) -> pd.Series:
    obs = getattr(data, "observations", data)
    if by in obs.columns:
        return obs.loc[rec.index, by]
    cov = getattr(data, "covariates", None)
    if isinstance(cov, pd.DataFrame):
        if "ID" in cov.columns:
            cov = cov.drop_duplicates("ID").set_index("ID")
        if by in cov.columns:
            lookup = cov[by].copy()
            lookup.index = lookup.index.astype(str)
            return pd.Series(rec["ID"].astype(str).map(lookup).to_numpy(), index=rec.index)
    raise KeyError(f"{by!r} is neither an observation column nor a covariate of data")


def _units(data: Any, fit: Any) -> tuple[dict[str, str], str | None, str]:
    """Analyte units, time unit and dose unit from the data (or the fit's model)."""
    units = dict(getattr(data, "analyte_units", {}) or {})
    time_unit = getattr(data, "time_unit", None)
    amount = ""
    if fit is not None:
        for o in fit.spec.outputs:
            units.setdefault(o.name, o.unit)
        time_unit = time_unit or fit.spec.time_unit
        amount = getattr(fit.spec, "amount_unit", "")
    return units, time_unit, amount


def plot_profiles(
    data: Any,
    *,
    analyte: str | Sequence[str] | None = None,
    by: str | None = None,
    ax: Axes | None = None,
    ncols: int = 3,
    fit: Any = None,
    n_sim: int = 100,
    seed: int = 1,
) -> Figure:
    """Observed profiles of all subjects: one row per analyte, one column per level of ``by``.

    Parameters
    ----------
    data : CKData or pandas.DataFrame
        A ``CKData``-like object (``.observations``, ``.covariates``, ``.analyte_units``,
        ``.time_unit``, ``.doses``) or an observation table with ID, TIME (time since
        infusion, any unit) and DV, optionally ANALYTE, BLQ, LLOQ, MDV, EVID and AFTER_HSCT.
    analyte : str or sequence of str, optional
        Analyte(s) to draw; default all.
    by : str, optional
        Subject-level column (observation column or covariate, e.g. ``"DOSE_LEVEL"``): one
        column of panels per level, titled with the level's dose and number of subjects.
    fit : Fit, optional
        Overlay the fitted population median and 90 % band of new subjects of each level
        (:func:`ckmodel.diagnostics.population_bands`: posterior uncertainty and
        between-subject variability, no residual error).

    Other Parameters
    ----------------
    ax : matplotlib.axes.Axes, optional
        Draw into this axes; only when the data give exactly one panel.
    ncols : int
        Panels per row when ``by`` is not given and there are several analytes (kept for
        backward compatibility; one row per analyte is used).
    n_sim, seed : int
        Replicates per subject and seed of the fitted bands.

    Returns
    -------
    matplotlib.figure.Figure
        Log-y panels, x shared by all, y shared along each analyte's row; titles name the
        dose (or level) and ``n``; axes labelled with the time unit and the analyte's unit;
        one colour per subject, BLQ at LLOQ as open triangles, records after HSCT in grey,
        LLOQ dotted.

    Examples
    --------
    >>> import pandas as pd
    >>> obs = pd.DataFrame({"ID": ["1"] * 4, "ANALYTE": "PB_QPCR", "TIME": [1.0, 7, 28, 84],
    ...                     "DV": [50.0, 5000.0, 300.0, float("nan")], "LLOQ": 10.0,
    ...                     "BLQ": [0, 0, 0, 1]})
    >>> fig = plot_profiles(obs)
    >>> [a.get_title() for a in fig.axes], fig.axes[0].get_yscale()
    (['PB_QPCR: all subjects (n=1)'], 'log')
    >>> import matplotlib.pyplot as plt; plt.close(fig)
    """
    del ncols  # one row per analyte, levels across columns
    rec = _records(data, analyte)
    subjects = list(pd.unique(rec["ID"]))
    colour = {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(subjects)}
    if by is None:
        rec = rec.assign(_G="")
    else:
        rec = rec.assign(_G=_subject_level(data, rec, by))
    levels = pd.Series(pd.unique(rec["_G"])).sort_values(na_position="last").tolist()
    analytes = list(pd.unique(rec["ANALYTE"]))
    units, time_unit, amount = _units(data, fit)
    if ax is not None:
        if len(analytes) * len(levels) != 1:
            raise ValueError(f"ax= needs exactly one panel, the data give "
                             f"{len(analytes) * len(levels)}")
        fig, grid_axes = ax.figure, np.array([[ax]])
    else:
        plt = _pyplot()
        fig, grid_axes = plt.subplots(len(analytes), len(levels), squeeze=False,
                                      layout="constrained", sharex=True, sharey="row",
                                      figsize=(max(3.8 * len(levels), 4.5),
                                               3.2 * len(analytes)))
    bands = None
    if fit is not None:
        from ckmodel.diagnostics import population_bands

        bands = population_bands(fit, stratify=by, n_sim=n_sim, seed=seed)
    scale = float(fit.meta.get("time_scale", 1.0)) if fit is not None else 1.0
    for i, an in enumerate(analytes):
        is_an = (rec["ANALYTE"] == an).to_numpy()
        for j, level in enumerate(levels):
            a = grid_axes[i, j]
            in_level = (rec["_G"].isna() if pd.isna(level) else rec["_G"] == level).to_numpy()
            sub = rec[is_an & in_level]
            for sid, srec in sub.groupby("ID", sort=False):
                _draw(a, srec, colour[sid], str(sid))
            _lloq_lines(a, sub)
            key = None if by is None else (f"{level:g}" if isinstance(level, float) else
                                           str(level))
            if bands is not None and an in bands.analyte.values and (
                    key is None or key in bands.stratum.values):
                b = bands["pred"].sel(analyte=an, stratum=key or "all")
                t = bands["time"].values / scale  # back to the data's clock and unit
                a.fill_between(t, b.sel(quantile=0.05), b.sel(quantile=0.95), color="black",
                               alpha=0.12, lw=0, gid="fit-band")
                a.plot(t, b.sel(quantile=0.5), color="black", lw=1.5, gid="fit-median")
            log_panel(a)
            ids = list(pd.unique(sub["ID"]))
            if by is None:
                title = f"{an}: all subjects (n={len(ids)})"
            else:
                from ckmodel.diagnostics.strata import stratum_label

                if hasattr(data, "doses"):
                    title = stratum_label(data, by, str(level), ids, amount)
                else:
                    title = f"{by} {level} (n={len(ids)})"
                if len(analytes) > 1:
                    title = f"{an}: {title}"
            a.set_title(title, fontsize="medium")
            if i == len(analytes) - 1:
                a.set_xlabel(time_label(time_unit))
            if j == 0:
                a.set_ylabel(value_label(an, units.get(an)))
    _legend(grid_axes[0, 0])
    if bands is not None:
        from matplotlib.lines import Line2D

        grid_axes[0, -1].legend(handles=[Line2D([], [], color="black", lw=1.5,
                                                label="fitted population median, 90% band")],
                                fontsize="small", frameon=False, loc="lower left")
    return fig


def plot_profiles_by_subject(
    data: Any,
    analyte: str | Sequence[str] | None = None,
    *,
    max_subjects: int = 12,
    ncols: int = 4,
) -> Figure:
    """Small multiples: one log-y panel per subject, one colour per analyte.

    Parameters
    ----------
    data : CKData or pandas.DataFrame
        As in :func:`plot_profiles`.
    analyte : str or sequence of str, optional
        Analyte(s) to draw; default all.

    Other Parameters
    ----------------
    max_subjects : int
        Draw the first ``max_subjects`` subjects (order of appearance); the figure title says
        when some were left out.
    ncols : int
        Panels per row.

    Returns
    -------
    matplotlib.figure.Figure
        One panel per subject titled by ID, conventions as in :func:`plot_profiles`.

    Examples
    --------
    >>> import pandas as pd
    >>> obs = pd.DataFrame({"ID": ["1", "1", "2", "2"], "TIME": [1.0, 7, 1, 7],
    ...                     "DV": [5.0, 50, 8, 80]})
    >>> fig = plot_profiles_by_subject(obs)
    >>> [a.get_title() for a in fig.axes]
    ['1', '2']
    >>> import matplotlib.pyplot as plt; plt.close(fig)
    """
    rec = _records(data, analyte)
    subjects = list(pd.unique(rec["ID"]))
    shown = subjects[: max(int(max_subjects), 1)]
    analytes = list(pd.unique(rec["ANALYTE"]))
    colour = {an: PALETTE[i % len(PALETTE)] for i, an in enumerate(analytes)}
    fig, axes = _grid(len(shown), ncols, None, panel_size=(3.0, 2.4))
    for sid, a in zip(shown, axes, strict=True):
        sub = rec[(rec["ID"] == sid).to_numpy()]
        for an, arec in sub.groupby("ANALYTE", sort=False):
            _draw(a, arec, colour[an], str(an))
            _lloq_lines(a, arec, color=colour[an])
        log_panel(a)
        a.set_title(str(sid))
        a.set_xlabel(time_label(getattr(data, "time_unit", None)))
    if len(analytes) > 1:
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], color=colour[an], marker="o", ms=4, label=str(an))
                   for an in analytes]  # fmt: skip
        axes[0].legend(handles=handles, fontsize="small", frameon=False)
    if len(shown) < len(subjects):
        fig.suptitle(f"first {len(shown)} of {len(subjects)} subjects")
    return fig
