"""Exposure-response figures: model curves against observed proportions, KM, forest plot."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ckmodel.plots._style import GREY, OKABE_ITO, PALETTE, grid

__all__ = ["plot_response", "plot_forest"]


def _table(res: Any) -> dict[str, np.ndarray]:
    cd = res.idata.constant_data
    return {k: np.asarray(cd[k].values, float) for k in cd.data_vars}


def _as_entered(x: np.ndarray, scale: str) -> np.ndarray:
    return np.exp(x) if scale == "log" else x


def plot_response(res: Any, *, bins: int = 3, level: float = 0.95, ax: Any = None,
                  threshold: float | None = None) -> Any:
    """The fitted exposure-response relation against the data.

    Binary and ordinal (P(grade >= ``threshold``)): posterior median probability with its
    ``level`` band over the observed exposure range (covariates at their means), and the
    observed proportion in ``bins`` exposure quantile bins with Clopper-Pearson intervals,
    drawn at the bin's median exposure. Time to event: Kaplan-Meier curves per exposure
    tertile with the model's survival at each tertile's median exposure.

    Parameters
    ----------
    res : ResponseFit
        From :func:`ckmodel.response.fit_response` (with an exposure term).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from ckmodel.response.estimators import clopper_pearson, kaplan_meier

    if res.exposure_metric is None:
        raise ValueError("this model has no exposure term to plot against")
    if ax is None:
        fig, axes = grid(1, 1, panel=(5.6, 3.8))
        ax = axes[0, 0]
    else:
        fig = ax.figure
    data = _table(res)
    x = _as_entered(data["X"], res.exposure_scale)
    label = res.exposure_metric
    lo_q, hi_q = (1 - level) / 2, 1 - (1 - level) / 2
    edges = np.quantile(x, np.linspace(0, 1, bins + 1))
    group = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, bins - 1)
    if res.kind in ("binary", "ordinal"):
        grid_x = (np.geomspace(x.min(), x.max(), 120) if res.exposure_scale == "log"
                  else np.linspace(x.min(), x.max(), 120))
        p = res.probability(grid_x, threshold=threshold)
        ax.fill_between(grid_x, np.quantile(p, lo_q, axis=0), np.quantile(p, hi_q, axis=0),
                        color=OKABE_ITO["sky"], alpha=0.35, lw=0,
                        label=f"model, {100 * level:g} % CrI")
        ax.plot(grid_x, np.median(p, axis=0), color=OKABE_ITO["blue"], lw=2, label="model")
        if res.kind == "ordinal":
            cats = res.meta["categories"]
            k = int(cats[-1] if threshold is None else threshold)
            hit = data["Y"] >= k
            what = f"P({res.endpoint} >= {k})"
        else:
            hit = data["Y"] == 1
            what = f"P({res.endpoint})"
        for g in range(bins):
            m = group == g
            n, e = int(m.sum()), int(hit[m].sum())
            if n == 0:
                continue
            lo, hi = clopper_pearson(e, n, conf_level=level)
            xm = float(np.median(x[m]))
            ax.errorbar([xm], [e / n], yerr=[[e / n - lo], [hi - e / n]], fmt="o",
                        color="black", capsize=3, label="observed (exact CI)" if g == 0 else None)
            ax.annotate(f"{e}/{n}", (xm, hi), textcoords="offset points", xytext=(0, 4),
                        ha="center", fontsize="small")
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel(what)
    else:
        t, d = data["TIME"], data["EVENT"]
        horizon = np.linspace(0.0, float(np.max(t)), 100)[1:]
        for g in range(bins):
            m = group == g
            if not m.any():
                continue
            km = kaplan_meier(t[m], d[m])
            colour = PALETTE[g % len(PALETTE)]
            ax.step(np.concatenate([[0.0], km["time"]]), np.concatenate([[1.0], km["survival"]]),
                    where="post", color=colour, lw=1.4,
                    label=f"tertile {g + 1} (n={int(m.sum())}): KM" if bins == 3
                    else f"bin {g + 1} (n={int(m.sum())}): KM")
            xm = float(np.median(x[m]))
            surv = 1.0 - res.event_probability([xm], horizon)[:, 0, :]
            ax.plot(horizon, np.median(surv, axis=0), color=colour, ls="--", lw=1.2)
            ax.fill_between(horizon, np.quantile(surv, lo_q, axis=0),
                            np.quantile(surv, hi_q, axis=0), color=colour, alpha=0.15, lw=0)
        ax.plot([], [], color=GREY, ls="--", label="model at the bin's median exposure")
        ax.set_ylim(0, 1.02)
        ax.set_ylabel(f"{res.endpoint}: probability event-free")
        ax.set_xlabel(f"Time ({res.meta.get('time_unit', 'day')}s)")
    if res.kind != "tte":
        if res.exposure_scale == "log":
            ax.set_xscale("log")
        ax.set_xlabel(f"{label}" + (f" ({res.meta['exposure_unit']})"
                                    if res.meta.get("exposure_unit") else ""))
    ax.legend(fontsize="small", frameon=False)
    ax.set_title(f"{res.endpoint} against {label} ({res.model}, {res.uncertainty})",
                 fontsize="medium")
    return fig


def plot_forest(fits: Sequence[Any], *, level: float = 0.95) -> Any:
    """Forest plot of every slope of the given fits (log odds / log hazard ratios)."""
    rows = []
    for res in fits:
        coef = res.coefficients(level).set_index("term")
        for term in res.term_names():
            r = coef.loc[term]
            rows.append((f"{res.endpoint} ({res.uncertainty}): {term}", r["median"], r["lower"],
                         r["upper"], res.kind))
    fig, axes = grid(1, 1, panel=(6.4, max(1.6, 0.35 * len(rows) + 1.0)))
    ax = axes[0, 0]
    for i, (_name, med, lo, hi, kind) in enumerate(reversed(rows)):
        colour = OKABE_ITO["vermillion"] if kind == "tte" else OKABE_ITO["blue"]
        ax.plot([lo, hi], [i, i], color=colour, lw=2)
        ax.plot([med], [i], "o", color=colour)
    ax.axvline(0.0, color=GREY, lw=1)
    ax.set_yticks(range(len(rows)), [r[0] for r in reversed(rows)], fontsize="small")
    ax.set_xlabel(f"Effect per unit entered: log odds ratio (blue) or log hazard ratio "
                  f"(red), median and {100 * level:g} % CrI")
    return fig
