"""Posterior predictive replicates and pointwise log-likelihood of a closed-form fit.

PyMC's :func:`pymc.sample_posterior_predictive` evaluates the model's graph once per draw
from Python, and :func:`pymc.compute_log_likelihood` compiles a vectorised graph with the C
backend: on the example trial's three analytes and 4,000 draws the two took 7.2 and 2.0 s
(under the profiler) of a 38 s fit. For a closed-form model the prediction of every record
is one call of the fused kernel the likelihood uses
(:class:`~ckmodel.population.closed_kernel.ClosedFormOp`), so
:func:`record_draws` compiles one small function of a draw's individual parameters ``theta``
through PyTensor's numba backend (whose disk cache holds it; a second fit of the same data
compiles nothing) and calls it per draw. It returns

* the replicates: every record drawn with
  :func:`~ckmodel.population.residual.sample_residual`, the function the model's own
  ``random`` uses, around ``pred(theta_draw)`` with that draw's SDs, uncensored (a replicate
  of a BLQ record is a draw of the value, not of the censoring), as PyMC would give them in
  distribution;
* the pointwise log-likelihood for LOO: the numba scalars of
  :data:`~ckmodel.population.residual.RESIDUAL_MODELS` that the fused likelihood sums (M3
  censored terms on BLQ records), in one loop over draws and records compiled once per
  installation (with a graph of :func:`~ckmodel.population.residual.pointwise_loglik`
  compiled per data set instead, both took 10.2 s on a cold cache, now 5.3 s); the
  Student-t model, which has no numba scalar, through that graph.

ODE models are left to PyMC (the fit falls back to it).
"""

from __future__ import annotations

from collections.abc import Mapping

import numba
import numpy as np
import pytensor
import pytensor.tensor as pt
import xarray as xr

from ckmodel.population.closed_kernel import ClosedFormOp
from ckmodel.population.model import obs_dim
from ckmodel.population.predict import closed_kernels
from ckmodel.population.prepare import PopulationData
from ckmodel.population.residual import (
    FUSED_ERRORS,
    RESIDUAL_MODELS,
    TINY,
    fused_records,
    pointwise_loglik,
    sample_residual,
)
from ckmodel.spec.model import ModelSpec

__all__ = ["record_draws"]


def _sd_names(analyte: str, error: str) -> list[str]:
    return [f"sigma_{analyte}"] + ([f"sigma_prop_{analyte}"] if error == "combined" else [])


_LOG_NORMAL = RESIDUAL_MODELS["log_normal"].numba
_PROPORTIONAL = RESIDUAL_MODELS["proportional"].numba
_ADDITIVE = RESIDUAL_MODELS["additive"].numba
_COMBINED = RESIDUAL_MODELS["combined"].numba
#: The fused error models, numbered as :func:`_pointwise` takes them.
_CODES = {"log_normal": 0, "proportional": 1, "additive": 2, "combined": 3}
assert set(_CODES) == set(FUSED_ERRORS)


@numba.njit(cache=True)
def _pointwise(code: int, pred: np.ndarray, value: np.ndarray, log_value: np.ndarray,
               kind: np.ndarray, s1: np.ndarray, s2: np.ndarray) -> np.ndarray:
    """Log-likelihood of each record (columns) for each draw (rows), error model ``code``."""
    out = np.empty(pred.shape)
    for d in range(pred.shape[0]):
        a, b = s1[d], s2[d]
        for k in range(pred.shape[1]):
            f, v, lv, c = pred[d, k], value[k], log_value[k], kind[k]
            if code == 0:
                out[d, k] = _LOG_NORMAL(f, v, lv, c, a, b)[0]
            elif code == 1:
                out[d, k] = _PROPORTIONAL(f, v, lv, c, a, b)[0]
            elif code == 2:
                out[d, k] = _ADDITIVE(f, v, lv, c, a, b)[0]
            else:
                out[d, k] = _COMBINED(f, v, lv, c, a, b)[0]
    return out


def _student_t_loglik(pred: np.ndarray, value: np.ndarray, blq: np.ndarray, sigma: np.ndarray,
                      nu: float, blq_method: str) -> np.ndarray:
    """The pointwise graph of the Student-t model, draw by draw (no numba scalar)."""
    p, s = pt.vector("pred"), pt.scalar("sigma")
    fn = pytensor.function([p, s], pointwise_loglik("student_t", p, value, blq, s, nu=nu,
                                                    blq_method=blq_method))
    return np.stack([fn(row, sd) for row, sd in zip(pred, sigma, strict=True)])


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
    t = pt.matrix("theta")
    outputs = []
    for a, kernel in kernels.items():
        pred = ClosedFormOp(kernel)(t)[0]
        outputs.append(pt.maximum(pred, TINY) if RESIDUAL_MODELS[errors[a]].positive else pred)
    fn = pytensor.function([t], outputs, mode="NUMBA")
    preds = [np.stack(col) for col in zip(*(fn(th) for th in flat), strict=True)]
    rng = np.random.default_rng(seed)
    pp, ll = {}, {}
    for a_i, (a, pred) in enumerate(zip(kernels, preds, strict=True)):
        err, nu = errors[a], spec.output(a).nu
        sel, value, blq = pdata.analyte_records(a_i)
        dim = obs_dim(a)
        coords = {"chain": theta.chain.values, "draw": theta.draw.values, dim: pdata.row[sel]}
        # residual SD(s) of each draw, in the order of the draws of theta
        s = [posterior[n].transpose("chain", "draw").values.reshape(-1)
             for n in _sd_names(a, err)]
        if replicates:
            y = sample_residual(err, pred, s[0][:, None], rng,
                                sigma_prop=s[1][:, None] if len(s) > 1 else None, nu=nu)
            pp[f"y_{a}"] = xr.DataArray(y.reshape(n_c, n_d, -1),
                                        dims=("chain", "draw", dim), coords=coords)
        if loglik:
            if err in _CODES:
                v, log_v, kind = fused_records(a, err, value, blq, pdata.blq_method)
                lp = _pointwise(_CODES[err], np.ascontiguousarray(pred), v, log_v, kind,
                                np.ascontiguousarray(s[0]),
                                np.ascontiguousarray(s[1] if len(s) > 1 else s[0]))
            else:
                lp = _student_t_loglik(pred, value, blq, s[0], nu, pdata.blq_method)
            ll[f"y_{a}"] = xr.DataArray(lp.reshape(n_c, n_d, -1),
                                        dims=("chain", "draw", dim), coords=coords)
    return (xr.Dataset(pp) if replicates else None, xr.Dataset(ll) if loglik else None)
