"""Goodness of fit: observations against PRED and IPRED, NPDE against time and prediction.

:func:`gof_table` gathers, for every record a fit used, what the standard GOF panels draw:

- ``PRED``: the typical subject's prediction (random effects 0, the subject's covariates and
  whole dosing history), posterior median;
- ``IPRED``: the subject's own prediction (its posterior individual parameters), posterior
  median;
- ``NPDE`` and ``PD``: normalised prediction distribution errors from new virtual subjects
  (:mod:`ckmodel.diagnostics.npde`), BLQ records imputed through their censoring, not dropped;
- ``STRATUM``: the subject's stratum under ``stratify`` (dose level ...).

BLQ records keep ``DV`` NaN and ``BLQ`` True; plots draw them at their LLOQ.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["gof_table"]


def gof_table(fit: Any, *, n_draws: int = 200, n_sim: int = 1000, seed: int = 1,
              stratify: str | None = None, replicates: Any = None) -> pd.DataFrame:
    """Per-record predictions and residuals of a fit (see the module docstring).

    Parameters
    ----------
    fit : Fit
        The fit, with its data.
    n_draws : int
        Posterior draws for PRED and IPRED (evenly thinned; deterministic).
    n_sim : int
        Replicates of the trial for NPDE.
    seed : int
        Seed of the NPDE simulations and BLQ imputation.

    Other Parameters
    ----------------
    stratify : str, optional
        Subject-level column for ``STRATUM`` (default one stratum ``"all"``).
    replicates : Replicates, optional
        Reuse simulations (:func:`~ckmodel.diagnostics.virtual.simulate_replicates`).

    Returns
    -------
    pandas.DataFrame
        ``ID``, ``ANALYTE``, ``TIME`` (model time unit), ``DV``, ``BLQ``, ``LLOQ``, ``ROW``,
        ``PRED``, ``IPRED`` (analyte units), ``NPDE``, ``PD``, ``STRATUM``; attrs
        ``time_unit``, ``units`` (analyte -> unit), ``n_draws``, ``n_sim``, ``seed``,
        ``stratify``.
    """
    from ckmodel.diagnostics.npde import npde
    from ckmodel.diagnostics.strata import subject_strata
    from ckmodel.diagnostics.virtual import record_predictions

    rec = record_predictions(fit, n_draws=n_draws)
    res = npde(fit, n_sim=n_sim, seed=seed, replicates=replicates)
    if not np.array_equal(res["ROW"].to_numpy(), rec["ROW"].to_numpy()):
        raise RuntimeError("NPDE and predictions disagree on the records")  # pragma: no cover
    rec["NPDE"] = res["NPDE"].to_numpy()
    rec["PD"] = res["PD"].to_numpy()
    strata = subject_strata(fit.data, stratify, list(dict.fromkeys(rec["ID"])))
    rec["STRATUM"] = pd.Categorical(strata.reindex(rec["ID"].to_numpy()).to_numpy(),
                                    categories=strata.cat.categories, ordered=True)
    rec.attrs.update(n_sim=res.attrs["n_sim"], seed=int(seed), stratify=stratify,
                     amount_unit=getattr(fit.spec, "amount_unit", ""))
    return rec
