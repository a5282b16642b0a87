"""The convergence verdict as a pass/fail table (reusing :mod:`ckmodel.fitting.convergence`).

:func:`ckmodel.fitting.convergence.check_convergence` computes the sampler diagnostics (ArviZ
R-hat, bulk/tail ESS and E-BFMI; divergences and tree-depth hits from ``sample_stats``);
this module lays them out one check per row, each with its threshold and verdict, for reports
and the command line, and adds the verdict to the per-parameter table.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ckmodel.fitting.convergence import (
    BFMI_MIN,
    ESS_MIN,
    RHAT_MAX,
    check_convergence,
    convergence_table,
)

__all__ = ["convergence_checks", "parameter_convergence"]


def convergence_checks(fit: Any, *, max_treedepth: int = 10) -> pd.DataFrame:
    """One row per sampler check with its value, threshold and verdict.

    Parameters
    ----------
    fit : Fit or arviz.InferenceData
        The fit (or its InferenceData, with ``posterior`` and ``sample_stats``).
    max_treedepth : int
        The sampler's maximum tree depth (10 for nutpie, PyMC and Stan).

    Returns
    -------
    pandas.DataFrame
        Indexed by check: ``max R-hat`` (<= 1.01), ``min bulk ESS`` and ``min tail ESS``
        (>= 400), ``divergences`` (0), ``tree-depth hits`` (0 draws at ``max_treedepth``),
        ``min E-BFMI`` (>= 0.3 in every chain), ``lagging chains`` (none); columns
        ``value``, ``threshold`` (text), ``passed`` (bool; NaN value when the sampler does not
        record the statistic, e.g. Pathfinder/ADVI, and then passed is True) and
        ``detail``; attrs ``ok`` (every check passed) and ``problems`` (what to do, one line
        each, from :func:`~ckmodel.fitting.convergence.check_convergence`).
    """
    idata = getattr(fit, "idata", fit)
    c = check_convergence(idata, max_treedepth=max_treedepth, warn=False)
    nan = float("nan")
    flagged = c.get("flagged", [])
    rows = [
        ("max R-hat", c.get("max_rhat", nan), f"<= {RHAT_MAX}",
         lambda v: v <= RHAT_MAX, f"{len(flagged)} parameter(s) flagged" if flagged else ""),
        ("min bulk ESS", c.get("min_ess_bulk", nan), f">= {ESS_MIN}",
         lambda v: v >= ESS_MIN, ""),
        ("min tail ESS", c.get("min_ess_tail", nan), f">= {ESS_MIN}",
         lambda v: v >= ESS_MIN, ""),
        ("divergences", c.get("divergences", nan), "0", lambda v: v == 0,
         f"per chain {c['divergences_per_chain']}" if "divergences_per_chain" in c else ""),
        ("tree-depth hits", c.get("treedepth_hits", nan), f"0 at depth {max_treedepth}",
         lambda v: v == 0,
         f"mean depth {c['mean_tree_depth']:.1f}" if "mean_tree_depth" in c else ""),
        ("min E-BFMI", c.get("min_bfmi", nan), f">= {BFMI_MIN}", lambda v: v >= BFMI_MIN, ""),
        ("lagging chains", float(len(c.get("lagging_chains", []))), "none",
         lambda v: v == 0, ", ".join(map(str, c.get("lagging_chains", [])))),
    ]
    out = pd.DataFrame(
        [{"check": name, "value": float(v),
          "threshold": thr, "passed": bool(ok(v)) if np.isfinite(v) else True, "detail": d}
         for name, v, thr, ok, d in rows]).set_index("check")
    out.attrs.update(ok=bool(out["passed"].all()), problems=list(c.get("problems", [])),
                     chains=c.get("chains"), draws=c.get("draws"))
    return out


def parameter_convergence(fit: Any) -> pd.DataFrame:
    """R-hat and bulk/tail ESS per population-level parameter, with a ``passed`` column.

    :func:`~ckmodel.fitting.convergence.convergence_table` (ArviZ) plus ``passed``:
    R-hat <= 1.01 and both ESS >= 400.
    """
    table = convergence_table(getattr(fit, "idata", fit)).copy()
    table["passed"] = ((table["r_hat"] <= RHAT_MAX) & (table["ess_bulk"] >= ESS_MIN)
                       & (table["ess_tail"] >= ESS_MIN))
    return table
