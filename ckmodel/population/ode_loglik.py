"""The joint log-likelihood of an ODE model's analytes, summed inside one compiled call.

With the likelihood as PyTensor nodes, an ODE fit pays, on top of the RK4 solve and its
adjoint, for gathering each record's states, evaluating the output expressions, the
residual-error densities and M3 terms over record-length arrays, and scattering their gradients
back to the saved states: about a quarter of nutpie's gradient time on a 30-subject
``antigen_driven`` fit. Here one numba function

1. solves the ODEs of all subjects (:meth:`RK4Kernel.forward`),
2. runs a generated loop over the records of every analyte that evaluates the output
   expression and its derivatives in the states and parameters (sympy, shared
   sub-expressions once), calls the analyte's residual-error model (the numba scalars of
   :data:`ckmodel.population.residual.RESIDUAL_MODELS`, as the fused closed-form likelihood
   does) and accumulates the
   log-likelihood, ``dl/dstates`` at the saved grid points, ``dl/dparams`` through the output
   expressions and ``dl/dsigma``,
3. runs the discrete adjoint once with ``dl/dstates`` (:meth:`RK4Kernel.backward`),

and returns the summed log-likelihood with its gradients in the initial states, the
parameters and the residual SDs. :class:`ODELogLikOp` wraps it for PyTensor (numba for nutpie,
``perform`` for PyMC's C backend); the JAX samplers keep the pointwise graph, which lowers to
JAX. The pointwise likelihood (:func:`ckmodel.population.residual.pointwise_loglik`) on the
states of :class:`~ckmodel.population.ode_op.ODESolveOp` stays the reference the tests compare
with.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numba
import numpy as np
import pytensor.tensor as pt
import sympy as sp

from ckmodel.population.closed_loglik import FusedLogLikOp
from ckmodel.population.codegen import (
    check_supplied,
    compile_source,
    digest,
    emit,
    renamed_symbols,
)
from ckmodel.population.numba_cache import register_cached
from ckmodel.population.ode_kernel import RK4Kernel
from ckmodel.population.residual import RESIDUAL_MODELS, check_blq_method, fused_records
from ckmodel.spec.model import ModelSpec

__all__ = ["ODELogLik", "ODELogLikOp", "ode_loglik"]


def _record_source(spec: ModelSpec, inputs: Sequence[str], analytes: Sequence[str],
                   bounds: Sequence[tuple[int, int]]) -> str:
    """Generated record loop: log-likelihood of every analyte and its gradients.

    Records of analyte ``a`` are ``bounds[a][0] <= r < bounds[a][1]``; record ``r`` belongs to
    subject ``rs[r]`` and saved grid point ``rk[r]`` and is at time ``rt[r]`` since the dose.
    """
    ren = renamed_symbols(spec, inputs)
    known = set(ren.values())
    ys = [sp.Symbol(f"y{i}", real=True) for i in range(len(spec.state_names))]
    ps = [sp.Symbol(f"p{j}", real=True) for j in range(len(spec.param_names))]
    src = ["def records(states, params, cov, rs, rk, rt, value, log_value, cens, sig, gstates,"
           " gp, gsig):",
           "    ll = 0.0"]
    for a_i, (a, (lo, hi)) in enumerate(zip(analytes, bounds, strict=True)):
        e = spec.output(a).value.xreplace(ren)
        check_supplied(f"output {a}", e, known)
        dy = [(i, sp.diff(e, y)) for i, y in enumerate(ys)]
        dp = [(j, sp.diff(e, p)) for j, p in enumerate(ps)]
        dy = [(i, d) for i, d in dy if d != 0]
        dp = [(j, d) for j, d in dp if d != 0]
        used = e.free_symbols
        src += ["    g1 = 0.0", "    g2 = 0.0",
                f"    s1 = sig[{a_i}, 0]", f"    s2 = sig[{a_i}, 1]",
                f"    for r in range({lo}, {hi}):",
                "        s = rs[r]",
                "        k = rk[r]",
                "        t = rt[r]"]
        src += [f"        y{i} = states[s, k, {i}]" for i in range(len(ys)) if ys[i] in used]
        src += [f"        p{j} = params[s, {j}]" for j in range(len(ps)) if ps[j] in used]
        src += [f"        c{j} = cov[s, {j}]" for j in range(len(inputs))
                if sp.Symbol(f"c{j}", real=True) in used]
        targets = ["pred"] + [f"_dy{i}" for i, _ in dy] + [f"_dp{j}" for j, _ in dp]
        emit(src, [e, *(d for _, d in dy), *(d for _, d in dp)], targets, "=", f"o{a_i}_",
              " " * 8)
        src += [f"        lv, dl, d1, d2 = _lik{a_i}(pred, value[r], log_value[r], cens[r], "
                "s1, s2)",
                "        ll += lv",
                "        g1 += d1",
                "        g2 += d2"]
        src += [f"        gstates[s, k, {i}] += dl * _dy{i}" for i, _ in dy]
        src += [f"        gp[s, {j}] += dl * _dp{j}" for j, _ in dp]
        src += [f"    gsig[{a_i}, 0] = g1", f"    gsig[{a_i}, 1] = g2"]
    src.append("    return ll")
    return "\n".join(src)


class ODELogLik:
    """Summed log-likelihood of all fitted analytes of an ODE model, with its gradients.

    Parameters
    ----------
    kernel : RK4Kernel
        The compiled solver of the spec (inputs: the spec's covariates, then switch onsets).
    grid : ndarray
        Step grid, time since the dose (model time unit).
    save : ndarray of int
        Sorted grid indices of the distinct record times.
    cov : ndarray, shape (subjects, inputs)
        Per-subject kernel inputs.
    analytes : sequence of str
        Fitted analytes, in the row order of ``sigma``.
    errors : mapping of str to str
        Residual-error model per analyte, each one of ``FUSED_ERRORS``.
    records : mapping of str to tuple of arrays
        Per analyte ``(subject index, saved-point index, time since dose, value, blq)``;
        ``value`` is the observation, or the LLOQ on BLQ records.
    blq_method : {"M3", "M1"}
    """

    def __init__(self, kernel: RK4Kernel, grid: np.ndarray, save: np.ndarray, cov: np.ndarray,
                 analytes: Sequence[str], errors: Mapping[str, str],
                 records: Mapping[str, tuple[np.ndarray, ...]], blq_method: str = "M3") -> None:
        check_blq_method(blq_method)
        self.kernel = kernel
        self.analytes = tuple(analytes)
        self.grid = np.ascontiguousarray(grid, dtype=float)
        self.save = np.ascontiguousarray(save, dtype=np.int64)
        self.cov = np.ascontiguousarray(cov, dtype=float)
        cols: list[list[np.ndarray]] = [[], [], [], [], [], []]
        bounds = []
        n = 0
        for a in self.analytes:
            rs, rk, rt, value, blq = records[a]
            for c, x in zip(cols, (rs, rk, rt, *fused_records(a, errors[a], value, blq,
                                                               blq_method)), strict=True):
                c.append(np.asarray(x))
            bounds.append((n, n + len(rs)))
            n += len(rs)
        self.rs = np.ascontiguousarray(np.concatenate(cols[0]), dtype=np.int64)
        self.rk = np.ascontiguousarray(np.concatenate(cols[1]), dtype=np.int64)
        self.rt = np.ascontiguousarray(np.concatenate(cols[2]), dtype=float)
        self.value = np.ascontiguousarray(np.concatenate(cols[3]))
        self.log_value = np.ascontiguousarray(np.concatenate(cols[4]))
        self.cens = np.ascontiguousarray(np.concatenate(cols[5]))
        self.bounds = tuple(bounds)
        # saved points each subject needs: up to its last record (kernel ``upto``)
        self.upto = np.zeros(len(self.cov), dtype=np.int64)
        np.maximum.at(self.upto, self.rs, self.rk + 1)
        self.source = _record_source(kernel.spec, kernel.inputs, self.analytes, self.bounds)
        liks = tuple((f"_lik{i}", RESIDUAL_MODELS[errors[a]].numba)
                     for i, a in enumerate(self.analytes))
        self._records = compile_source(self.source, "records", liks)
        self._function = self._build()
        self.key = digest(kernel.spec.hash(), kernel.source.rhs + kernel.source.vjp + self.source,
                          repr((kernel.inputs, self.analytes, [errors[a] for a in self.analytes],
                                self.bounds)),
                          self.grid, self.save, self.cov, self.rs, self.rk, self.rt, self.value,
                          self.cens)

    @property
    def n_analytes(self) -> int:
        """Number of fitted analytes (rows of ``sigma``)."""
        return len(self.analytes)

    def _build(self) -> Any:
        forward, backward, records = self.kernel.forward, self.kernel.backward, self._records
        grid, save, cov, upto = self.grid, self.save, self.cov, self.upto
        rs, rk, rt, value, log_value, cens = (self.rs, self.rk, self.rt, self.value,
                                              self.log_value, self.cens)
        n_a = self.n_analytes

        @numba.njit
        def ode_loglik(y0: np.ndarray, params: np.ndarray, sigma: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
            y0 = np.ascontiguousarray(y0)
            params = np.ascontiguousarray(params)
            states, traj = forward(y0, params, cov, grid, save, upto)
            gstates = np.zeros(states.shape)
            gp_out = np.zeros(params.shape)
            gsig = np.zeros((n_a, 2))
            out = np.empty(1)
            out[0] = records(states, params, cov, rs, rk, rt, value, log_value, cens,
                             np.ascontiguousarray(sigma), gstates, gp_out, gsig)
            gy0, gp = backward(traj, params, cov, grid, save, gstates, upto)
            return out, gy0, gp + gp_out, gsig

        return ode_loglik

    def __call__(self, y0: np.ndarray, params: np.ndarray, sigma: np.ndarray
                 ) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
        """Log-likelihood and its gradients in ``y0``, ``params`` and ``sigma``.

        Parameters
        ----------
        y0 : ndarray, shape (subjects, states)
            States right after the dose.
        params : ndarray, shape (subjects, parameters)
            Natural-scale individual parameters, ``spec.param_names`` order.
        sigma : ndarray, shape (analytes, 2)
            Residual SD per analyte and, for the combined model, its proportional SD.
        """
        ll, gy0, gp, gs = self._function(np.asarray(y0, dtype=float),
                                         np.asarray(params, dtype=float),
                                         np.asarray(sigma, dtype=float))
        return float(ll[0]), gy0, gp, gs

    def numba_function(self) -> Any:
        """``(y0, params, sigma) -> (ll (1,), gy0, gparams, gsigma)`` compiled with numba."""
        return self._function


class ODELogLikOp(FusedLogLikOp):
    """Summed log-likelihood ``(1,)`` of an ODE model's analytes; gradients as extra outputs.

    Inputs: states right after the dose ``y0`` ``(subjects, states)``, natural-scale
    individual parameters ``(subjects, parameters)`` and residual SDs ``(analytes, 2)``.
    """


register_cached(ODELogLikOp)(FusedLogLikOp.numba_funcify)


def ode_loglik(spec: ModelSpec, pdata: Any, theta: Any, sigmas: Mapping[str, Any],
               errors: Mapping[str, str], options: Any = None) -> Any:
    """Scalar PyTensor log-likelihood of all of ``pdata``'s analytes under an ODE ``spec``.

    Parameters
    ----------
    spec : ModelSpec
    pdata : PopulationData
    theta : tensor, shape (subjects, parameters)
        Natural-scale individual parameters.
    sigmas : mapping of str to tuple
        Per analyte ``(sigma, sigma_prop or None)``.
    errors : mapping of str to str
        Residual-error model per analyte (each one of ``FUSED_ERRORS``).
    options : ODEOptions, optional
    """
    from ckmodel.population.ode import ODEOptions, kernel_inputs, ode_start
    from ckmodel.population.ode_kernel import kernel_for

    opts = options or ODEOptions.for_spec(spec)
    if opts.solver != "kernel":
        raise ValueError("the fused ODE likelihood needs ODEOptions(solver='kernel')")
    cov = {c: pdata.covariates[c].to_numpy(float) for c in spec.covariates}
    y0, grid, t0 = ode_start(spec, pdata, theta, cov, opts)
    times = np.unique(pdata.time)
    save = np.searchsorted(grid, times)
    tidx = np.searchsorted(times, pdata.time)
    records = {}
    for a_i, a in enumerate(pdata.analytes):
        sel, value, blq = pdata.analyte_records(a_i)
        records[a] = (pdata.subject_index[sel], tidx[sel], pdata.time[sel] - t0, value, blq)
    lik = ODELogLik(kernel_for(spec, tuple(spec.covariates)), grid - t0, save,
                    kernel_inputs(spec, pdata, cov, t0), pdata.analytes, errors, records,
                    pdata.blq_method)
    one = pt.constant(1.0)
    sig = pt.stack([pt.stack([sigmas[a][0], sigmas[a][1] if sigmas[a][1] is not None else one])
                    for a in pdata.analytes])
    return ODELogLikOp(lik)(pt.as_tensor_variable(y0).T, theta, sig)[0][0]
