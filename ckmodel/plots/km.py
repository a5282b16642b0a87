"""Kaplan-Meier curves with censoring marks and the numbers at risk under the time axis.

Matplotlib is imported inside the function (the Agg backend is chosen without a display, as in
:mod:`ckmodel.plots.profiles`). The curves are those of
:func:`ckmodel.response.km_by_group`, so a figure shows the numbers of
:func:`ckmodel.response.endpoint_table`, HSCT rule included.

Drawing conventions:

- one panel per endpoint, one step curve per group (Okabe-Ito colour-blind-safe palette,
  with a different line style per group so curves stay apart in grey scale too);
- censored subjects: a ``+`` on the curve at their censoring time;
- optional pointwise confidence band (``conf_int=True``), shaded in the group's colour;
- under each panel, the number at risk at each time tick, one row per group;
- the time axis names its origin (infusion, response, MRD negativity) and the unit.

Artists carry a ``gid``: ``"km:<endpoint>:<group>"`` (curve), ``"censor:<endpoint>:<group>"``
(marks), ``"band:<endpoint>:<group>"`` and ``"risk:<endpoint>:<group>"`` (the at-risk text).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ckmodel.plots._style import pyplot as _pyplot

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_km", "OKABE_ITO"]

#: Okabe & Ito (2008) colour-blind-safe palette, black last.
OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442",
             "#000000")
_STYLES = ("-", "--", "-.", ":")
_ORIGIN = {"EFS": "infusion", "OS": "infusion", "DOR": "response", "MRD_DUR": "MRD negativity"}


def _curve(ax: Axes, km: Any, color: str, ls: str, key: str, label: str, band: bool) -> None:
    t = np.concatenate([[0.0], km["time"].to_numpy(dtype=float)])
    s = np.concatenate([[1.0], km["survival"].to_numpy(dtype=float)])
    ax.step(t, s, where="post", color=color, ls=ls, lw=1.6, label=label, gid=f"km:{key}")
    if band:
        lo = np.concatenate([[1.0], km["lower"].to_numpy(dtype=float)])
        hi = np.concatenate([[1.0], km["upper"].to_numpy(dtype=float)])
        ax.fill_between(t, np.nan_to_num(lo), np.nan_to_num(hi, nan=0.0), step="post",
                        color=color, alpha=0.15, lw=0, gid=f"band:{key}")
    cens = km["n_censor"].to_numpy() > 0
    if np.any(cens):
        ax.plot(km["time"].to_numpy(dtype=float)[cens], km["survival"].to_numpy()[cens],
                ls="none", marker="+", ms=8, mew=1.4, color=color, gid=f"censor:{key}")


def _risk_row(ax: Axes, km: Any, ticks: np.ndarray, y: float, color: str, key: str,
              label: str) -> None:
    from ckmodel.response import km_at

    risk = km_at(km, ticks)["n_risk"].to_numpy()
    for x, n in zip(ticks, risk, strict=True):
        ax.text(x, y, str(int(n)), ha="center", va="center", fontsize="small", color=color,
                gid=f"risk:{key}")
    ax.text(-0.04, y, label, transform=ax.get_yaxis_transform(), ha="right", va="center",
            fontsize="small", color=color)


def plot_km(
    data: Any,
    endpoints: str | Sequence[str] | None = None,
    *,
    by: str | None = None,
    covariates: Any = None,
    hsct: str = "censor",
    conf_int: bool = False,
    time_unit: str | None = None,
    ncols: int = 2,
    panel_size: tuple[float, float] = (5.0, 3.6),
) -> Figure:
    """Kaplan-Meier curves of time-to-event endpoints, with censoring marks and numbers at risk.

    Parameters
    ----------
    data : pandas.DataFrame or CKData
        Outcomes indexed by ID (:func:`~ckmodel.data.read_outcomes`) or CK data read with its
        outcomes (covariates then available for ``by``).
    endpoints : str or sequence of str, optional
        Among ``EFS``, ``OS``, ``DOR``, ``MRD_DUR``; default: every one the table has.

    Other Parameters
    ----------------
    by : str, optional
        Column whose values give one curve each (outcomes column or subject covariate);
        default one curve for all subjects.
    covariates : pandas.DataFrame, optional
        Subject covariates (index ID) that ``by`` may name.
    hsct : {"censor", "ignore"}
        HSCT rule (:func:`ckmodel.response.time_to_event`); the rule is in each panel title.
    conf_int : bool
        Shade the pointwise 95 % interval (log scale, as survfit) of each curve.
    time_unit : str, optional
        Unit of the times for the axis label (default: the CKData's, else ``day``).
    ncols : int
        Panels per row.
    panel_size : tuple of float
        Width and height of one panel in inches, at-risk table included.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        When an endpoint is unknown or has no data, or ``by`` names no column.

    Examples
    --------
    >>> from ckmodel.data import read_outcomes
    >>> from ckmodel.resources import example_data
    >>> fig = plot_km(read_outcomes(example_data("example_trial")[1]), ["EFS", "OS"])
    >>> [a.get_title() for a in fig.axes if a.get_title()]
    ['EFS (censored at allo-HSCT)', 'OS (not censored at HSCT)']
    """
    from ckmodel.response import TIME_TO_EVENT, km_by_group

    unit = time_unit or getattr(data, "time_unit", None) or "day"
    table = getattr(data, "outcomes", data)
    if table is None:
        raise ValueError("the data have no outcomes table")
    if endpoints is None:
        endpoints = [k for k, s in TIME_TO_EVENT.items() if s.time in table.columns]
        if not endpoints:
            raise ValueError("the outcomes table has no time-to-event columns (EFS_TIME, "
                             "OS_TIME, DOR_TIME, MRD_DUR_TIME)")
    elif isinstance(endpoints, str):
        endpoints = [endpoints]
    curves = {}
    for ep in endpoints:
        if ep not in TIME_TO_EVENT:
            raise ValueError(f"unknown endpoint {ep!r}; use one of {', '.join(TIME_TO_EVENT)}")
        groups = km_by_group(data, ep, by=by, covariates=covariates, hsct=hsct)
        if by is not None:
            groups = {k: v for k, v in groups.items() if k != "ALL"}
        if not groups:
            raise ValueError(f"{ep}: no subject has {TIME_TO_EVENT[ep].time}")
        curves[ep] = groups

    plt = _pyplot()
    n = len(curves)
    ncols = max(1, min(int(ncols), n))
    nrows = math.ceil(n / ncols)
    n_groups = max(len(g) for g in curves.values())
    risk_h = 0.35 + 0.22 * n_groups
    fig = plt.figure(figsize=(panel_size[0] * ncols, (panel_size[1] + 0.22 * n_groups) * nrows),
                     layout="constrained")
    grid = fig.add_gridspec(2 * nrows, ncols, height_ratios=[panel_size[1] - 1, risk_h] * nrows)
    for i, (ep, groups) in enumerate(curves.items()):
        r, c = divmod(i, ncols)
        ax = fig.add_subplot(grid[2 * r, c])
        rax = fig.add_subplot(grid[2 * r + 1, c], sharex=ax)
        for j, (label, km) in enumerate(groups.items()):
            _curve(ax, km, OKABE_ITO[j % len(OKABE_ITO)], _STYLES[j % len(_STYLES)],
                   f"{ep}:{label}", f"{label} (n={km.attrs['n']})", conf_int)
        tmax = max(float(km["time"].max()) for km in groups.values())
        ax.set_xlim(0, tmax * 1.03 if tmax > 0 else 1.0)
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel(f"{TIME_TO_EVENT[ep].label}\n(probability)")
        rule = next(iter(groups.values())).attrs["hsct_rule"].split(": ", 1)[1].split(" (")[0]
        ax.set_title(f"{ep} ({'times as given' if rule.endswith('as given') else rule})")
        ax.grid(alpha=0.3)
        if len(groups) > 1 or by is not None:
            ax.legend(fontsize="small", frameon=False, loc="best")
        ax.tick_params(labelbottom=False)
        ticks = np.array([t for t in ax.get_xticks() if 0 <= t <= ax.get_xlim()[1]])
        for j, (label, km) in enumerate(groups.items()):
            _risk_row(rax, km, ticks, -j, OKABE_ITO[j % len(OKABE_ITO)], f"{ep}:{label}",
                      label.split("=", 1)[-1])
        rax.set_ylim(-len(groups) + 0.4, 0.6)
        rax.set_yticks([])
        for side in ("top", "right", "left"):
            rax.spines[side].set_visible(False)
        rax.set_title("number at risk" + (f" by {by}" if by else ""), fontsize="small",
                      loc="left")
        rax.set_xlabel(f"time since {_ORIGIN[ep]} ({unit}s)")
    return fig
