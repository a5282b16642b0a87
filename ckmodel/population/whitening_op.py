"""The whitened random effects as one compiled Op, with a hand-written reverse pass.

:mod:`ckmodel.population.whitening` defines the map. Built from PyTensor's batched Cholesky and
triangular solves it cost 8x the gradient of the rest of a sparse fit (Blockwise loops of
LAPACK calls on 6x6 matrices); here one numba loop over the subjects makes the forward map and
another the reverse pass, for nutpie (numba) and for PyMC's other backends (``perform``).

Per subject, with ``D = diag(v)`` (the signed IIV SDs of the effects), ``H`` the data
information about the effects (rows) and all parameters (columns), ``delta = mean - typ``::

    K = D H_ee D + I = L L^T,   c = K^-1 D H delta,   d = L^-T u,   zeta = c + d
    eta = v * zeta,             logp = -|zeta|^2 / 2 - sum log diag L - (q/2) log 2 pi

and the reverse pass, from the upstream gradients ``g_eta`` and ``g_lp``::

    zeta_bar = v g_eta - g_lp zeta,   u_bar = L^-1 zeta_bar,   r_bar = L^-T u_bar
    L_bar = tril(-d u_bar^T) - g_lp diag(1 / L)
    K_bar = L^-T Phi(L^T L_bar) L^-1 - r_bar c^T   (Phi: lower triangle, diagonal halved;
                                                    Murray 2016, the Cholesky factor)
    v_bar = g_eta zeta + r_bar (H delta) + sum_k (K_bar + K_bar^T)_jk H_jk v_k
    typ_bar = -H^T (v r_bar),   H_bar = D K_bar D + (v r_bar) delta^T

Tested against central differences of the forward map, and the map against dense linear
algebra (``tests/population/test_whitening.py``).
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType, disconnected_type
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

from ckmodel.population.numba_cache import register_cached

__all__ = ["WhitenOp", "WhitenGradOp", "whiten_forward", "whiten_backward"]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


@numba.njit(cache=True, error_model="numpy")
def _subject(u: np.ndarray, typ: np.ndarray, v: np.ndarray, scales: np.ndarray,
             info: np.ndarray, mean: np.ndarray, h: np.ndarray, chol: np.ndarray,
             inv: np.ndarray, c: np.ndarray, d: np.ndarray, delta: np.ndarray,
             hd: np.ndarray) -> None:
    """One subject's forward map into the work arrays.

    ``h`` = H, ``hd`` = H delta, ``chol`` = L with L L^T = K = D H D + I, ``inv`` = L^-1,
    ``c`` = K^-1 D H delta, ``d`` = L^-T u (zeta = c + d).
    """
    q = u.shape[0]
    n_all = typ.shape[0]
    for j in range(q):
        for k in range(n_all):
            acc = 0.0
            for a in range(scales.shape[0]):
                acc += scales[a] * info[a, j, k]
            h[j, k] = acc
    for k in range(n_all):
        delta[k] = mean[k] - typ[k]
    for j in range(q):
        acc = 0.0
        for k in range(n_all):
            acc += h[j, k] * delta[k]
        hd[j] = acc
    for j in range(q):                      # Cholesky of K = D H D + I
        for k in range(j + 1):
            acc = v[j] * h[j, k] * v[k] + (1.0 if j == k else 0.0)
            for m in range(k):
                acc -= chol[j, m] * chol[k, m]
            if j == k:
                chol[j, j] = math.sqrt(acc) if acc > 0.0 else np.nan
            else:
                chol[j, k] = acc / chol[k, k]
        for k in range(j + 1, q):
            chol[j, k] = 0.0
    for k in range(q):                      # inverse of the lower factor
        for j in range(q):
            if j < k:
                inv[j, k] = 0.0
            elif j == k:
                inv[j, j] = 1.0 / chol[j, j]
            else:
                acc = 0.0
                for m in range(k, j):
                    acc -= chol[j, m] * inv[m, k]
                inv[j, k] = acc / chol[j, j]
    for j in range(q):                      # y = L^-1 D H delta, held in c
        acc = 0.0
        for m in range(j + 1):
            acc += inv[j, m] * v[m] * hd[m]
        c[j] = acc
    for j in range(q):                      # c = L^-T y, d = L^-T u (rows >= j of c still y)
        acc_c = 0.0
        acc_d = 0.0
        for m in range(j, q):
            acc_c += inv[m, j] * c[m]
            acc_d += inv[m, j] * u[m]
        c[j] = acc_c
        d[j] = acc_d


@numba.njit(cache=True, error_model="numpy")
def whiten_forward(u: np.ndarray, typ: np.ndarray, v: np.ndarray, scales: np.ndarray,
                   info: np.ndarray, mean: np.ndarray) -> tuple[np.ndarray, float]:
    """Random effects ``eta`` (subject, effect) and the log-density term (prior + Jacobian).

    Parameters
    ----------
    u : ndarray
        Whitened coordinates (subject, effect).
    typ : ndarray
        Typical values on the transformed scale (subject, parameter): the effects first, then
        the parameters without one (``whitening.whitened_parameters``).
    v : ndarray
        IIV SDs of the effects (effect,), signed or positive; transformed-scale units.
    scales : ndarray
        Per analyte the factor of its information (``1 / sigma_a^2``, or 1).
    info : ndarray
        Data information at unit residual SD (subject, analyte, parameter, parameter).
    mean : ndarray
        The subjects' parameters from an earlier run (subject, parameter).

    Returns
    -------
    eta : ndarray
    logp : float
        ``-|zeta|^2 / 2 - sum log diag L - (q / 2) log 2 pi``, summed over subjects.
    """
    n, q = u.shape
    n_all = typ.shape[1]
    eta = np.empty((n, q))
    h, chol, inv = np.empty((q, n_all)), np.empty((q, q)), np.empty((q, q))
    c, d, delta, hd = np.empty(q), np.empty(q), np.empty(n_all), np.empty(q)
    lp = -n * q * _HALF_LOG_2PI
    for i in range(n):
        _subject(u[i], typ[i], v, scales, info[i], mean[i], h, chol, inv, c, d, delta, hd)
        det = 1.0
        for j in range(q):
            z = c[j] + d[j]
            eta[i, j] = v[j] * z
            lp -= 0.5 * z * z
            det *= chol[j, j]
        lp -= math.log(det)
    return eta, lp


@numba.njit(cache=True, error_model="numpy")
def whiten_backward(u: np.ndarray, typ: np.ndarray, v: np.ndarray, scales: np.ndarray,
                    info: np.ndarray, mean: np.ndarray, g_eta: np.ndarray, g_lp: float
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of ``sum(g_eta * eta) + g_lp * logp`` in ``u``, ``typ``, ``v``, ``scales``.

    The inputs are those of :func:`whiten_forward` with the upstream gradients ``g_eta``
    (subject, effect) and ``g_lp``; the outputs have the shapes of ``u``, ``typ``, ``v`` and
    ``scales``.
    """
    n, q = u.shape
    n_all = typ.shape[1]
    n_a = scales.shape[0]
    gu, gtyp = np.empty((n, q)), np.empty((n, n_all))
    gv, gs = np.zeros(q), np.zeros(n_a)
    h, chol, inv = np.empty((q, n_all)), np.empty((q, q)), np.empty((q, q))
    c, d, delta, hd = np.empty(q), np.empty(q), np.empty(n_all), np.empty(q)
    e, ub, rb, vr = np.empty(q), np.empty(q), np.empty(q), np.empty(q)
    lbar, phi, tmp, kbar = (np.empty((q, q)), np.empty((q, q)), np.empty((q, q)),
                            np.empty((q, q)))
    for i in range(n):
        _subject(u[i], typ[i], v, scales, info[i], mean[i], h, chol, inv, c, d, delta, hd)
        for j in range(q):                  # zeta_bar, and eta = v zeta's own term in v
            z = c[j] + d[j]
            e[j] = g_eta[i, j] * v[j] - g_lp * z
            gv[j] += g_eta[i, j] * z
        for j in range(q):                  # u_bar = L^-1 zeta_bar
            acc = 0.0
            for m in range(j + 1):
                acc += inv[j, m] * e[m]
            ub[j] = acc
            gu[i, j] = acc
        for j in range(q):                  # r_bar = L^-T u_bar = K^-1 zeta_bar
            acc = 0.0
            for m in range(j, q):
                acc += inv[m, j] * ub[m]
            rb[j] = acc
            vr[j] = v[j] * acc
        for j in range(q):                  # L_bar, lower triangle
            for k in range(q):
                lbar[j, k] = -d[j] * ub[k] if k <= j else 0.0
            lbar[j, j] -= g_lp / chol[j, j]
        for j in range(q):                  # Phi(L^T L_bar)
            for k in range(q):
                if k > j:
                    phi[j, k] = 0.0
                    continue
                acc = 0.0
                for m in range(j, q):
                    acc += chol[m, j] * lbar[m, k]
                phi[j, k] = 0.5 * acc if j == k else acc
        for j in range(q):                  # tmp = Phi L^-1, lower triangular
            for k in range(j + 1):
                acc = 0.0
                for m in range(k, j + 1):
                    acc += phi[j, m] * inv[m, k]
                tmp[j, k] = acc
        for j in range(q):                  # K_bar = L^-T tmp - r_bar c^T
            for k in range(q):
                acc = 0.0
                for m in range(max(j, k), q):
                    acc += inv[m, j] * tmp[m, k]
                kbar[j, k] = acc - rb[j] * c[k]
        for j in range(q):
            # K = D H D + I and r = D H delta: their terms in v and H
            acc_v = rb[j] * hd[j]
            for k in range(q):
                acc_v += (kbar[j, k] + kbar[k, j]) * h[j, k] * v[k]
            gv[j] += acc_v
        for k in range(n_all):              # delta = mean - typ, over all parameters
            acc_t = 0.0
            for j in range(q):
                acc_t += h[j, k] * vr[j]
            gtyp[i, k] = -acc_t
        for a in range(n_a):                # H_bar = D K_bar D + (D r_bar) delta^T
            acc = 0.0
            for j in range(q):
                for k in range(q):
                    acc += v[j] * kbar[j, k] * v[k] * info[i, a, j, k]
                for k in range(n_all):
                    acc += vr[j] * delta[k] * info[i, a, j, k]
            gs[a] += acc
    return gu, gtyp, gv, gs


class WhitenOp(Op):
    """``(eta, logp)`` from ``(u, typical, omega, scales, info, mean)``; see the module."""

    __props__ = ("key",)

    def __init__(self) -> None:
        self.key = "whiten"

    def make_node(self, *inputs: Any) -> Apply:  # noqa: D102
        ins = [pt.as_tensor_variable(x, dtype="float64") for x in inputs]
        return Apply(self, ins, [ins[0].type(), pt.scalar(dtype="float64")])

    def perform(self, node: Apply, inputs: list[np.ndarray], outputs: list[list[Any]]) -> None:  # noqa: D102
        eta, lp = whiten_forward(*(np.ascontiguousarray(x, dtype=float) for x in inputs))
        outputs[0][0] = eta
        outputs[1][0] = np.asarray(lp)

    def connection_pattern(self, node: Apply) -> list[list[bool]]:  # noqa: D102
        return [[True, True]] * 4 + [[False, False]] * 2

    def L_op(self, inputs: list[Any], outputs: list[Any], g: list[Any]) -> list[Any]:  # noqa: D102
        g_eta = (pt.zeros_like(outputs[0]) if isinstance(g[0].type, DisconnectedType)
                 else g[0])
        g_lp = pt.constant(0.0) if isinstance(g[1].type, DisconnectedType) else g[1]
        grads = WhitenGradOp()(*inputs, g_eta, g_lp)
        return [*grads, disconnected_type(), disconnected_type()]


class WhitenGradOp(Op):
    """Gradients of :class:`WhitenOp` in ``u``, ``typical``, ``omega`` and ``scales``."""

    __props__ = ("key",)

    def __init__(self) -> None:
        self.key = "whiten_grad"

    def make_node(self, *inputs: Any) -> Apply:  # noqa: D102
        ins = [pt.as_tensor_variable(x, dtype="float64") for x in inputs]
        return Apply(self, ins, [x.type() for x in ins[:4]])

    def perform(self, node: Apply, inputs: list[np.ndarray], outputs: list[list[Any]]) -> None:  # noqa: D102
        arrays = [np.ascontiguousarray(x, dtype=float) for x in inputs[:7]]
        for out, g in zip(outputs, whiten_backward(*arrays, float(inputs[7])), strict=True):
            out[0] = g

    def L_op(self, inputs: list[Any], outputs: list[Any], g: list[Any]) -> list[Any]:  # noqa: D102
        raise NotImplementedError("the whitened random effects have no second derivatives")


@register_cached(WhitenOp)
def _numba_whiten(op: WhitenOp, node: Any = None, **kwargs: Any) -> Any:
    @numba.njit
    def whiten(u, typ, omega, scales, info, mean):  # noqa: ANN001, ANN202
        eta, lp = whiten_forward(u, typ, omega, scales, info, mean)
        return eta, np.asarray(lp)

    return whiten


@register_cached(WhitenGradOp)
def _numba_whiten_grad(op: WhitenGradOp, node: Any = None, **kwargs: Any) -> Any:
    @numba.njit
    def whiten_grad(u, typ, omega, scales, info, mean, g_eta, g_lp):  # noqa: ANN001, ANN202
        return whiten_backward(u, typ, omega, scales, info, mean, g_eta, g_lp.item())

    return whiten_grad
