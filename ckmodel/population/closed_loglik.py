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
(numba for nutpie; ``perform`` for PyMC's C backend). The pointwise likelihood
(:func:`ckmodel.population.residual.pointwise_loglik`) stays the reference (tests compare the
two) and is what the posterior predictive and ``log_likelihood`` groups use.

The residual-error models (``log_normal``, ``proportional``, ``additive``, ``combined``; M3
censoring) are the numba scalars of :data:`ckmodel.population.residual.RESIDUAL_MODELS`.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

from ckmodel.population.closed_kernel import ClosedFormKernel, kernel_source
from ckmodel.population.codegen import compile_source, digest
from ckmodel.population.numba_cache import register_cached
from ckmodel.population.residual import RESIDUAL_MODELS, fused_records

__all__ = ["ClosedFormLogLik", "ClosedFormLogLikOp", "FusedLogLikOp", "closed_loglik"]


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
        self.kernel, self.error = kernel, error
        self.value, self.log_value, self.cens = fused_records(kernel.analyte, error, value, blq,
                                                              blq_method)
        self.source = kernel_source(kernel.exprs, loglik=True)
        self._kernel = compile_source(self.source, "kernel",
                                      (("_lik", RESIDUAL_MODELS[error].numba),))
        self.key = digest(kernel.key, error, self.source, self.value, self.cens)

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


class FusedLogLikOp(Op):
    """Summed log-likelihood ``(1,)`` of a fused kernel, with its gradients as extra outputs.

    ``loglik(*inputs)`` returns the log-likelihood and one gradient per input (same type as
    the input); the gradient outputs themselves have no gradient (no second derivatives).
    Subclasses register :meth:`numba_funcify` with :func:`register_cached`.
    """

    __props__ = ("key",)

    def __init__(self, loglik: Any) -> None:
        self.loglik = loglik
        self.key = loglik.key

    def make_node(self, *inputs: Any) -> Apply:  # noqa: D102
        ins = [pt.as_tensor_variable(x, dtype="float64") for x in inputs]
        return Apply(self, ins, [pt.vector(dtype="float64", shape=(1,)), *(x.type() for x in ins)])

    def perform(self, node: Apply, inputs: list[np.ndarray], outputs: list[list[Any]]) -> None:  # noqa: D102
        ll, *grads = self.loglik(*inputs)
        outputs[0][0] = np.array([ll])
        for out, g in zip(outputs[1:], grads, strict=True):
            out[0] = g

    def L_op(self, inputs: list[Any], outputs: list[Any], g: list[Any]) -> list[Any]:  # noqa: D102
        if not all(isinstance(x.type, DisconnectedType) for x in g[1:]):
            raise NotImplementedError(f"the gradient outputs of {type(self).__name__} have no "
                                      "gradient")
        return [g[0][0] * x for x in outputs[1:]]

    @staticmethod
    def numba_funcify(op: FusedLogLikOp, node: Any = None, **kwargs: Any) -> Any:
        """The numba function of ``op``'s log-likelihood (for nutpie)."""
        return op.loglik.numba_function()


class ClosedFormLogLikOp(FusedLogLikOp):
    """Summed log-likelihood ``(1,)`` of one analyte, with its gradients as extra outputs.

    Inputs: natural-scale individual parameters ``theta`` ``(subjects, parameters)`` and
    ``sigma`` ``(2,)`` (residual SD; proportional SD of the combined model, else unused).
    """


register_cached(ClosedFormLogLikOp)(FusedLogLikOp.numba_funcify)


def closed_loglik(loglik: ClosedFormLogLik, theta: Any, sigma: Any,
                  sigma_prop: Any = None) -> Any:
    """Scalar PyTensor log-likelihood of ``loglik``'s analyte at ``theta`` and the SDs."""
    sig = pt.stack([sigma, sigma_prop if sigma_prop is not None else pt.constant(1.0)])
    return ClosedFormLogLikOp(loglik)(theta, sig)[0][0]
