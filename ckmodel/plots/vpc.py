"""VPC and pcVPC figures, with the observed against simulated fraction BLQ beneath each panel.

Layout: for each analyte two rows (the VPC, then its BLQ fraction), one column per stratum
(dose level ...), x shared by all panels, y shared along each analyte's row; log y. In a VPC
panel the shaded areas are the 95 % intervals over replicates of the simulated 5th/95th
(blue) and 50th (orange) percentiles, dashed lines their medians; solid lines with markers the
observed percentiles (blank where censored), grey points the observations (BLQ records as open
triangles at their LLOQ), the dotted line the LLOQ.

Artists carry a ``gid`` for inspection: ``sim-p05``, ``sim-p50``, ``sim-p95`` (bands),
``obs-p05``/``obs-p50``/``obs-p95``, ``obs-points``, ``obs-blq-points``, ``lloq``,
``blq-obs`` (observed BLQ fraction), ``blq-sim`` (its band).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ckmodel.plots._style import GREY, OKABE_ITO, grid, log_panel, time_label, value_label

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["plot_vpc"]

_BAND = {"P05": OKABE_ITO["blue"], "P50": OKABE_ITO["orange"], "P95": OKABE_ITO["blue"]}


def _steps(tab: Any, col: str) -> tuple[np.ndarray, np.ndarray]:
    """Bin-wise constant values drawn over each bin's extent."""
    x = np.column_stack([tab["T_LO"], tab["T_HI"]]).ravel()
    y = np.repeat(tab[col].to_numpy(float), 2)
    return x, y


def plot_vpc(result: Any, *, analytes: str | Sequence[str] | None = None,
             show_observations: bool = True, log: bool = True) -> Figure:
    """Draw a VPC or pcVPC (:func:`ckmodel.diagnostics.vpc`).

    Parameters
    ----------
    result : VPC
        From :func:`ckmodel.diagnostics.vpc`.
    analytes : str or sequence of str, optional
        Analytes to draw (default all of the result).

    Other Parameters
    ----------------
    show_observations : bool
        Draw the observations as points.
    log : bool
        Log y axis (CK data).

    Returns
    -------
    matplotlib.figure.Figure
        Rows: per analyte a VPC row and a BLQ-fraction row; columns: strata titled with the
        dose and number of subjects; x labelled with the time unit, y with the analyte's unit.
    """
    tab = result.table
    obs = result.observed
    names = list(result.edges) if analytes is None else (
        [analytes] if isinstance(analytes, str) else list(analytes))
    unknown = [a for a in names if a not in result.edges]
    if unknown:
        raise ValueError(f"no VPC for analyte(s) {unknown}; the VPC has {list(result.edges)}")
    strata = list(result.labels) or sorted(tab["STRATUM"].unique())
    fig, axes = grid(2 * len(names), len(strata), sharex=True, sharey=False,
                     height_ratios=[3, 1] * len(names),
                     panel=(max(3.8, 7.5 / len(strata)), 3.0))
    prefix = "Prediction-corrected\n" if result.pc else ""
    for i, a in enumerate(names):
        main_row, blq_row = axes[2 * i], axes[2 * i + 1]
        for j, s in enumerate(strata):
            ax, bx = main_row[j], blq_row[j]
            t = tab[(tab["ANALYTE"] == a) & (tab["STRATUM"] == s)].sort_values("BIN")
            o = obs[(obs["ANALYTE"] == a) & (obs["STRATUM"] == s)]
            if j:
                ax.sharey(main_row[0])
                bx.sharey(blq_row[0])
            for tag in ("P05", "P50", "P95"):
                if t.empty:
                    continue
                x, lo = _steps(t, f"SIM_{tag}_LO")
                _, hi = _steps(t, f"SIM_{tag}_HI")
                ax.fill_between(x, lo, hi, color=_BAND[tag], alpha=0.25, lw=0,
                                gid=f"sim-{tag.lower()}")
                ax.plot(t["TIME"], t[f"SIM_{tag}_MED"], color=_BAND[tag], ls="--", lw=1)
                ax.plot(t["TIME"], t[f"OBS_{tag}"], color="black" if tag == "P50" else "0.25",
                        marker="o", ms=3, lw=1.4 if tag == "P50" else 1,
                        gid=f"obs-{tag.lower()}")
            if show_observations and len(o):
                q = o[~o["BLQ"].to_numpy(bool)]
                b = o[o["BLQ"].to_numpy(bool)]
                ax.plot(q["TIME"], q["Y"], ls="none", marker="o", ms=2.5, color=GREY,
                        alpha=0.6, gid="obs-points")
                if len(b):
                    ax.plot(b["TIME"], b["Y"], ls="none", marker="v", ms=4, mfc="none",
                            color=GREY, gid="obs-blq-points")
            if not result.pc:
                for v in np.unique(o["LLOQ"].to_numpy(float)):
                    if np.isfinite(v) and v > 0:
                        ax.axhline(v, color=GREY, ls=":", lw=1, gid="lloq")
            if log:
                log_panel(ax)
            if i == 0:
                ax.set_title(result.labels.get(s, str(s)), fontsize="medium")
            if not t.empty and t["OBS_BLQ"].notna().any():
                x, lo = _steps(t, "SIM_BLQ_LO")
                _, hi = _steps(t, "SIM_BLQ_HI")
                bx.fill_between(x, lo, hi, color=OKABE_ITO["vermillion"], alpha=0.25, lw=0,
                                gid="blq-sim")
                bx.plot(t["TIME"], t["SIM_BLQ_MED"], color=OKABE_ITO["vermillion"], ls="--",
                        lw=1)
                bx.plot(t["TIME"], t["OBS_BLQ"], color="black", marker="o", ms=3, lw=1,
                        gid="blq-obs")
            bx.set_ylim(-0.03, 1.03)
            if j == 0:
                ax.set_ylabel(prefix + value_label(a, result.units.get(a)))
                bx.set_ylabel("Fraction BLQ")
            if i == len(names) - 1:
                bx.set_xlabel(time_label(result.time_unit))
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [Line2D([], [], color="black", marker="o", ms=3, label="observed median"),
               Line2D([], [], color="0.25", marker="o", ms=3, label="observed 5th/95th"),
               Patch(color=OKABE_ITO["orange"], alpha=0.4, label="simulated median, 95% CI"),
               Patch(color=OKABE_ITO["blue"], alpha=0.4, label="simulated 5th/95th, 95% CI"),
               Patch(color=OKABE_ITO["vermillion"], alpha=0.4, label="simulated BLQ, 95% CI")]
    fig.legend(handles=handles, loc="outside lower center", ncols=5 if len(strata) > 2 else 3,
               fontsize="small", frameon=False)
    kind = "pcVPC" if result.pc else "VPC"
    fig.suptitle(f"{kind}: {result.n_sim} replicates of the trial with new subjects "
                 f"(seed {result.seed})", fontsize="medium")
    return fig
