"""Posterior predictive replicates and pointwise log-likelihood of a closed-form fit.

PyMC's :func:`pymc.sample_posterior_predictive` evaluates the model's graph once per draw
from Python, and :func:`pymc.compute_log_likelihood` compiles a vectorised graph with the C
backend: on the example trial's three analytes and 4,000 draws the two took about 9 s of a
30 s fit. For a closed-form model the prediction of every record is one call of the fused
kernel the likelihood uses (:class:`~ckmodel.population.closed_kernel.ClosedFormOp`), so
:func:`record_draws` compiles one small function of a draw's individual parameters ``theta``
and residual SDs through PyTensor's numba backend (whose disk cache holds it; a second fit
compiles nothing) and calls it per draw. It returns

* the replicates: every record drawn with
  :func:`~ckmodel.population.residual.sample_residual`, the function the model's own
  ``random`` uses, around ``pred(theta_draw)`` with that draw's SDs, uncensored (a replicate
  of a BLQ record is a draw of the value, not of the censoring), as PyMC would give them in
  distribution;
* the pointwise log-likelihood: :func:`~ckmodel.population.residual.pointwise_loglik`, the
  model's own definition (M3 censored terms on BLQ records), for LOO.

ODE models are left to PyMC (the fit falls back to it).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pytensor
import pytensor.tensor as pt
import xarray as xr

from ckmodel.population.closed_kernel import ClosedFormOp
from ckmodel.population.model import obs_dim
from ckmodel.population.predict import closed_kernels
from ckmodel.population.prepare import PopulationData
from ckmodel.population.residual import RESIDUAL_MODELS, TINY, pointwise_loglik, sample_residual
from ckmodel.spec.model import ModelSpec

__all__ = ["record_draws"]


def _sd_names(analyte: str, error: str) -> list[str]:
    return [f"sigma_{analyte}"] + ([f"sigma_prop_{analyte}"] if error == "combined" else [])


def record_draws(posterior: xr.Dataset, spec: ModelSpec, pdata: PopulationData,
                 errors: Mapping[str, str], *, seed: int, replicates: bool = True,
                 loglik: bool = True) -> tuple[xr.Dataset | None, xr.Dataset | None]:
    """Replicates and log-likelihood of every fitted record for every posterior draw.

    Parameters
    ----------
    posterior : xarray.Dataset
        The fit's posterior: ``theta`` on (``chain``, ``draw``, ``subject``, ``parameter``),
        natural scale, and ``sigma_<analyte>`` (``sigma_prop_<analyte>`` for the combined
        model) on (``chain``, ``draw``).
    spec : ModelSpec
        The fitted model; it must have a closed form (see
        :func:`~ckmodel.population.predict.uses_ode`).
    pdata : PopulationData
        The fitted records.
    errors : mapping of str to str
        Residual error model of each analyte (:meth:`PopulationOptions.error_models`).
    seed : int
        Seed of the residual draws (NumPy ``default_rng``).
    replicates, loglik : bool
        Which of the two to compute.

    Returns
    -------
    (xarray.Dataset or None, xarray.Dataset or None)
        Replicates (DV units) and pointwise log-likelihood, each with ``y_<analyte>`` on
        (``chain``, ``draw``, ``obs_<analyte>``), records in data order with their row
        numbers as coordinates (as the fit's ``observed_data``); None where not asked for.
    """
    theta = posterior["theta"].transpose("chain", "draw", "subject", "parameter")
    order = [list(map(str, theta.parameter.values)).index(p) for p in spec.param_names]
    values = np.ascontiguousarray(theta.values[..., order], dtype=float)
    n_c, n_d = values.shape[:2]
    flat = values.reshape(n_c * n_d, *values.shape[2:])
    kernels = closed_kernels(spec, pdata)
    sd_names = [n for a in kernels for n in _sd_names(a, errors[a])]
    sds = {n: posterior[n].transpose("chain", "draw").values.reshape(-1) for n in sd_names}
    t = pt.matrix("theta")
    sd_vars = {n: pt.scalar(n) for n in sd_names}
    outputs, sel = [], {}
    for a_i, (a, kernel) in enumerate(kernels.items()):
        err = errors[a]
        sel[a] = np.flatnonzero(pdata.analyte_index == a_i)
        pred = ClosedFormOp(kernel)(t)[0]
        if RESIDUAL_MODELS[err].positive:
            pred = pt.maximum(pred, TINY)
        outputs.append(pred)
        if loglik:
            blq = pdata.blq[sel[a]]
            value = np.where(blq, pdata.lloq[sel[a]], pdata.dv[sel[a]])
            s = [sd_vars[n] for n in _sd_names(a, err)]
            outputs.append(pointwise_loglik(err, pred, value, blq, s[0],
                                            sigma_prop=s[1] if len(s) > 1 else None,
                                            nu=spec.output(a).nu,
                                            blq_method=pdata.blq_method))
    fn = pytensor.function([t, *sd_vars.values()], outputs, mode="NUMBA",
                           on_unused_input="ignore")
    per_draw = [fn(th, *(sds[n][i] for n in sd_names)) for i, th in enumerate(flat)]
    arrays = [np.stack(col) for col in zip(*per_draw, strict=True)]
    rng = np.random.default_rng(seed)
    pp, ll = {}, {}
    step = 2 if loglik else 1
    for k, a in enumerate(kernels):
        err = errors[a]
        dim = obs_dim(a)
        coords = {"chain": theta.chain.values, "draw": theta.draw.values,
                  dim: pdata.row[sel[a]]}
        pred = arrays[k * step]
        if replicates:
            s = [sds[n][:, None] for n in _sd_names(a, err)]
            y = sample_residual(err, pred, s[0], rng, sigma_prop=s[1] if len(s) > 1 else None,
                                nu=spec.output(a).nu)
            pp[f"y_{a}"] = xr.DataArray(y.reshape(n_c, n_d, -1),
                                        dims=("chain", "draw", dim), coords=coords)
        if loglik:
            ll[f"y_{a}"] = xr.DataArray(arrays[k * step + 1].reshape(n_c, n_d, -1),
                                        dims=("chain", "draw", dim), coords=coords)
    return (xr.Dataset(pp) if replicates else None, xr.Dataset(ll) if loglik else None)
