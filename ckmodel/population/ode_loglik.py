"""The joint log-likelihood of an ODE model's analytes, summed inside one compiled call.

With the likelihood as PyTensor nodes, an ODE fit pays, on top of the RK4 solve and its
adjoint, for gathering each record's states, evaluating the output expressions, the
residual-error densities and M3 terms over record-length arrays, and scattering their gradients
back to the saved states: about a quarter of nutpie's gradient time on a 30-subject
``antigen_driven`` fit. Here one numba function

1. solves the ODEs of all subjects (:meth:`RK4Kernel.forward`),
2. runs a generated loop over the records of every analyte that evaluates the output
   expression and its derivatives in the states and parameters (sympy, shared
   sub-expressions once), calls the analyte's residual-error model (the same functions as the
   fused closed-form likelihood, :mod:`ckmodel.population.closed_loglik`) and accumulates the
   log-likelihood, ``dl/dstates`` at the saved grid points, ``dl/dparams`` through the output
   expressions and ``dl/dsigma``,
3. runs the discrete adjoint once with ``dl/dstates`` (:meth:`RK4Kernel.backward`),

and returns the summed log-likelihood with its gradients in the initial states, the
parameters and the residual SDs. :class:`ODELogLikOp` wraps it for PyTensor (numba for nutpie,
``perform`` for PyMC's C backend); the JAX samplers keep the pointwise graph, which lowers to
JAX. The pointwise likelihood of :mod:`ckmodel.population.likelihood` on the states of
:class:`~ckmodel.population.ode_op.ODESolveOp` stays the reference the tests compare with.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numba
import numpy as np
import pytensor.tensor as pt
import sympy as sp
from pytensor.gradient import DisconnectedType
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

from ckmodel.population.closed_loglik import (
    _LIKELIHOODS,
    CENSORED,
    FUSED_ERRORS,
    QUANTIFIED,
    SKIPPED,
)
from ckmodel.population.numba_cache import register_cached
from ckmodel.population.ode_kernel import (
    _FASTMATH,
    RK4Kernel,
    _code,
    _exp,
    _sigmoid,
    _softplus,
)
from ckmodel.spec.model import ModelSpec

__all__ = ["ODELogLik", "ODELogLikOp", "ode_loglik"]


def _record_source(spec: ModelSpec, inputs: Sequence[str], analytes: Sequence[str],
                   bounds: Sequence[tuple[int, int]]) -> str:
    """Generated record loop: log-likelihood of every analyte and its gradients.

    Records of analyte ``a`` are ``bounds[a][0] <= r < bounds[a][1]``; record ``r`` belongs to
    subject ``rs[r]`` and saved grid point ``rk[r]`` and is at time ``rt[r]`` since the dose.
    """
    ren: dict[sp.Symbol, sp.Expr] = {sp.Symbol("t", real=True): sp.Symbol("t", real=True)}
    ren.update({sp.Symbol(s, real=True): sp.Symbol(f"y{i}", real=True)
                for i, s in enumerate(spec.state_names)})
    ren.update({sp.Symbol(p, real=True): sp.Symbol(f"p{j}", real=True)
                for j, p in enumerate(spec.param_names)})
    ren.update({sp.Symbol(c, real=True): sp.Symbol(f"c{j}", real=True)
                for j, c in enumerate(inputs)})
    ren.update({sp.Symbol(k, real=True): sp.Float(v) for k, v in spec.constants.items()})
    known = set(ren.values())
    ys = [sp.Symbol(f"y{i}", real=True) for i in range(len(spec.state_names))]
    ps = [sp.Symbol(f"p{j}", real=True) for j in range(len(spec.param_names))]
    src = ["def records(states, params, cov, rs, rk, rt, value, log_value, cens, sig, gstates,"
           " gp, gsig):",
           "    ll = 0.0"]
    for a_i, (a, (lo, hi)) in enumerate(zip(analytes, bounds, strict=True)):
        e = spec.output(a).value.xreplace(ren)
        unknown = {x for x in e.free_symbols if x not in known}
        if unknown:
            raise ValueError(f"output {a} uses {sorted(map(str, unknown))}, which the fit "
                             "cannot supply (declare covariates in the spec)")
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
        _code(src, [e, *(d for _, d in dy), *(d for _, d in dp)], targets, "=", f"o{a_i}_",
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


def _compile_records(src: str, liks: Sequence[Any]) -> Any:
    # the source is generated above from whitelisted sympy trees over renamed symbols
    glb = {"math": math, "_exp": _exp, "_sigmoid": _sigmoid, "_softplus": _softplus}
    glb.update({f"_lik{a}": f for a, f in enumerate(liks)})
    loc: dict[str, Any] = {}
    exec(compile(src, "<ckmodel generated ODE record loop>", "exec"), glb, loc)  # noqa: S102
    return numba.njit(fastmath=_FASTMATH)(loc["records"])


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
        if blq_method not in ("M3", "M1"):
            raise ValueError(f"blq_method must be 'M3' or 'M1', got {blq_method!r}")
        for a in analytes:
            if errors[a] not in FUSED_ERRORS:
                raise ValueError(f"no fused likelihood for error model {errors[a]!r} of {a} "
                                 f"(fused: {', '.join(FUSED_ERRORS)})")
        self.kernel = kernel
        self.analytes = tuple(analytes)
        self.grid = np.ascontiguousarray(grid, dtype=float)
        self.save = np.ascontiguousarray(save, dtype=np.int64)
        self.cov = np.ascontiguousarray(cov, dtype=float)
        cols: list[list[np.ndarray]] = [[], [], [], [], []]
        bounds = []
        n = 0
        for a in self.analytes:
            rec = records[a]
            for c, x in zip(cols, rec, strict=True):
                c.append(np.asarray(x))
            bounds.append((n, n + len(rec[0])))
            n += len(rec[0])
        self.rs = np.ascontiguousarray(np.concatenate(cols[0]), dtype=np.int64)
        self.rk = np.ascontiguousarray(np.concatenate(cols[1]), dtype=np.int64)
        self.rt = np.ascontiguousarray(np.concatenate(cols[2]), dtype=float)
        self.value = np.ascontiguousarray(np.concatenate(cols[3]), dtype=float)
        blq = np.concatenate(cols[4]).astype(bool)
        with np.errstate(divide="ignore", invalid="ignore"):
            self.log_value = np.ascontiguousarray(np.log(self.value))
        self.cens = np.where(blq, CENSORED if blq_method == "M3" else SKIPPED,
                             QUANTIFIED).astype(np.int64)
        for a, (lo, hi) in zip(self.analytes, bounds, strict=True):
            use = self.cens[lo:hi] != SKIPPED
            if errors[a] == "log_normal" and not np.isfinite(self.log_value[lo:hi][use]).all():
                raise ValueError(f"{a}: log-normal error needs positive values (and a positive "
                                 "LLOQ on BLQ records)")
        self.bounds = tuple(bounds)
        self.source = _record_source(kernel.spec, kernel.inputs, self.analytes, self.bounds)
        self._records = _compile_records(self.source,
                                         [_LIKELIHOODS[errors[a]] for a in self.analytes])
        self._function = self._build()
        h = hashlib.sha256()
        h.update(kernel.spec.hash().encode())
        h.update((kernel.source.rhs + kernel.source.vjp + self.source).encode())
        h.update(repr((kernel.inputs, self.analytes, [errors[a] for a in self.analytes],
                       self.bounds)).encode())
        for arr in (self.grid, self.save, self.cov, self.rs, self.rk, self.rt, self.value,
                    self.cens):
            h.update(arr.tobytes())
        self.key = h.hexdigest()

    @property
    def n_analytes(self) -> int:
        """Number of fitted analytes (rows of ``sigma``)."""
        return len(self.analytes)

    def _build(self) -> Any:
        forward, backward, records = self.kernel.forward, self.kernel.backward, self._records
        grid, save, cov = self.grid, self.save, self.cov
        rs, rk, rt, value, log_value, cens = (self.rs, self.rk, self.rt, self.value,
                                              self.log_value, self.cens)
        n_a = self.n_analytes

        @numba.njit
        def ode_loglik(y0: np.ndarray, params: np.ndarray, sigma: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
            y0 = np.ascontiguousarray(y0)
            params = np.ascontiguousarray(params)
            states, traj = forward(y0, params, cov, grid, save)
            gstates = np.zeros(states.shape)
            gp_out = np.zeros(params.shape)
            gsig = np.zeros((n_a, 2))
            out = np.empty(1)
            out[0] = records(states, params, cov, rs, rk, rt, value, log_value, cens,
                             np.ascontiguousarray(sigma), gstates, gp_out, gsig)
            gy0, gp = backward(traj, params, cov, grid, save, gstates)
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


class ODELogLikOp(Op):
    """Summed log-likelihood ``(1,)`` of an ODE model's analytes; gradients as extra outputs.

    Inputs: states right after the dose ``y0`` ``(subjects, states)``, natural-scale
    individual parameters ``(subjects, parameters)`` and residual SDs ``(analytes, 2)``. The
    gradient outputs themselves have no gradient (no second derivatives).
    """

    __props__ = ("key",)

    def __init__(self, loglik: ODELogLik) -> None:
        self.loglik = loglik
        self.key = loglik.key

    def make_node(self, y0: Any, params: Any, sigma: Any) -> Apply:  # noqa: D102
        y0 = pt.as_tensor_variable(y0, dtype="float64")
        params = pt.as_tensor_variable(params, dtype="float64")
        sigma = pt.as_tensor_variable(sigma, dtype="float64")
        outs = [pt.vector(dtype="float64", shape=(1,)), y0.type(), params.type(), sigma.type()]
        return Apply(self, [y0, params, sigma], outs)

    def perform(self, node: Apply, inputs: list[np.ndarray], outputs: list[list[Any]]) -> None:  # noqa: D102
        ll, gy0, gp, gs = self.loglik(*inputs)
        outputs[0][0] = np.array([ll])
        outputs[1][0] = gy0
        outputs[2][0] = gp
        outputs[3][0] = gs

    def L_op(self, inputs: list[Any], outputs: list[Any], g: list[Any]) -> list[Any]:  # noqa: D102
        if not all(isinstance(x.type, DisconnectedType) for x in g[1:]):
            raise NotImplementedError("the gradient outputs of ODELogLikOp have no gradient")
        return [g[0][0] * outputs[1], g[0][0] * outputs[2], g[0][0] * outputs[3]]


@register_cached(ODELogLikOp)
def _numba_ode_loglik(op: ODELogLikOp, node: Any = None, **kwargs: Any) -> Any:
    return op.loglik.numba_function()


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
        sel = np.flatnonzero(pdata.analyte_index == a_i)
        blq = pdata.blq[sel]
        records[a] = (pdata.subject_index[sel], tidx[sel], pdata.time[sel] - t0,
                      np.where(blq, pdata.lloq[sel], pdata.dv[sel]), blq)
    lik = ODELogLik(kernel_for(spec, tuple(spec.covariates)), grid - t0, save,
                    kernel_inputs(spec, pdata, cov, t0), pdata.analytes, errors, records,
                    pdata.blq_method)
    one = pt.constant(1.0)
    sig = pt.stack([pt.stack([sigmas[a][0], sigmas[a][1] if sigmas[a][1] is not None else one])
                    for a in pdata.analytes])
    return ODELogLikOp(lik)(pt.as_tensor_variable(y0).T, theta, sig)[0][0]
