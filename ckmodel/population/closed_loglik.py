"""The log-likelihood of a closed-form analyte summed inside its compiled kernel.

:class:`~ckmodel.population.closed_kernel.ClosedFormOp` returns one prediction and one Jacobian
row per record; the residual-error density, the M3 censoring and the gradient chain rule then
run as PyTensor nodes over record-length arrays, which cost more than the kernel itself in
nutpie's numba log density (about 40 of 57 us on the example trial). Here the same generated
record loop calls the residual-error model per record and accumulates, in one pass,

* the analyte's log-likelihood ``sum_k l_k``,
* its gradient in each subject's parameters, ``sum_k dl_k/dpred_k * dpred_k/dtheta_i``,
* its gradient in the residual SDs,

so nothing record-sized leaves the kernel. :class:`ClosedFormLogLikOp` wraps it for PyTensor
(numba for nutpie; ``perform`` for PyMC's C backend). The pointwise likelihood of
:mod:`ckmodel.population.likelihood` stays the reference (tests compare the two) and is what
the posterior predictive and ``log_likelihood`` groups use.

Error models: ``log_normal`` (normal on log DV, density on the DV scale), ``proportional``,
``additive`` and ``combined``; censored records contribute ``log P(y < LLOQ)`` (M3) through
the same piecewise normal log-CDF as the PyTensor version, with its exact derivative.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import numba
import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

from ckmodel.population.closed_kernel import ClosedFormKernel, _compile, _source
from ckmodel.population.likelihood import _SWITCH, LOG_2PI
from ckmodel.population.numba_cache import register_cached

__all__ = ["FUSED_ERRORS", "ClosedFormLogLik", "ClosedFormLogLikOp"]

#: Residual-error models the fused kernel implements (Student-t uses the pointwise graph).
FUSED_ERRORS = ("log_normal", "proportional", "additive", "combined")

_HALF_LOG_2PI = 0.5 * LOG_2PI
_SQRT2 = math.sqrt(2.0)
_TINY = 1e-300  # floor of predictions on log scales, as in the pointwise graph

# record kinds in ``cens``
QUANTIFIED, CENSORED, SKIPPED = 0, 1, 2


@numba.njit(inline="always", cache=True)
def _log_ndtr(z: float) -> tuple[float, float]:
    """``log Phi(z)`` and its derivative (the same branches as the PyTensor ``log_ndtr``)."""
    if z < _SWITCH:
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
def _normal(value: float, pred: float, sd: float, cens: int) -> tuple[float, float, float]:
    """Log density (or log-CDF when censored) of N(pred, sd) at value; d/dpred, d/dsd."""
    z = (value - pred) / sd
    if cens == CENSORED:
        lv, dz = _log_ndtr(z)
        return lv, -dz / sd, -dz * z / sd
    return -0.5 * z * z - math.log(sd) - _HALF_LOG_2PI, z / sd, (z * z - 1.0) / sd


@numba.njit(inline="always", cache=True)
def _lik_log_normal(pred: float, value: float, log_value: float, cens: int, s1: float,
                    s2: float) -> tuple[float, float, float, float]:
    if cens == SKIPPED:
        return 0.0, 0.0, 0.0, 0.0
    clipped = pred < _TINY
    p = _TINY if clipped else pred
    lv, dmu, ds = _normal(log_value, math.log(p), s1, cens)  # normal on log DV
    if cens == QUANTIFIED:
        lv -= log_value  # density on the DV scale
    return lv, 0.0 if clipped else dmu / p, ds, 0.0


@numba.njit(inline="always", cache=True)
def _lik_proportional(pred: float, value: float, log_value: float, cens: int, s1: float,
                      s2: float) -> tuple[float, float, float, float]:
    if cens == SKIPPED:
        return 0.0, 0.0, 0.0, 0.0
    clipped = pred < _TINY
    p = _TINY if clipped else pred
    lv, dpred, dsd = _normal(value, p, s1 * p, cens)
    return lv, 0.0 if clipped else dpred + dsd * s1, dsd * p, 0.0


@numba.njit(inline="always", cache=True)
def _lik_additive(pred: float, value: float, log_value: float, cens: int, s1: float,
                  s2: float) -> tuple[float, float, float, float]:
    if cens == SKIPPED:
        return 0.0, 0.0, 0.0, 0.0
    lv, dpred, dsd = _normal(value, pred, s1, cens)
    return lv, dpred, dsd, 0.0


@numba.njit(inline="always", cache=True)
def _lik_combined(pred: float, value: float, log_value: float, cens: int, s1: float,
                  s2: float) -> tuple[float, float, float, float]:
    if cens == SKIPPED:
        return 0.0, 0.0, 0.0, 0.0
    sd = math.sqrt(s1 * s1 + (s2 * pred) ** 2)
    lv, dpred, dsd = _normal(value, pred, sd, cens)
    return lv, dpred + dsd * s2 * s2 * pred / sd, dsd * s1 / sd, dsd * s2 * pred * pred / sd


_LIKELIHOODS = {"log_normal": _lik_log_normal, "proportional": _lik_proportional,
                "additive": _lik_additive, "combined": _lik_combined}


class ClosedFormLogLik:
    """Log-likelihood of one analyte's records and its gradients, in one compiled pass.

    Parameters
    ----------
    kernel : ClosedFormKernel
        The analyte's prediction kernel (its records, doses and covariates are reused).
    error : {"log_normal", "proportional", "additive", "combined"}
        Residual-error model.
    value : ndarray, shape (records,)
        Observed value on the natural scale; for BLQ records their LLOQ.
    blq : bool ndarray, shape (records,)
        Records below the LLOQ.
    blq_method : {"M3", "M1"}
        M3: BLQ records contribute ``log P(y < LLOQ)``; M1: they contribute nothing.
    """

    def __init__(self, kernel: ClosedFormKernel, error: str, value: np.ndarray,
                 blq: np.ndarray, blq_method: str = "M3") -> None:
        if error not in FUSED_ERRORS:
            raise ValueError(f"no fused likelihood for error model {error!r} "
                             f"(fused: {', '.join(FUSED_ERRORS)})")
        if blq_method not in ("M3", "M1"):
            raise ValueError(f"blq_method must be 'M3' or 'M1', got {blq_method!r}")
        self.kernel, self.error = kernel, error
        blq = np.asarray(blq, dtype=bool)
        self.value = np.ascontiguousarray(value, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            self.log_value = np.ascontiguousarray(np.log(self.value))
        self.cens = np.where(blq, CENSORED if blq_method == "M3" else SKIPPED,
                             QUANTIFIED).astype(np.int64)
        if error == "log_normal" and not np.isfinite(self.log_value[self.cens != SKIPPED]).all():
            raise ValueError(f"{kernel.analyte}: log-normal error needs positive values "
                             "(and a positive LLOQ on BLQ records)")
        self.source = _source(kernel.exprs, loglik=True)
        self._kernel = _compile(self.source, _LIKELIHOODS[error])
        h = hashlib.sha256(kernel.key.encode())
        h.update(error.encode())
        h.update(self.source.encode())
        for arr in (self.value, self.cens):
            h.update(arr.tobytes())
        self.key = h.hexdigest()

    def __call__(self, theta: np.ndarray, sigma: np.ndarray
                 ) -> tuple[float, np.ndarray, np.ndarray]:
        """Log-likelihood, gradient ``(subjects, parameters)`` and gradient in ``sigma`` (2,).

        ``sigma`` holds the residual SD and, for the combined model, the proportional SD.
        """
        k = self.kernel
        gtheta = np.empty(np.shape(theta))
        gsig = np.empty(2)
        sig = np.asarray(sigma, dtype=float)
        ll = self._kernel(np.ascontiguousarray(theta, dtype=float), k.cov, k.amt, k.sidx,
                          k.time, k.tau, k.given, self.value, self.log_value, self.cens,
                          float(sig[0]), float(sig[1]), gtheta, gsig)
        return float(ll), gtheta, gsig

    def numba_function(self) -> Any:
        """``(theta, sigma) -> (ll (1,), gtheta, gsig (2,))`` compiled with numba."""
        k = self.kernel
        kern = self._kernel
        cov, amt, sidx, time, tau, given = k.cov, k.amt, k.sidx, k.time, k.tau, k.given
        value, log_value, cens = self.value, self.log_value, self.cens

        @numba.njit
        def closed_loglik(theta: np.ndarray, sigma: np.ndarray
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            gtheta = np.empty(theta.shape)
            gsig = np.empty(2)
            out = np.empty(1)
            out[0] = kern(np.ascontiguousarray(theta), cov, amt, sidx, time, tau, given, value,
                          log_value, cens, sigma[0], sigma[1], gtheta, gsig)
            return out, gtheta, gsig

        return closed_loglik


class ClosedFormLogLikOp(Op):
    """Summed log-likelihood ``(1,)`` of one analyte, with its gradients as extra outputs.

    Inputs: natural-scale individual parameters ``theta`` ``(subjects, parameters)`` and
    ``sigma`` ``(2,)`` (residual SD; proportional SD of the combined model, else unused). The
    gradient outputs themselves have no gradient (no second derivatives).
    """

    __props__ = ("key",)

    def __init__(self, loglik: ClosedFormLogLik) -> None:
        self.loglik = loglik
        self.key = loglik.key

    def make_node(self, theta: Any, sigma: Any) -> Apply:  # noqa: D102
        theta = pt.as_tensor_variable(theta, dtype="float64")
        sigma = pt.as_tensor_variable(sigma, dtype="float64")
        outs = [pt.vector(dtype="float64", shape=(1,)), theta.type(),
                pt.vector(dtype="float64", shape=(2,))]
        return Apply(self, [theta, sigma], outs)

    def perform(self, node: Apply, inputs: list[np.ndarray], outputs: list[list[Any]]) -> None:  # noqa: D102
        ll, gtheta, gsig = self.loglik(*inputs)
        outputs[0][0] = np.array([ll])
        outputs[1][0] = gtheta
        outputs[2][0] = gsig

    def L_op(self, inputs: list[Any], outputs: list[Any], g: list[Any]) -> list[Any]:  # noqa: D102
        if not all(isinstance(x.type, DisconnectedType) for x in g[1:]):
            raise NotImplementedError("the gradient outputs of ClosedFormLogLikOp have no "
                                      "gradient")
        return [g[0][0] * outputs[1], g[0][0] * outputs[2]]


@register_cached(ClosedFormLogLikOp)
def _numba_closed_loglik(op: ClosedFormLogLikOp, node: Any = None, **kwargs: Any) -> Any:
    return op.loglik.numba_function()


def closed_loglik(loglik: ClosedFormLogLik, theta: Any, sigma: Any,
                  sigma_prop: Any = None) -> Any:
    """Scalar PyTensor log-likelihood of ``loglik``'s analyte at ``theta`` and the SDs."""
    sig = pt.stack([sigma, sigma_prop if sigma_prop is not None else pt.constant(1.0)])
    return ClosedFormLogLikOp(loglik)(theta, sig)[0][0]
