"""Individual fits: each subject's observations with its posterior prediction band.

The band is :meth:`ckmodel.fitting.Fit.predict` (90 % credible band and median of the
noise-free individual prediction over the subject's whole dosing history); points are the
observations (BLQ records as open triangles at their LLOQ), one colour per analyte; dose
times are marked by ticks at the bottom.

Artists carry a ``gid``: ``band:<analyte>``, ``median:<analyte>``, ``obs:<analyte>``,
``blq:<analyte>``, ``dose``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ckmodel.plots._style import PALETTE, grid, log_panel, n_cols, time_label, value_label

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["plot_individual"]


def plot_individual(fit: Any, subjects: Sequence[str] | None = None, *,
                    analytes: str | Sequence[str] | None = None, max_subjects: int = 12,
                    ncols: int = 4, n_draws: int = 200, times: Any = None,
                    prediction: Any = None) -> Figure:
    """One log-y panel per subject: observations and the individual posterior band.

    Parameters
    ----------
    fit : Fit
        The fit, with its data.
    subjects : sequence of str, optional
        Subjects to draw (default the first ``max_subjects`` of the fit).

    Other Parameters
    ----------------
    analytes : str or sequence of str, optional
        Analytes (default every fitted analyte).
    max_subjects : int
        At most this many panels when ``subjects`` is not given.
    ncols : int
        Panels per row.
    n_draws : int
        Posterior draws for the band.
    times : array, optional
        Prediction times, model time unit (default :meth:`Fit.time_grid`).
    prediction : xarray.Dataset, optional
        ``fit.predict(times, n_draws=n_draws)`` made once for several figures (pages of
        subjects); default: made here. It must hold the 0.05, 0.5 and 0.95 quantiles.

    Returns
    -------
    matplotlib.figure.Figure
        Panels titled by subject and dose, x and y shared; y labelled with the analytes'
        units.
    """
    from ckmodel.diagnostics import fit_records
    from ckmodel.diagnostics.strata import first_dose

    rec = fit_records(fit)
    all_ids = list(dict.fromkeys(rec["ID"]))
    ids = all_ids[:max(1, int(max_subjects))] if subjects is None else [str(s) for s in subjects]
    missing = [s for s in ids if s not in all_ids]
    if missing:
        raise ValueError(f"subject(s) {missing} are not in the fit")
    names = list(dict.fromkeys(rec["ANALYTE"])) if analytes is None else (
        [analytes] if isinstance(analytes, str) else list(analytes))
    pred = (fit.predict(times, n_draws=n_draws, quantiles=(0.05, 0.5, 0.95))
            if prediction is None else prediction)
    colour = {a: PALETTE[i % len(PALETTE)] for i, a in enumerate(names)}
    nrows, nc = n_cols(len(ids), ncols)
    fig, axes = grid(nrows, nc, sharex=True, sharey=True, panel=(3.2, 2.6))
    flat = list(axes.ravel())
    for extra in flat[len(ids):]:
        extra.set_visible(False)
    scale = float(fit.meta.get("time_scale", 1.0))
    doses = fit.data.doses
    amount = getattr(fit.spec, "amount_unit", "")
    dose1 = first_dose(fit.data, ids)
    for sid, ax in zip(ids, flat, strict=False):
        for a in names:
            p = pred["pred"].sel(subject=sid, analyte=a)
            t = pred["time"].values
            ax.fill_between(t, p.sel(quantile=0.05), p.sel(quantile=0.95), color=colour[a],
                            alpha=0.25, lw=0, gid=f"band:{a}")
            ax.plot(t, p.sel(quantile=0.5), color=colour[a], lw=1.2, gid=f"median:{a}")
            r = rec[(rec["ID"] == sid) & (rec["ANALYTE"] == a)]
            q, b = r[~r["BLQ"]], r[r["BLQ"]]
            ax.plot(q["TIME"], q["DV"], ls="none", marker="o", ms=3.5, color=colour[a],
                    gid=f"obs:{a}")
            if len(b):
                ax.plot(b["TIME"], b["LLOQ"], ls="none", marker="v", ms=4.5, mfc="none",
                        color=colour[a], gid=f"blq:{a}")
        dt = doses.loc[doses["ID"].astype(str) == sid, "TIME"].to_numpy(float) * scale
        ax.plot(dt, np.zeros_like(dt), ls="none", marker="|", ms=10, color="black",
                transform=ax.get_xaxis_transform(), gid="dose", clip_on=False)
        log_panel(ax)
        d = dose1.get(sid, np.nan)
        ax.set_title(f"{sid}: {d:g} {amount}".strip() if np.isfinite(d) else sid,
                     fontsize="small")
    units = dict(zip(pred["analyte"].values, pred["unit"].values, strict=True))
    shown = list(dict.fromkeys(units.get(a) for a in names))
    label = value_label(names[0], shown[0]) if len(names) == 1 else (
        f"Level ({'; '.join(u for u in shown if u)})")
    for r in range(nrows):
        axes[r, 0].set_ylabel(label, fontsize="small")
    sel = rec[rec["ID"].isin(ids) & rec["ANALYTE"].isin(names)]
    low = np.concatenate([sel["DV"].dropna().to_numpy(float), sel["LLOQ"].to_numpy(float)])
    low = low[np.isfinite(low) & (low > 0)]
    if low.size:  # the band's early rise and late tail would otherwise set the axis
        flat[0].set_ylim(bottom=low.min() / 20)
    for ax in flat[max(0, len(ids) - nc):len(ids)]:
        ax.set_xlabel(time_label(fit.spec.time_unit))
        ax.xaxis.set_tick_params(labelbottom=True)
    if len(names) > 1:
        from matplotlib.lines import Line2D

        fig.legend(handles=[Line2D([], [], color=colour[a], marker="o", ms=3.5,
                                   label=value_label(a, units.get(a)))
                            for a in names], loc="outside lower center", ncols=len(names),
                   fontsize="small", frameon=False)
    fig.suptitle(f"Individual fits: posterior median and 90% band ({pred.attrs['n_draws']} "
                 "draws; BLQ at LLOQ)", fontsize="medium")
    return fig
