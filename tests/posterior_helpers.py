"""A Fit with a posterior written by hand: known typical values, covariate effects and IIV.

Virtual patients, dose selection and the CK-guided design read only the posterior variables a
fit stores (``theta``, ``eta``, ``omega``, ``beta``, ``sigma_<A>``); building them from known
numbers gives exact oracles without sampling.
"""

from __future__ import annotations

import arviz as az
import numpy as np
import xarray as xr

from ckmodel.fitting import Fit
from ckmodel.population.covariates import covariate_design, parse_covariates
from ckmodel.spec import from_scale, load_model, to_scale


def hand_fit(data, model="expansion_biphasic", *, formulas=(), beta=(), n_chain=2, n_draw=40,
             seed=0, spread=0.05):
    """A Fit of ``data`` whose posterior draws are typical values (jittered by ``spread`` on
    each parameter's scale), ``beta`` (one per effect column), ``omega`` (the spec's IIV
    medians, jittered) and random ``eta``; returns the fit and the arrays used."""
    spec = load_model(model)
    rng = np.random.default_rng(seed)
    subjects = [str(s) for s in data.covariates.index]
    pnames = list(spec.param_names)
    iiv = [p.name for p in spec.parameters if p.iiv is not None]
    shape = (n_chain, n_draw)
    mu = np.stack([to_scale(np.asarray(spec.typical_values()[p], float), spec.parameter(p).scale)
                   + spread * rng.standard_normal(shape) for p in pnames], axis=-1)
    omega = np.stack([spec.parameter(p).iiv.median() * np.exp(0.1 * rng.standard_normal(shape))
                      for p in iiv], axis=-1)
    eta = rng.standard_normal((*shape, len(subjects), len(iiv))) * omega[:, :, None, :]
    g = np.broadcast_to(mu[:, :, None, :], (*shape, len(subjects), len(pnames))).copy()
    labels = []
    b_draws = np.zeros((*shape, 0))
    if formulas:
        cols = []
        for eff in parse_covariates(list(formulas)):
            series = data.covariates[eff.covariate].reindex(subjects)
            series.index = series.index.astype(str)
            x, labs, _, _ = covariate_design(eff, series)
            for j, lab in enumerate(labs):
                cols.append((pnames.index(eff.parameter), x[:, j]))
                labels.append(lab)
        b_draws = np.asarray(beta, float)[None, None, :] + 0.02 * rng.standard_normal(
            (*shape, len(labels)))
        for k, (j, x) in enumerate(cols):
            g[..., j] += b_draws[:, :, k, None] * x[None, None, :]
    for k, p in enumerate(iiv):
        g[..., pnames.index(p)] += eta[..., k]
    theta = np.stack([from_scale(g[..., j], spec.parameter(p).scale)
                      for j, p in enumerate(pnames)], axis=-1)
    post = {"theta": (("chain", "draw", "subject", "parameter"), theta),
            "eta": (("chain", "draw", "subject", "iiv"), eta),
            "omega": (("chain", "draw", "iiv"), omega)}
    for o in spec.outputs:
        post[f"sigma_{o.name}"] = (("chain", "draw"), np.full(shape, 0.3))
    coords = {"chain": np.arange(n_chain), "draw": np.arange(n_draw), "subject": subjects,
              "parameter": pnames, "iiv": iiv}
    if labels:
        post["beta"] = (("chain", "draw", "covariate_effect"), b_draws)
        coords["covariate_effect"] = labels
    idata = az.InferenceData(posterior=xr.Dataset(post, coords=coords))
    meta = {"covariate_formulas": list(formulas), "covariates": labels, "time_scale": 1.0,
            "analytes": list(spec.output_names), "seed": seed}
    fit = Fit(idata=idata, spec=spec, data=data, meta=meta)
    return fit, {"mu": mu, "omega": omega, "eta": eta, "beta": b_draws, "g": g}
