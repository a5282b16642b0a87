"""Priors (curves) against posteriors (histograms), one panel per population quantity."""

from __future__ import annotations

from typing import Any

from ckmodel.plots._style import OKABE_ITO, grid, n_cols

__all__ = ["plot_prior_posterior"]


def plot_prior_posterior(fit: Any, *, ncols: int = 4, seed: int = 1, bins: int = 40) -> Any:
    """Prior density against posterior histogram of each typical value, IIV SD and residual SD.

    Typical values are drawn on the scale of their random effect (log or logit axis), SDs on
    a linear axis from 0; both curves are densities of the same quantity
    (:func:`ckmodel.diagnostics.prior_posterior_densities`).

    Parameters
    ----------
    fit : Fit
        The fit.
    ncols : int
        Panels per row.
    seed : int
        Seed of the prior draws that set the axis ranges.
    bins : int
        Histogram bins.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.ticker import NullFormatter

    from ckmodel.diagnostics.priors import prior_posterior_densities

    items = prior_posterior_densities(fit, seed=seed, bins=bins)
    nrows, nc = n_cols(max(len(items), 1), ncols)
    fig, axes = grid(nrows, nc, panel=(3.3, 2.4))
    for ax in axes.ravel()[len(items):]:
        ax.set_visible(False)
    for ax, it in zip(axes.ravel(), items, strict=False):
        scale = it["scale"]
        ax.stairs(it["posterior_density"], it["edges"], fill=True, color=OKABE_ITO["sky"],
                  alpha=0.7, label="posterior")
        ax.plot(it["x"], it["prior_density"], color=OKABE_ITO["vermillion"], lw=1.6,
                label="prior")
        if scale in ("log", "logit"):
            ax.set_xscale(scale)
            # narrow ranges get labelled minor ticks that overlap: keep the major ones
            ax.xaxis.set_minor_formatter(NullFormatter())
        unit = f" ({it['unit']})" if it["unit"] and it["unit"] != "-" else ""
        ax.set_title(f"{it['name']}: {it['kind']}", fontsize="medium")
        ax.set_xlabel(f"{it['name']}{unit}", fontsize="small")
        on = {"log": "log ", "logit": "logit "}.get(scale, "")
        ax.set_ylabel(f"density of {on}value", fontsize="small")
        ax.set_yticks([])
        ax.tick_params(labelsize="small")
    if items:
        axes.ravel()[0].legend(fontsize="small", frameon=False)
    fig.suptitle("Priors (lines) against posteriors (histograms)", fontsize="medium")
    return fig
