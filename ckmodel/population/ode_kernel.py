"""Compiled RK4 kernels for ODE models: forward solve and its exact discrete adjoint, in numba.

From a :class:`~ckmodel.spec.model.ModelSpec` this generates two scalar functions of one
subject, the right-hand side ``f(t, y, p, c)`` and its vector-Jacobian product
``v -> (v' df/dy, v' df/dp)`` (Jacobians by sympy, shared sub-expressions evaluated once), and
compiles them with numba. Two kernels loop over subjects and steps of a fixed grid:

* :meth:`RK4Kernel.forward` returns the states at the requested grid points, and the whole
  trajectory up to the last of them (states and the stages k1, k2, k3 of each step);
* :meth:`RK4Kernel.dense` (simulation) returns states at any times, by cubic Hermite
  interpolation between the steps (values and right-hand sides at both ends, the latter
  reused as the next step's first stage), keeping no trajectory;
* :meth:`RK4Kernel.backward` takes that trajectory and returns the gradients of
  ``sum(g * states)`` with respect to the initial states and the parameters: the exact
  reverse-mode derivative of the discrete RK4 scheme (not of the ODE), so gradients match
  finite differences of the forward kernel to rounding.

The generated code is built only from the spec's sympy trees, which the model parser made from a
whitelist of arithmetic and named functions; symbols are renamed to ``y0, p0, c0, ...`` before
printing, so no text of a model file reaches the compiler.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import sympy as sp

from ckmodel.population.codegen import (
    FASTMATH,
    check_supplied,
    compile_source,
    emit,
    renamed_symbols,
)
from ckmodel.spec.expr import sigmoid
from ckmodel.spec.model import ModelSpec

__all__ = ["RK4Kernel", "kernel_for", "switched_odes"]


def switched_odes(spec: ModelSpec) -> tuple[dict[str, sp.Expr], list[str]]:
    """ODE right-hand sides with the spec's switches applied, and the onset symbols they use.

    A switch multiplies its parameter by ``1 + (factor - 1) * sigmoid((t - onset) / width)``
    inside the right-hand side; ``onset`` (time since the dose) becomes an extra per-subject
    input named ``__onset_<switch>`` (a huge value means "never").
    """
    odes = dict(spec.odes)
    onsets = []
    t = sp.Symbol("t", real=True)
    for sw in spec.switches:
        on = sp.Symbol(f"__onset_{sw.name}", real=True)
        p = sp.Symbol(sw.parameter, real=True)
        fac = sp.Symbol(sw.factor, real=True)
        if fac.name in spec.constants:
            fac = sp.Float(spec.constants[fac.name])
        mult = 1 + (fac - 1) * sigmoid((t - on) / sw.width)
        odes = {s: e.xreplace({p: p * mult}) for s, e in odes.items()}
        onsets.append(on.name)
    return odes, onsets


@dataclass(frozen=True)
class _Source:
    rhs: str
    vjp: str


def _generate(spec: ModelSpec, inputs: tuple[str, ...]) -> _Source:
    odes, onset_names = switched_odes(spec)
    covs = (*inputs, *onset_names)
    ren = renamed_symbols(spec, covs)
    f = [odes[s].xreplace(ren) for s in spec.state_names]
    known = set(ren.values())
    for s, e in zip(spec.state_names, f, strict=True):
        check_supplied(f"ODE of {s}", e, known)
    ys = [ren[sp.Symbol(s, real=True)] for s in spec.state_names]
    ps = [ren[sp.Symbol(p, real=True)] for p in spec.param_names]
    # right-hand side
    rhs = ["def rhs(t, y, p, c, out):"]
    rhs += [f"    y{i} = y[{i}]" for i in range(len(ys))]
    rhs += [f"    p{i} = p[{i}]" for i in range(len(ps))]
    rhs += [f"    c{i} = c[{i}]" for i in range(len(covs))]
    emit(rhs, f, [f"out[{i}]" for i in range(len(f))], "=", "r")
    # vector-Jacobian product: gy[j] += sum_i v_i df_i/dy_j ; gp[k] += sum_i v_i df_i/dp_k
    v = [sp.Symbol(f"v{i}", real=True) for i in range(len(f))]
    jy = [sum((v[i] * sp.diff(f[i], y) for i in range(len(f))), sp.Integer(0)) for y in ys]
    jp = [sum((v[i] * sp.diff(f[i], p) for i in range(len(f))), sp.Integer(0)) for p in ps]
    vjp = ["def vjp(t, y, p, c, v, gy, gp):"]
    vjp += [f"    y{i} = y[{i}]" for i in range(len(ys))]
    vjp += [f"    p{i} = p[{i}]" for i in range(len(ps))]
    vjp += [f"    c{i} = c[{i}]" for i in range(len(covs))]
    vjp += [f"    v{i} = v[{i}]" for i in range(len(v))]
    exprs, targets = [], []
    for j, e in enumerate(jy):
        if e != 0:
            exprs.append(e)
            targets.append(f"gy[{j}]")
    for k, e in enumerate(jp):
        if e != 0:
            exprs.append(e)
            targets.append(f"gp[{k}]")
    emit(vjp, exprs, targets, "+=", "j")
    if not exprs:
        vjp.append("    pass")
    return _Source("\n".join(rhs), "\n".join(vjp))


def _make_kernels(rhs: Any, vjp: Any, n: int, n_p: int) -> tuple[Any, Any, Any]:
    @numba.njit(fastmath=FASTMATH)
    def stages(t: float, h: float, y: np.ndarray, p: np.ndarray, c: np.ndarray,
               k1: np.ndarray, k2: np.ndarray, k3: np.ndarray, k4: np.ndarray,
               tmp: np.ndarray) -> None:
        rhs(t, y, p, c, k1)
        for i in range(n):
            tmp[i] = y[i] + 0.5 * h * k1[i]
        rhs(t + 0.5 * h, tmp, p, c, k2)
        for i in range(n):
            tmp[i] = y[i] + 0.5 * h * k2[i]
        rhs(t + 0.5 * h, tmp, p, c, k3)
        for i in range(n):
            tmp[i] = y[i] + h * k3[i]
        rhs(t + h, tmp, p, c, k4)

    @numba.njit(fastmath=FASTMATH)
    def step(t: float, h: float, y: np.ndarray, p: np.ndarray, c: np.ndarray,
             k1: np.ndarray, k2: np.ndarray, k3: np.ndarray, k4: np.ndarray,
             tmp: np.ndarray) -> None:
        stages(t, h, y, p, c, k1, k2, k3, k4, tmp)
        for i in range(n):
            y[i] = y[i] + h / 6.0 * (k1[i] + 2.0 * k2[i] + 2.0 * k3[i] + k4[i])

    @numba.njit(fastmath=FASTMATH)
    def forward(y0: np.ndarray, params: np.ndarray, cov: np.ndarray, grid: np.ndarray,
                save: np.ndarray, upto: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n_s = y0.shape[0]
        n_k = save.shape[0]
        n_g = save[n_k - 1] + 1 if n_k > 0 else 1  # no step beyond the last saved point
        out = np.empty((n_s, n_k, n))
        # per grid point: the state, then the stages k1, k2, k3 of the step that starts there
        # (the adjoint needs them; storing them saves re-evaluating the right-hand side)
        traj = np.empty((n_s, n_g, 4 * n))
        k1 = np.empty(n)
        k2 = np.empty(n)
        k3 = np.empty(n)
        k4 = np.empty(n)
        tmp = np.empty(n)
        y = np.empty(n)
        for s in range(n_s):
            p = params[s]
            c = cov[s]
            ks = n_k if upto.shape[0] == 0 else upto[s]   # saved points this subject needs
            n_gs = save[ks - 1] + 1 if ks > 0 else 1
            for i in range(n):
                y[i] = y0[s, i]
                traj[s, 0, i] = y[i]
            for g in range(n_gs - 1):
                step(grid[g], grid[g + 1] - grid[g], y, p, c, k1, k2, k3, k4, tmp)
                for i in range(n):
                    traj[s, g, n + i] = k1[i]
                    traj[s, g, 2 * n + i] = k2[i]
                    traj[s, g, 3 * n + i] = k3[i]
                    traj[s, g + 1, i] = y[i]
            for g in range(n_gs - 1, n_g):   # not solved: the last state, no stages
                for i in range(n):
                    traj[s, g, i] = y[i]
                    traj[s, g, n + i] = 0.0
                    traj[s, g, 2 * n + i] = 0.0
                    traj[s, g, 3 * n + i] = 0.0
            for k in range(n_k):
                for i in range(n):
                    out[s, k, i] = traj[s, save[k], i]
        return out, traj

    @numba.njit(fastmath=FASTMATH)
    def backward(traj: np.ndarray, params: np.ndarray, cov: np.ndarray, grid: np.ndarray,
                 save: np.ndarray, gout: np.ndarray, upto: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
        n_s = traj.shape[0]
        n_k = save.shape[0]
        gy0 = np.zeros((n_s, n))
        gp_all = np.zeros((n_s, n_p))
        k1 = np.empty(n)
        k2 = np.empty(n)
        k3 = np.empty(n)
        k4 = np.empty(n)
        tmp = np.empty(n)
        lam = np.empty(n)
        new = np.empty(n)
        b1 = np.empty(n)
        b2 = np.empty(n)
        b3 = np.empty(n)
        a = np.empty(n)
        gp = np.empty(n_p)
        for s in range(n_s):
            p = params[s]
            c = cov[s]
            lam[:] = 0.0
            gp[:] = 0.0
            k = n_k - 1
            ks = n_k if upto.shape[0] == 0 else upto[s]
            n_gs = save[ks - 1] + 1 if ks > 0 else 1
            while k >= 0 and save[k] >= n_gs - 1:   # at or past the subject's last solved point
                for i in range(n):
                    lam[i] += gout[s, k, i]
                k -= 1
            for g in range(n_gs - 2, -1, -1):
                while k >= 0 and save[k] == g + 1:
                    for i in range(n):
                        lam[i] += gout[s, k, i]
                    k -= 1
                t = grid[g]
                h = grid[g + 1] - grid[g]
                yg = traj[s, g, :n]
                for i in range(n):  # the stages of step g, stored by the forward pass
                    k1[i] = traj[s, g, n + i]
                    k2[i] = traj[s, g, 2 * n + i]
                    k3[i] = traj[s, g, 3 * n + i]
                # adjoints of the stage derivatives k_i
                for i in range(n):
                    new[i] = lam[i]
                    b1[i] = h / 6.0 * lam[i]
                    b2[i] = h / 3.0 * lam[i]
                    b3[i] = h / 3.0 * lam[i]
                    k4[i] = h / 6.0 * lam[i]  # b4
                # k4 = f(t + h, y + h k3)
                for i in range(n):
                    tmp[i] = yg[i] + h * k3[i]
                    a[i] = 0.0
                vjp(t + h, tmp, p, c, k4, a, gp)
                for i in range(n):
                    new[i] += a[i]
                    b3[i] += h * a[i]
                # k3 = f(t + h/2, y + h/2 k2)
                for i in range(n):
                    tmp[i] = yg[i] + 0.5 * h * k2[i]
                    a[i] = 0.0
                vjp(t + 0.5 * h, tmp, p, c, b3, a, gp)
                for i in range(n):
                    new[i] += a[i]
                    b2[i] += 0.5 * h * a[i]
                # k2 = f(t + h/2, y + h/2 k1)
                for i in range(n):
                    tmp[i] = yg[i] + 0.5 * h * k1[i]
                    a[i] = 0.0
                vjp(t + 0.5 * h, tmp, p, c, b2, a, gp)
                for i in range(n):
                    new[i] += a[i]
                    b1[i] += 0.5 * h * a[i]
                # k1 = f(t, y)
                vjp(t, yg, p, c, b1, new, gp)
                for i in range(n):
                    lam[i] = new[i]
            while k >= 0 and save[k] == 0:
                for i in range(n):
                    lam[i] += gout[s, k, i]
                k -= 1
            for i in range(n):
                gy0[s, i] = lam[i]
            for j in range(n_p):
                gp_all[s, j] = gp[j]
        return gy0, gp_all

    @numba.njit(fastmath=FASTMATH)
    def _dense_one(y0: np.ndarray, p: np.ndarray, c: np.ndarray, grid: np.ndarray,
                   times: np.ndarray, out: np.ndarray) -> None:
        n_t = times.shape[0]
        n_g = grid.shape[0]
        k1 = np.empty(n)
        k2 = np.empty(n)
        k3 = np.empty(n)
        k4 = np.empty(n)
        tmp = np.empty(n)
        y = y0.copy()
        y1 = np.empty(n)
        f1 = np.empty(n)
        k = 0
        while k < n_t and times[k] <= grid[0]:
            for i in range(n):
                out[k, i] = y[i]
            k += 1
        rhs(grid[0], y, p, c, k1)
        for g in range(n_g - 1):
            if k >= n_t:
                break
            t0 = grid[g]
            h = grid[g + 1] - t0
            for i in range(n):
                tmp[i] = y[i] + 0.5 * h * k1[i]
            rhs(t0 + 0.5 * h, tmp, p, c, k2)
            for i in range(n):
                tmp[i] = y[i] + 0.5 * h * k2[i]
            rhs(t0 + 0.5 * h, tmp, p, c, k3)
            for i in range(n):
                tmp[i] = y[i] + h * k3[i]
            rhs(t0 + h, tmp, p, c, k4)
            for i in range(n):
                y1[i] = y[i] + h / 6.0 * (k1[i] + 2.0 * k2[i] + 2.0 * k3[i] + k4[i])
            rhs(t0 + h, y1, p, c, f1)
            # cubic Hermite between the step's ends (values and slopes)
            while k < n_t and times[k] <= grid[g + 1]:
                th = (times[k] - t0) / h
                h00 = (1.0 + 2.0 * th) * (1.0 - th) ** 2
                h10 = th * (1.0 - th) ** 2
                h01 = th * th * (3.0 - 2.0 * th)
                h11 = th * th * (th - 1.0)
                for i in range(n):
                    out[k, i] = h00 * y[i] + h10 * h * k1[i] + h01 * y1[i] + h11 * h * f1[i]
                k += 1
            for i in range(n):
                y[i] = y1[i]
                k1[i] = f1[i]

    @numba.njit(fastmath=FASTMATH, parallel=True)
    def dense(y0: np.ndarray, params: np.ndarray, cov: np.ndarray, grid: np.ndarray,
              times: np.ndarray) -> np.ndarray:
        n_s = y0.shape[0]
        n_t = times.shape[0]
        out = np.empty((n_s, n_t, n))
        for s in numba.prange(n_s):  # subjects are independent: threads, same numbers
            _dense_one(y0[s], params[s], cov[s], grid, times, out[s])
        return out

    return forward, backward, dense


class RK4Kernel:
    """numba RK4 forward solver and discrete adjoint of one model spec.

    Parameters
    ----------
    spec : ModelSpec
    inputs : tuple of str
        Names of the per-subject inputs (covariates) the ODEs use, in the column order of the
        ``cov`` array; switch onsets (``__onset_<name>``) follow them.

    Notes
    -----
    Arrays: ``y0`` (subjects, states), ``params`` (subjects, parameters in
    ``spec.param_names`` order), ``cov`` (subjects, inputs + onsets), ``grid`` (steps + 1,
    time since the dose, increasing), ``save`` (sorted grid indices to return), ``upto``
    (int, subjects, or empty for all: how many of the saved points each subject needs; a
    subject is solved only up to its last, and the saved points after it are copies of its
    state there, their adjoints added to it; fits pass each subject's last record, so a
    patient followed for 28 days costs 28 days of steps, not the study's longest follow-up).
    """

    def __init__(self, spec: ModelSpec, inputs: tuple[str, ...]) -> None:
        self.spec = spec
        self.inputs = inputs
        self.onsets = [f"__onset_{sw.name}" for sw in spec.switches]
        src = _generate(spec, inputs)
        self.source = src
        self.rhs = compile_source(src.rhs, "rhs", inline=True)
        self.vjp = compile_source(src.vjp, "vjp", inline=True)
        self.forward, self.backward, self.dense = _make_kernels(
            self.rhs, self.vjp, len(spec.state_names), len(spec.param_names))


_CACHE: dict[tuple[str, tuple[str, ...]], RK4Kernel] = {}


def kernel_for(spec: ModelSpec, inputs: Sequence[str]) -> RK4Kernel:
    """The compiled kernel of ``spec`` (cached per spec content and inputs)."""
    key = (spec.hash(), tuple(inputs))
    if key not in _CACHE:
        if len(_CACHE) >= 16:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = RK4Kernel(spec, tuple(inputs))
    return _CACHE[key]
