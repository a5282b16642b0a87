"""Priors against posteriors: what the data taught about each population quantity.

Every typical value, IIV SD and residual SD with a prior is compared with its posterior on
the scale its random effect lives on (log for ``log`` parameters, logit for ``logit``,
linear otherwise and for SDs). Densities are of the transformed value (the natural-scale
prior density times the Jacobian), so the prior curve and the posterior histogram are
densities of the same quantity.

Posterior contraction is ``1 - (IQR posterior / IQR prior)^2`` on that scale, the
interquartile form of ``1 - Var(posterior) / Var(prior)`` (Schad, Betancourt & Vasishth
2021) that also exists for heavy-tailed priors (HalfCauchy): near 1 the data dominate, near
0 the prior does, below 0 the posterior is wider than the prior.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import special

from ckmodel.spec.prior import Prior

__all__ = ["prior_posterior_items", "prior_posterior_table", "prior_posterior_densities",
           "N_PRIOR_DRAWS"]

#: Prior draws behind the axis ranges and the prior IQR (seeded, so deterministic).
N_PRIOR_DRAWS = 20_000


def _forward(x: np.ndarray, scale: str) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(x) if scale == "log" else special.logit(x) if scale == "logit" else x


def _backward(u: np.ndarray, scale: str) -> np.ndarray:
    return np.exp(u) if scale == "log" else special.expit(u) if scale == "logit" else u


def _jacobian(x: np.ndarray, scale: str) -> np.ndarray:
    """dx/du for u the transformed value."""
    return x if scale == "log" else x * (1 - x) if scale == "logit" else np.ones_like(x)


def _prior_draws(prior: Prior, scale: str, seed: int) -> np.ndarray:
    u = _forward(np.asarray(prior.sample(np.random.default_rng(seed), N_PRIOR_DRAWS), float),
                 scale)
    return u[np.isfinite(u)]


def prior_posterior_items(fit: Any) -> list[dict[str, Any]]:
    """The quantities with a prior, and their posterior draws.

    Parameters
    ----------
    fit : Fit
        The fit.

    Returns
    -------
    list of dict
        ``name`` (``rho``, ``omega_rho``, ``sigma_PB_QPCR``), ``kind`` (``typical value``,
        ``IIV SD``, ``residual SD``), ``unit``, ``scale`` (of the comparison), ``prior``
        (:class:`~ckmodel.spec.prior.Prior`) and ``draws`` (natural scale, flattened over
        chains and draws).
    """
    post = fit.posterior
    items = []
    for p in fit.spec.parameters:
        var = f"{p.name}_pop"
        if var in post:
            items.append({"name": p.name, "kind": "typical value", "unit": p.unit,
                          "scale": p.scale, "prior": p.prior,
                          "draws": np.asarray(post[var].values, float).ravel()})
        if p.iiv is not None and "omega" in post and p.name in post["omega"].coords["iiv"]:
            items.append({"name": f"omega_{p.name}", "kind": "IIV SD",
                          "unit": f"{p.scale} scale", "scale": "linear", "prior": p.iiv,
                          "draws": np.asarray(post["omega"].sel(iiv=p.name).values,
                                              float).ravel()})
    for o in fit.spec.outputs:
        for var, prior in ((f"sigma_{o.name}", o.sigma), (f"sigma_prop_{o.name}", o.sigma_prop)):
            if var in post and prior is not None:
                items.append({"name": var, "kind": "residual SD", "unit": "",
                              "scale": "linear", "prior": prior,
                              "draws": np.asarray(post[var].values, float).ravel()})
    return items


def prior_posterior_table(fit: Any, *, seed: int = 1) -> pd.DataFrame:
    """Prior as written, posterior median and 95 % CrI, and posterior contraction.

    Parameters
    ----------
    fit : Fit
        The fit.
    seed : int
        Seed of the prior draws behind the prior IQR.

    Returns
    -------
    pandas.DataFrame
        Indexed by quantity: ``kind``, ``unit``, ``prior``, ``median``, ``lower``, ``upper``
        (natural scale and unit), ``contraction`` (see the module docstring).
    """
    rows = []
    for it in prior_posterior_items(fit):
        u_post = _forward(it["draws"], it["scale"])
        u_post = u_post[np.isfinite(u_post)]
        u_prior = _prior_draws(it["prior"], it["scale"], seed)
        lo, med, hi = np.quantile(it["draws"], [0.025, 0.5, 0.975])
        q1, q3 = np.quantile(u_prior, [0.25, 0.75])
        p1, p3 = np.quantile(u_post, [0.25, 0.75])
        contraction = 1.0 - ((p3 - p1) / (q3 - q1)) ** 2 if q3 > q1 else np.nan
        rows.append({"quantity": it["name"], "kind": it["kind"], "unit": it["unit"],
                     "prior": str(it["prior"]), "median": med, "lower": lo, "upper": hi,
                     "contraction": contraction})
    cols = ["kind", "unit", "prior", "median", "lower", "upper", "contraction"]
    return (pd.DataFrame(rows).set_index("quantity") if rows
            else pd.DataFrame(columns=cols, index=pd.Index([], name="quantity")))


def prior_posterior_densities(fit: Any, *, seed: int = 1, bins: int = 40,
                              n_grid: int = 400) -> list[dict[str, Any]]:
    """Prior density curves and posterior histograms, ready to draw.

    Parameters
    ----------
    fit : Fit
        The fit.
    seed : int
        Seed of the prior draws that set the range (1st-99th prior percentile, widened to
        hold the posterior's 0.1-99.9th).
    bins : int
        Histogram bins (equal width on the comparison scale).
    n_grid : int
        Points of the prior curve.

    Returns
    -------
    list of dict
        Per quantity, the keys of :func:`prior_posterior_items` less ``draws``, plus ``x``
        (natural-scale grid), ``prior_density`` (density of the transformed value at ``x``),
        ``edges`` (natural-scale histogram edges) and ``posterior_density`` (per bin).
    """
    out = []
    for it in prior_posterior_items(fit):
        scale = it["scale"]
        u_post = _forward(it["draws"], scale)
        u_post = u_post[np.isfinite(u_post)]
        u_prior = _prior_draws(it["prior"], scale, seed)
        lo = min(np.quantile(u_prior, 0.01), np.quantile(u_post, 0.001))
        hi = max(np.quantile(u_prior, 0.99), np.quantile(u_post, 0.999))
        if scale == "linear" and it["kind"] != "typical value":
            lo = 0.0
        x = _backward(np.linspace(lo, hi, n_grid), scale)
        edges = np.linspace(lo, hi, bins + 1)
        h, _ = np.histogram(u_post, bins=edges)
        entry = {k: v for k, v in it.items() if k != "draws"}
        entry.update(x=x, prior_density=it["prior"].pdf(x) * _jacobian(x, scale),
                     edges=_backward(edges, scale),
                     posterior_density=h / (max(u_post.size, 1) * np.diff(edges)))
        out.append(entry)
    return out
