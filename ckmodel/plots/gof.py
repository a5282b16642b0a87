"""Goodness-of-fit figures: observations against PRED and IPRED, NPDE against time and PRED.

One row per analyte, four panels: DV against PRED and DV against IPRED (log-log, identity
line), NPDE against time and NPDE against PRED (log x; lines at 0 and +-1.96). Colours are the
strata (dose levels). BLQ records are drawn at their LLOQ as open triangles in the DV panels
and as open triangles in the NPDE panels (their NPDE comes from the censoring imputation).

Artists carry a ``gid``: ``dv-pred:<stratum>``, ``dv-ipred:<stratum>``, ``npde-time:<stratum>``,
``npde-pred:<stratum>`` (quantified), the same with ``-blq`` for BLQ records, ``identity``,
``npde-ref``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ckmodel.plots._style import GREY, PALETTE, grid, log_panel, time_label, value_label

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["plot_gof"]


def plot_gof(table: Any, *, analytes: str | Sequence[str] | None = None,
             **gof_options: Any) -> Figure:
    """Draw the GOF panels of a fit.

    Parameters
    ----------
    table : pandas.DataFrame or Fit
        :func:`ckmodel.diagnostics.gof_table`'s result, or a fit (the table is then made with
        ``gof_options``, e.g. ``stratify="DOSE_LEVEL"``, ``seed=1``).
    analytes : str or sequence of str, optional
        Analytes to draw (default all).

    Returns
    -------
    matplotlib.figure.Figure
        One row per analyte; axes labelled with the analyte's unit and the time unit.
    """
    if not isinstance(table, pd.DataFrame):
        from ckmodel.diagnostics import gof_table

        table = gof_table(table, **gof_options)
    names = list(pd.unique(table["ANALYTE"])) if analytes is None else (
        [analytes] if isinstance(analytes, str) else list(analytes))
    units = table.attrs.get("units", {})
    strata = list(table["STRATUM"].cat.categories) if hasattr(table["STRATUM"], "cat") else \
        list(pd.unique(table["STRATUM"]))
    strata = [s for s in strata if (table["STRATUM"] == s).any()]
    colour = {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(strata)}
    fig, axes = grid(len(names), 4, panel=(3.4, 3.0))
    stratify = table.attrs.get("stratify")
    for i, a in enumerate(names):
        rec = table[table["ANALYTE"] == a]
        if rec.empty:
            raise ValueError(f"no records of analyte {a!r} in the GOF table")
        y = np.where(rec["BLQ"], rec["LLOQ"], rec["DV"]).astype(float)
        ax_p, ax_i, ax_t, ax_n = axes[i]
        for s in strata:
            m = (rec["STRATUM"] == s).to_numpy()
            for blq in (False, True):
                k = m & (rec["BLQ"].to_numpy(bool) == blq)
                if not k.any():
                    continue
                style = dict(ls="none", ms=3.5 if not blq else 4.5, color=colour[s],
                             marker="v" if blq else "o", mfc="none" if blq else colour[s],
                             alpha=0.7)
                tag = f"{s}-blq" if blq else str(s)
                label = None
                if not blq and i == 0 and stratify:
                    label = f"{stratify} {s}"
                ax_p.plot(rec["PRED"].to_numpy()[k], y[k], gid=f"dv-pred:{tag}", label=label,
                          **style)
                ax_i.plot(rec["IPRED"].to_numpy()[k], y[k], gid=f"dv-ipred:{tag}", **style)
                ax_t.plot(rec["TIME"].to_numpy()[k], rec["NPDE"].to_numpy()[k],
                          gid=f"npde-time:{tag}", **style)
                ax_n.plot(rec["PRED"].to_numpy()[k], rec["NPDE"].to_numpy()[k],
                          gid=f"npde-pred:{tag}", **style)
        unit = units.get(a)
        pos = np.concatenate([y, rec["PRED"].to_numpy(float), rec["IPRED"].to_numpy(float)])
        pos = pos[np.isfinite(pos) & (pos > 0)]
        lim = (pos.min() / 2, pos.max() * 2) if pos.size else (1e-1, 1e1)
        for ax, what in ((ax_p, "PRED"), (ax_i, "IPRED")):
            ax.plot(lim, lim, color=GREY, lw=1, gid="identity")
            log_panel(ax, "both")
            ax.set_xlim(lim)
            ax.set_ylim(lim)
            ax.set_xlabel(value_label(f"{what} {a}", unit))
            ax.set_ylabel(value_label(f"Observed {a}", unit))
        for ax in (ax_t, ax_n):
            for v, ls in ((0.0, "-"), (-1.96, "--"), (1.96, "--")):
                ax.axhline(v, color=GREY, ls=ls, lw=1, gid="npde-ref")
            ax.set_ylabel("NPDE")
        ax_t.set_xlabel(time_label(table.attrs.get("time_unit")))
        log_panel(ax_n, "x")
        ax_n.set_xlabel(value_label(f"PRED {a}", unit))
        if i == 0:
            ax_p.set_title("Observed vs population prediction", fontsize="medium")
            ax_i.set_title("Observed vs individual prediction", fontsize="medium")
            ax_t.set_title("NPDE vs time", fontsize="medium")
            ax_n.set_title("NPDE vs population prediction", fontsize="medium")
            if stratify:
                ax_p.legend(fontsize="x-small", frameon=False)
    fig.suptitle("Goodness of fit (open triangles: BLQ records at the LLOQ)", fontsize="medium")
    return fig
