"""Residual-error models, each defined once, with BLQ censoring (M3).

An observation ``y`` of an analyte scatters around the model prediction ``f`` by one of the
models below; ``s1`` is the residual SD (``sigma_<A>``), ``s2`` the proportional SD of the
combined model (``sigma_prop_<A>``), ``nu`` the degrees of freedom of the Student-t model.

============  ==========================================  =====================================
model         distribution                                scale of ``s1``
============  ==========================================  =====================================
log_normal    ``log y ~ Normal(log f, s1)``               log DV (about the CV for small s1)
student_t     ``log y ~ log f + s1 * StudentT(nu)``       log DV
proportional  ``y ~ Normal(f, s1 * f)``                   relative to the prediction
additive      ``y ~ Normal(f, s1)``                       DV units
combined      ``y ~ Normal(f, sqrt(s1^2 + (s2 f)^2))``    DV units (``s2`` relative)
============  ==========================================  =====================================

Densities are of ``y`` on the DV scale (the log-scale models include the ``-log y`` Jacobian).
Models that need ``f > 0`` (log scales, proportional) floor it at :data:`TINY`. A record below
the LLOQ contributes ``log P(y < LLOQ)`` under M3 and nothing under M1.

:data:`RESIDUAL_MODELS` maps each model to its three implementations, which must agree:

* ``sample``: NumPy draws (:func:`sample_residual`: simulation and posterior predictive);
* ``logp``: PyTensor log density or log-CDF (:func:`pointwise_loglik`: the reference graph,
  for every backend: C, numba, JAX);
* ``numba``: scalar log density or log-CDF with its derivatives in the prediction and the SDs,
  for the fused kernels (:mod:`~ckmodel.population.closed_loglik`,
  :mod:`~ckmodel.population.ode_loglik`); None for Student-t, which keeps the graph.

PyTensor is imported when first used, so simulation can import this module without it. The
normal log-CDF avoids ``erfcx`` (no JAX implementation without tensorflow-probability):
``log(erfc(-z/sqrt2)/2)`` for ``-20 <= z <= 0``, ``log1p(-erfc(z/sqrt2)/2)`` for ``z > 0``
and, below -20, the asymptotic series ``-z^2/2 - log(-z) - log(2 pi)/2 + log(1 - 1/z^2 + 3/z^4
- 15/z^6)``; all agree with ``scipy.special.log_ndtr`` to better than 1e-6 relative (tested).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

__all__ = ["CENSORED", "FUSED_ERRORS", "LOG_2PI", "LOG_NDTR_SWITCH", "QUANTIFIED",
           "RESIDUAL_MODELS", "SKIPPED", "TINY", "ResidualModel", "check_blq_method",
           "fused_records", "log_ndtr", "pointwise_loglik", "sample_residual", "scalar_log_ndtr"]

LOG_2PI = math.log(2.0 * math.pi)
#: Below this z the normal log-CDF uses its asymptotic series.
LOG_NDTR_SWITCH = -20.0
#: Floor of predictions for models that need them positive.
TINY = 1e-300
_HALF_LOG_2PI = 0.5 * LOG_2PI
_SQRT2 = math.sqrt(2.0)

#: Record kinds of the fused kernels: density, log P(y < LLOQ) (M3), nothing (M1).
QUANTIFIED, CENSORED, SKIPPED = 0, 1, 2


def _pt() -> Any:
    import pytensor.tensor as pt

    return pt


# ----------------------------------------------------------------------------- PyTensor
def log_ndtr(z: Any) -> Any:
    """Logarithm of the standard normal CDF, stable far into the lower tail (PyTensor)."""
    pt = _pt()
    z = pt.as_tensor_variable(z)
    zs = pt.minimum(z, LOG_NDTR_SWITCH)  # keep the unused branch finite
    z2 = zs * zs
    tail = (-0.5 * z2 - pt.log(-zs) - 0.5 * LOG_2PI
            + pt.log1p(-1.0 / z2 + 3.0 / (z2 * z2) - 15.0 / (z2 * z2 * z2)))
    zc = pt.maximum(z, LOG_NDTR_SWITCH)
    zn = pt.minimum(zc, 0.0)
    zp = pt.maximum(zc, 0.0)
    lower = pt.log(0.5 * pt.erfc(-zn / math.sqrt(2.0)))
    upper = pt.log1p(-0.5 * pt.erfc(zp / math.sqrt(2.0)))  # accurate near log(1) = 0
    return pt.switch(z < LOG_NDTR_SWITCH, tail, pt.switch(z > 0, upper, lower))


def _pt_normal(value: Any, pred: Any, sd: Any, censored: bool) -> Any:
    if censored:
        return log_ndtr((value - pred) / sd)
    pt = _pt()
    return -0.5 * ((value - pred) / sd) ** 2 - pt.log(sd) - 0.5 * LOG_2PI


# each returns the log density of ``value`` or, censored, log P(y < value)
def _logp_log_normal(pred: Any, value: Any, s1: Any, s2: Any, nu: float, censored: bool) -> Any:
    pt = _pt()
    x = pt.log(value)
    z = (x - pt.log(pred)) / s1
    if censored:
        return log_ndtr(z)
    return -0.5 * z**2 - pt.log(s1) - 0.5 * LOG_2PI - x


def _logp_student_t(pred: Any, value: Any, s1: Any, s2: Any, nu: float, censored: bool) -> Any:
    pt = _pt()
    x = pt.log(value)
    z = (x - pt.log(pred)) / s1
    if censored:
        tail = 0.5 * pt.betainc(nu / 2, 0.5, nu / (nu + z**2))
        return pt.log(pt.switch(z < 0, tail, 1.0 - tail))
    return (pt.gammaln((nu + 1) / 2) - pt.gammaln(nu / 2) - 0.5 * pt.log(nu * math.pi)
            - pt.log(s1) - (nu + 1) / 2 * pt.log1p(z**2 / nu) - x)


def _logp_proportional(pred: Any, value: Any, s1: Any, s2: Any, nu: float,
                       censored: bool) -> Any:
    return _pt_normal(value, pred, s1 * pred, censored)


def _logp_additive(pred: Any, value: Any, s1: Any, s2: Any, nu: float, censored: bool) -> Any:
    return _pt_normal(value, pred, s1 * _pt().ones_like(pred), censored)


def _logp_combined(pred: Any, value: Any, s1: Any, s2: Any, nu: float, censored: bool) -> Any:
    return _pt_normal(value, pred, _pt().sqrt(s1**2 + (s2 * pred) ** 2), censored)


# ----------------------------------------------------------------------------- numba
@numba.njit(inline="always", cache=True)
def scalar_log_ndtr(z: float) -> tuple[float, float]:
    """``log Phi(z)`` and its derivative (numba; the same branches as :func:`log_ndtr`)."""
    if z < LOG_NDTR_SWITCH:
        z2 = z * z
        ser = -1.0 / z2 + 3.0 / (z2 * z2) - 15.0 / (z2 * z2 * z2)
        val = -0.5 * z2 - math.log(-z) - _HALF_LOG_2PI + math.log1p(ser)
        dser = 2.0 / (z2 * z) - 12.0 / (z2 * z2 * z) + 90.0 / (z2 * z2 * z2 * z)
        return val, -z - 1.0 / z + dser / (1.0 + ser)
    if z > 0.0:
        val = math.log1p(-0.5 * math.erfc(z / _SQRT2))
    else:
        val = math.log(0.5 * math.erfc(-z / _SQRT2))
    return val, math.exp(-0.5 * z * z - _HALF_LOG_2PI - val)


@numba.njit(inline="always", cache=True)
def _nb_normal(value: float, pred: float, sd: float, cens: int) -> tuple[float, float, float]:
    """Log density (or log-CDF when censored) of N(pred, sd) at value; d/dpred, d/dsd."""
    z = (value - pred) / sd
    if cens == CENSORED:
        lv, dz = scalar_log_ndtr(z)
        return lv, -dz / sd, -dz * z / sd
    return -0.5 * z * z - math.log(sd) - _HALF_LOG_2PI, z / sd, (z * z - 1.0) / sd


# each: (pred, value, log value, record kind, s1, s2) -> (l, dl/dpred, dl/ds1, dl/ds2)
@numba.njit(inline="always", cache=True)
def _nb_log_normal(pred: float, value: float, log_value: float, cens: int, s1: float,
                   s2: float) -> tuple[float, float, float, float]:
    if cens == SKIPPED:
        return 0.0, 0.0, 0.0, 0.0
    clipped = pred < TINY
    p = TINY if clipped else pred
    lv, dmu, ds = _nb_normal(log_value, math.log(p), s1, cens)  # normal on log DV
    if cens == QUANTIFIED:
        lv -= log_value  # density on the DV scale
    return lv, 0.0 if clipped else dmu / p, ds, 0.0


@numba.njit(inline="always", cache=True)
def _nb_proportional(pred: float, value: float, log_value: float, cens: int, s1: float,
                     s2: float) -> tuple[float, float, float, float]:
    if cens == SKIPPED:
        return 0.0, 0.0, 0.0, 0.0
    clipped = pred < TINY
    p = TINY if clipped else pred
    lv, dpred, dsd = _nb_normal(value, p, s1 * p, cens)
    return lv, 0.0 if clipped else dpred + dsd * s1, dsd * p, 0.0


@numba.njit(inline="always", cache=True)
def _nb_additive(pred: float, value: float, log_value: float, cens: int, s1: float,
                 s2: float) -> tuple[float, float, float, float]:
    if cens == SKIPPED:
        return 0.0, 0.0, 0.0, 0.0
    lv, dpred, dsd = _nb_normal(value, pred, s1, cens)
    return lv, dpred, dsd, 0.0


@numba.njit(inline="always", cache=True)
def _nb_combined(pred: float, value: float, log_value: float, cens: int, s1: float,
                 s2: float) -> tuple[float, float, float, float]:
    if cens == SKIPPED:
        return 0.0, 0.0, 0.0, 0.0
    sd = math.sqrt(s1 * s1 + (s2 * pred) ** 2)
    lv, dpred, dsd = _nb_normal(value, pred, sd, cens)
    return lv, dpred + dsd * s2 * s2 * pred / sd, dsd * s1 / sd, dsd * s2 * pred * pred / sd


# ----------------------------------------------------------------------------- the table
@dataclass(frozen=True)
class ResidualModel:
    """The implementations of one residual-error model (see the module docstring).

    Attributes
    ----------
    sample : callable
        ``(pred, z, s1, s2, nu, rng) -> y``, NumPy; ``z`` standard normal draws.
    logp : callable
        ``(pred, value, s1, s2, nu, censored) -> tensor``, PyTensor: log density of ``value``
        or, ``censored``, ``log P(y < value)``.
    numba : numba function or None
        ``(pred, value, log_value, kind, s1, s2) -> (l, dl/dpred, dl/ds1, dl/ds2)`` for one
        record of kind ``QUANTIFIED``, ``CENSORED`` or ``SKIPPED``.
    positive : bool
        Needs a positive prediction (floored at :data:`TINY`).
    """

    sample: Callable[..., Any]
    logp: Callable[..., Any]
    numba: Any
    positive: bool


#: Every residual-error model, by the name model files use.
RESIDUAL_MODELS: dict[str, ResidualModel] = {
    "log_normal": ResidualModel(lambda f, z, s1, s2, nu, rng: f * np.exp(s1 * z),
                                _logp_log_normal, _nb_log_normal, True),
    "proportional": ResidualModel(lambda f, z, s1, s2, nu, rng: f * (1 + s1 * z),
                                  _logp_proportional, _nb_proportional, True),
    "additive": ResidualModel(lambda f, z, s1, s2, nu, rng: f + s1 * z,
                              _logp_additive, _nb_additive, False),
    "combined": ResidualModel(lambda f, z, s1, s2, nu, rng: f + np.sqrt(s1**2 + (s2 * f) ** 2) * z,
                              _logp_combined, _nb_combined, False),
    # the normal draws z are made for every model, so a seed gives the same stream
    "student_t": ResidualModel(lambda f, z, s1, s2, nu, rng: f * np.exp(
        s1 * rng.standard_t(nu, z.shape)), _logp_student_t, None, True),
}

#: Residual-error models the fused kernels implement (Student-t uses the pointwise graph).
FUSED_ERRORS = tuple(k for k, m in RESIDUAL_MODELS.items() if m.numba is not None)


def _model(error: str) -> ResidualModel:
    if error not in RESIDUAL_MODELS:
        raise ValueError(f"unknown error model {error!r}")
    return RESIDUAL_MODELS[error]


def sample_residual(error: str, pred: Any, sigma: Any, rng: np.random.Generator, *,
                    sigma_prop: Any = None, nu: float = 4.0, size: Any = None) -> np.ndarray:
    """Observations drawn around ``pred`` under ``error`` (NumPy).

    Parameters
    ----------
    error : str
        One of :data:`RESIDUAL_MODELS`.
    pred : array
        Predictions, natural scale (DV units).
    sigma : float or array
        Residual SD on the model's scale (module docstring).
    rng : numpy.random.Generator
    sigma_prop : float or array, optional
        Proportional SD of the combined model.
    nu : float
        Degrees of freedom of the Student-t model.
    size : tuple of int, optional
        Shape of the draws (default that of ``pred``).

    Returns
    -------
    ndarray
        Observations in DV units.
    """
    model = _model(error)
    pred = np.asarray(pred)
    z = rng.standard_normal(size if size is not None else pred.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        return model.sample(pred, z, sigma, sigma_prop, nu, rng)


def check_blq_method(blq_method: str) -> None:
    """Refuse a BLQ method other than ``"M3"`` (censored likelihood) or ``"M1"`` (dropped)."""
    if blq_method not in ("M3", "M1"):
        raise ValueError(f"blq_method must be 'M3' or 'M1', got {blq_method!r}")


def fused_records(name: str, error: str, value: np.ndarray, blq: np.ndarray, blq_method: str
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Record arrays of one analyte for a fused kernel: value, its log and the record kind.

    Parameters
    ----------
    name : str
        Analyte (for messages).
    error : str
        Residual-error model, one of :data:`FUSED_ERRORS`.
    value : ndarray
        Observation in DV units, or the LLOQ on BLQ records.
    blq : bool ndarray
        Records below the LLOQ.
    blq_method : {"M3", "M1"}

    Returns
    -------
    tuple of ndarray
        ``value`` (float), ``log_value`` (NaN or -inf where not positive) and the kind
        (int64: ``QUANTIFIED``, ``CENSORED`` under M3, ``SKIPPED`` under M1).

    Raises
    ------
    ValueError
        An error model without a fused likelihood, an unknown BLQ method, or a log-normal
        analyte with a non-positive value (or LLOQ) on a record that counts.
    """
    if error not in FUSED_ERRORS:
        raise ValueError(f"no fused likelihood for error model {error!r} of {name} "
                         f"(fused: {', '.join(FUSED_ERRORS)})")
    check_blq_method(blq_method)
    value = np.ascontiguousarray(value, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_value = np.ascontiguousarray(np.log(value))
    kind = np.where(np.asarray(blq, dtype=bool), CENSORED if blq_method == "M3" else SKIPPED,
                    QUANTIFIED).astype(np.int64)
    if error == "log_normal" and not np.isfinite(log_value[kind != SKIPPED]).all():
        raise ValueError(f"{name}: log-normal error needs positive values (and a positive "
                         "LLOQ on BLQ records)")
    return value, log_value, kind


def pointwise_loglik(
    error: str,
    pred: Any,
    value: Any,
    blq: np.ndarray,
    sigma: Any,
    *,
    sigma_prop: Any = None,
    nu: float = 4.0,
    blq_method: str = "M3",
) -> Any:
    """Log-likelihood of each record (PyTensor vector).

    Parameters
    ----------
    error : {"log_normal", "proportional", "additive", "combined", "student_t"}
        Residual error model of the analyte.
    pred : tensor, shape (n,)
        Model prediction (natural scale, > 0 for log-scale models).
    value : array or tensor, shape (n,)
        Observed value, natural scale; for BLQ records the LLOQ (the censoring limit).
    blq : bool array, shape (n,)
        True for records below the LLOQ.
    sigma : tensor
        Residual SD (log scale for log_normal/student_t; relative for proportional; DV units for
        additive; the additive part for combined).
    sigma_prop : tensor, optional
        Proportional SD of the combined model.
    nu : float
        Degrees of freedom of the Student-t model.
    blq_method : {"M3", "M1"}
        M3: a BLQ record contributes P(y < LLOQ); M1: BLQ records contribute 0 (they are
        normally removed before the fit).

    Returns
    -------
    tensor, shape (n,)
    """
    pt = _pt()
    logp = _model(error).logp
    blq = np.asarray(blq, dtype=bool)
    value = pt.as_tensor_variable(value)
    if blq.any() and blq_method == "M3":
        # each term only on its own records: the censored log-CDF (erfc) is not evaluated on
        # quantified records, nor the density on censored ones
        i_obs, i_blq = np.flatnonzero(~blq), np.flatnonzero(blq)
        out = pt.zeros(blq.shape[0])
        out = pt.set_subtensor(out[i_obs], logp(pred[i_obs], value[i_obs], sigma, sigma_prop,
                                                nu, False))
        return pt.set_subtensor(out[i_blq], logp(pred[i_blq], value[i_blq], sigma, sigma_prop,
                                                 nu, True))
    obs = logp(pred, value, sigma, sigma_prop, nu, False)
    if blq.any():  # M1: BLQ records contribute nothing
        return pt.switch(blq, 0.0, obs)
    return obs
