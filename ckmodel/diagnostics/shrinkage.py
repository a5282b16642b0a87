"""Eta shrinkage per parameter.

For a parameter ``p`` with random effects ``eta_ip`` (on the parameter's log, logit or linear
scale) and ``N`` subjects::

    shrinkage_p = 1 - SD_i( E[eta_ip | y] ) / omega_p

where ``E[eta_ip | y]`` is subject ``i``'s posterior mean random effect (the Bayesian analogue
of the empirical Bayes estimate), ``SD_i`` the sample standard deviation over subjects
(``N - 1`` in the denominator) and ``omega_p`` the posterior mean of the IIV SD (Savic &
Karlsson 2009). Near 0 the data pin each subject's parameter down; above about 0.3 individual
estimates shrink towards the typical value, and plots of them against covariates or of
individual predictions against observations mislead. ``kind="var"`` gives the variance form
``1 - Var_i(E[eta_ip | y]) / omega_p^2``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["eta_shrinkage", "SHRINKAGE_HIGH"]

#: Shrinkage above this is flagged (``high``).
SHRINKAGE_HIGH = 0.3


def eta_shrinkage(fit: Any, *, kind: str = "sd") -> pd.DataFrame:
    """Eta shrinkage of every parameter with a random effect (formula in the module docstring).

    Parameters
    ----------
    fit : Fit or arviz.InferenceData
        A fit, or its InferenceData: the posterior needs ``eta`` (chain, draw, subject, iiv)
        and ``omega`` (chain, draw, iiv).
    kind : {"sd", "var"}
        Standard-deviation form (default, as NONMEM reports it) or variance form.

    Returns
    -------
    pandas.DataFrame
        Indexed by parameter: ``omega`` (posterior mean IIV SD, on the parameter's scale),
        ``sd_eta`` (SD over subjects of the posterior mean etas), ``shrinkage`` (fraction,
        0-1; negative when the etas spread more than omega), ``high`` (above
        :data:`SHRINKAGE_HIGH`); attrs ``kind``, ``n_subjects``.

    Examples
    --------
    >>> import numpy as np, xarray as xr, arviz as az
    >>> eta = np.array([-1.0, 0.0, 1.0])[None, None, :, None] * np.ones((1, 2, 3, 1))
    >>> post = xr.Dataset({"eta": (("chain", "draw", "subject", "iiv"), eta),
    ...                    "omega": (("chain", "draw", "iiv"), np.full((1, 2, 1), 2.0))},
    ...                   coords={"iiv": ["rho"]})
    >>> round(float(eta_shrinkage(az.InferenceData(posterior=post))["shrinkage"]["rho"]), 3)
    0.5
    """
    if kind not in ("sd", "var"):
        raise ValueError(f"kind must be 'sd' or 'var', got {kind!r}")
    idata = getattr(fit, "idata", fit)
    post = idata.posterior
    if "eta" not in post or "omega" not in post:
        return pd.DataFrame(columns=["omega", "sd_eta", "shrinkage", "high"])
    eta = post["eta"]
    iiv_dim = eta.dims[-1]
    subj_dim = [d for d in eta.dims if d not in ("chain", "draw", iiv_dim)][0]
    names = [str(v) for v in eta[iiv_dim].values]
    ebe = eta.mean(("chain", "draw")).transpose(subj_dim, iiv_dim).values
    omega = post["omega"].mean(("chain", "draw")).values
    sd = np.std(ebe, axis=0, ddof=1) if ebe.shape[0] > 1 else np.full(len(names), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        shr = 1 - sd / omega if kind == "sd" else 1 - sd**2 / omega**2
    out = pd.DataFrame({"omega": omega, "sd_eta": sd, "shrinkage": shr,
                        "high": shr > SHRINKAGE_HIGH}, index=pd.Index(names, name="parameter"))
    out.attrs.update(kind=kind, n_subjects=int(ebe.shape[0]))
    return out
