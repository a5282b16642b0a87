"""Rank plots of the population-level parameters (ArviZ ``plot_rank``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ckmodel.plots._style import pyplot

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["plot_rank"]


def plot_rank(fit: Any, var_names: Sequence[str] | None = None) -> Figure:
    """Rank plots per chain (Vehtari et al. 2021): flat histograms when the chains mix.

    Parameters
    ----------
    fit : Fit or arviz.InferenceData
        The fit.
    var_names : sequence of str, optional
        Posterior variables (default the typical values ``<p>_pop``, ``omega`` and the
        residual SDs ``sigma_<A>``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    pyplot()
    from ckmodel._arviz import az

    idata = getattr(fit, "idata", fit)
    post = idata.posterior
    if var_names is None:
        var_names = [v for v in post.data_vars
                     if str(v).endswith("_pop") or v == "omega" or str(v).startswith("sigma")]
    axes = az.plot_rank(idata, var_names=list(var_names), kind="bars", show=False)
    ax = axes.ravel()[0] if hasattr(axes, "ravel") else axes
    fig = ax.figure
    fig.suptitle("Rank plots (uniform when chains mix)", fontsize="medium")
    return fig
