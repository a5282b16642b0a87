"""Compiled closed-form predictions with their exact Jacobian: one fused kernel per analyte.

A closed-form model's prediction of a record is an expression of the subject's parameters, its
covariates and doses, and the record's time. Written as a PyTensor graph, every record pays for
every operation, including the parts that only depend on the subject (``softplus(-tmax/w)``,
``(1 - fb) * f0 * AMT``, ``rho + alpha`` ...), and the reverse pass walks the whole graph again.
This module instead generates, from the spec's sympy trees,

* the prediction ``O(p, c, a, t, tau, v)`` of one record: the output expression with each state
  replaced by its dose sum ``sum_d v_d * solution(tau_d, a_d)`` (``v_d`` = 1 when dose ``d`` has
  been given at the record's time, ``tau_d`` the time since it, ``a_d`` its amount),
* its derivatives ``dO/dp_j`` in every parameter, by sympy,

splits them into the sub-expressions that only depend on the subject (evaluated once per
subject) and the rest (once per record), removes common sub-expressions, and compiles one numba
loop that writes predictions and the Jacobian ``(records, parameters)`` together. The gradient of
any scalar of the predictions is then a weighted sum of Jacobian rows per subject.

:class:`ClosedFormOp` wraps the kernel for PyTensor: numba (nutpie) calls the kernel inside its
compiled log density; C/Python (PyMC's NUTS) call it from ``perform``; JAX (numpyro, blackjax)
gets the same expressions vectorised in ``jax.numpy``. The generated source is built only from
the spec's whitelisted sympy trees over renamed symbols (``p0, c0, a0 ...``), so no text of a
model file reaches the compiler.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import pytensor.tensor as pt
import sympy as sp
from pytensor.gradient import DisconnectedType
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

from ckmodel.population.codegen import (
    check_supplied,
    compile_source,
    digest,
    emit,
    renamed_symbols,
)
from ckmodel.population.numba_cache import register_cached
from ckmodel.spec.expr import compile_expr, sigmoid, softplus
from ckmodel.spec.model import ModelSpec

__all__ = ["ClosedFormKernel", "ClosedFormOp", "closed_form_expressions", "kernel_source"]


@dataclass(frozen=True)
class ClosedFormExpressions:
    """Prediction of one analyte and its parameter derivatives, over renamed symbols.

    Symbols: ``p<j>`` parameters (``spec.param_names`` order), ``c<j>`` covariates, ``a<d>``
    amount of dose ``d``, ``t`` record time, ``u<d>`` time since dose ``d``, ``v<d>`` 1 when dose
    ``d`` has been given (else 0).
    """

    value: sp.Expr
    grads: tuple[sp.Expr, ...]
    n_params: int
    n_covariates: int
    n_doses: int


def closed_form_expressions(spec: ModelSpec, analyte: str, covariates: Sequence[str],
                            n_doses: int) -> ClosedFormExpressions:
    """The record-level prediction of ``analyte`` and its parameter derivatives (sympy).

    Parameters
    ----------
    spec : ModelSpec
        Model with a closed-form solution.
    analyte : str
        Output to predict.
    covariates : sequence of str
        Covariate columns, in the order of the kernel's covariate matrix.
    n_doses : int
        Doses per subject (columns of the amount matrix).
    """
    if spec.solution is None:
        raise ValueError(f"model '{spec.name}' has no closed form")
    t = sp.Symbol("t", real=True)
    amt = sp.Symbol("AMT", real=True)
    ps = [sp.Symbol(f"p{j}", real=True) for j in range(len(spec.param_names))]
    cs = [sp.Symbol(f"c{j}", real=True) for j in range(len(covariates))]
    dose_syms = {x: [sp.Symbol(f"{x}{d}", real=True) for d in range(n_doses)] for x in "auv"}
    ren = renamed_symbols(spec, covariates)  # states are replaced by their dose sums below
    states = {}
    for s in spec.state_names:
        total = sp.Integer(0)
        for d in range(n_doses):
            sub = {**ren, t: dose_syms["u"][d], amt: dose_syms["a"][d]}
            total = total + dose_syms["v"][d] * spec.solution[s].xreplace(sub)
        states[sp.Symbol(s, real=True)] = total
    out = spec.output(analyte).value.xreplace({**ren, **states})
    known = {t, *ps, *cs, *(x for syms in dose_syms.values() for x in syms)}
    check_supplied(f"the closed form of {analyte}", out, known)
    grads = tuple(sp.diff(out, p) for p in ps)
    return ClosedFormExpressions(out, grads, len(ps), len(covariates), n_doses)


def _subject_level(e: sp.Expr, subject_syms: set[sp.Symbol]) -> bool:
    return bool(e.free_symbols) and e.free_symbols <= subject_syms


class _Hoister:
    """Replace maximal subject-level sub-expressions by symbols ``h<k>`` (shared, memoised)."""

    def __init__(self, subject_syms: set[sp.Symbol]) -> None:
        self.subject_syms = subject_syms
        self.memo: dict[sp.Expr, sp.Symbol] = {}
        self.defs: list[tuple[sp.Symbol, sp.Expr]] = []

    def _name(self, e: sp.Expr) -> sp.Expr:
        if e.is_Atom:
            return e
        if e not in self.memo:
            h = sp.Symbol(f"h{len(self.defs)}", real=True)
            self.memo[e] = h
            self.defs.append((h, e))
        return self.memo[e]

    def __call__(self, e: sp.Expr) -> sp.Expr:
        if e.is_Atom:
            return e
        if _subject_level(e, self.subject_syms):
            return self._name(e)
        if e.is_Add or e.is_Mul:
            subj = [a for a in e.args if a.is_Number or _subject_level(a, self.subject_syms)]
            rest = [self(a) for a in e.args if not (a.is_Number
                                                  or _subject_level(a, self.subject_syms))]
            if all(a.is_Number for a in subj):
                return e.func(*subj, *rest, evaluate=False)
            return e.func(self._name(e.func(*subj)), *rest, evaluate=False)
        return e.func(*[self(a) for a in e.args], evaluate=False)


def _pair_gates(exprs: Sequence[sp.Expr]
                ) -> tuple[list[sp.Expr], list[tuple[sp.Expr, str, str]]]:
    """Name ``softplus(x)`` and ``sigmoid(x)`` of a shared ``x`` as symbols.

    A smooth gate's integral and its derivative share their argument, so the kernel
    evaluates both from one exponential.
    """
    args = {f: {a.args[0] for e in exprs for a in e.atoms(f)} for f in (softplus, sigmoid)}
    pairs = sorted(args[softplus] & args[sigmoid], key=sp.default_sort_key)
    sub: dict[sp.Expr, sp.Symbol] = {}
    named = []
    for k, x in enumerate(pairs):
        sub[softplus(x)] = sp.Symbol(f"_sp{k}", real=True)
        sub[sigmoid(x)] = sp.Symbol(f"_sg{k}", real=True)
        named.append((x, f"_sp{k}", f"_sg{k}"))
    return [e.xreplace(sub) for e in exprs], named


def kernel_source(ex: ClosedFormExpressions, loglik: bool = False) -> str:
    """Generated kernel source: predictions + Jacobian, or (``loglik``) the fused likelihood.

    The likelihood variant calls ``_lik(pred, value, log_value, cens, s1, s2)`` per record
    (the residual-error model, :mod:`ckmodel.population.closed_loglik`) and accumulates the
    log-likelihood, its gradient in each subject's parameters (``dl/dpred * dpred/dp``) and in
    the residual SDs, so no record-level array leaves the kernel.
    """
    subject_syms = ({sp.Symbol(f"p{j}", real=True) for j in range(ex.n_params)}
                    | {sp.Symbol(f"c{j}", real=True) for j in range(ex.n_covariates)}
                    | {sp.Symbol(f"a{d}", real=True) for d in range(ex.n_doses)})
    hoist = _Hoister(subject_syms)
    record = [hoist(e) for e in (ex.value, *ex.grads)]
    loads = ([f"p{j} = theta[i, {j}]" for j in range(ex.n_params)]
             + [f"c{j} = cov[i, {j}]" for j in range(ex.n_covariates)]
             + [f"a{d} = amt[i, {d}]" for d in range(ex.n_doses)])
    n_h = len(hoist.defs)
    args = "theta, cov, amt, sidx, time, tau, given, "
    args += "value, log_value, cens, s1, s2, gtheta, gsig" if loglik else "out, jac"
    src = [f"def kernel({args}):",
           "    n_s = theta.shape[0]",
           f"    hs = np.empty((n_s, {max(n_h, 1)}))",
           "    for i in range(n_s):"]
    src += [f"        {x}" for x in loads]
    emit(src, [e for _, e in hoist.defs], [f"hs[i, {k}]" for k in range(n_h)], "=", "s",
          " " * 8)
    if loglik:
        src += ["    gtheta[:, :] = 0.0",
                "    ll = 0.0",
                "    g1 = 0.0",
                "    g2 = 0.0"]
    src += ["    for k in range(time.shape[0]):",
            "        i = sidx[k]",
            "        t = time[k]"]
    src += [f"        {x}" for x in loads]
    src += [f"        h{k} = hs[i, {k}]" for k in range(n_h)]
    src += [f"        u{d} = tau[k, {d}]" for d in range(ex.n_doses)]
    src += [f"        v{d} = given[k, {d}]" for d in range(ex.n_doses)]
    record, gates = _pair_gates(record)
    emit(src, [x for x, _, _ in gates], [f"_x{k}" for k in range(len(gates))], "=", "q",
          " " * 8)
    src += [f"        {f}, {g} = _softplus_sigmoid(_x{k})" for k, (_, f, g) in enumerate(gates)]
    if not loglik:
        targets = ["out[k]"] + [f"jac[k, {j}]" for j in range(ex.n_params)]
        emit(src, record, targets, "=", "r", " " * 8)
        return "\n".join(src)
    emit(src, record, ["pred"] + [f"_j{j}" for j in range(ex.n_params)], "=", "r", " " * 8)
    src += ["        l, dp, d1, d2 = _lik(pred, value[k], log_value[k], cens[k], s1, s2)",
            "        ll += l",
            "        g1 += d1",
            "        g2 += d2"]
    src += [f"        gtheta[i, {j}] += dp * _j{j}" for j in range(ex.n_params)]
    src += ["    gsig[0] = g1",
            "    gsig[1] = g2",
            "    return ll"]
    return "\n".join(src)


class ClosedFormKernel:
    """Fused prediction + Jacobian kernel of one analyte on fixed records.

    Parameters
    ----------
    spec : ModelSpec
        Model with a closed form.
    analyte : str
        Output predicted.
    cov : ndarray, shape (subjects, covariates)
        Covariate values per subject, columns named by ``covariates``.
    covariates : sequence of str
    amt : ndarray, shape (subjects, doses)
        Dose amounts (NaN where a subject has fewer doses).
    dose_time : ndarray, shape (subjects, doses)
        Dose times (NaN where absent).
    sidx : ndarray of int, shape (records,)
        Subject of each record.
    time : ndarray, shape (records,)
        Record times (same clock as ``dose_time``).
    """

    def __init__(self, spec: ModelSpec, analyte: str, cov: np.ndarray,
                 covariates: Sequence[str], amt: np.ndarray, dose_time: np.ndarray,
                 sidx: np.ndarray, time: np.ndarray) -> None:
        self.spec, self.analyte = spec, analyte
        amt = np.asarray(amt, dtype=float)
        dose_time = np.asarray(dose_time, dtype=float)
        self.sidx = np.ascontiguousarray(sidx, dtype=np.int64)
        self.time = np.ascontiguousarray(time, dtype=float)
        dt = dose_time[self.sidx]
        given = np.isfinite(amt[self.sidx]) & (self.time[:, None] >= np.nan_to_num(dt, nan=np.inf))
        self.given = np.ascontiguousarray(given, dtype=float)
        self.tau = np.ascontiguousarray(np.where(given, self.time[:, None] - np.nan_to_num(dt),
                                                 0.0))
        # an absent dose gets amount 1 (its term is multiplied by given = 0): finite everywhere
        self.amt = np.ascontiguousarray(np.where(np.isfinite(amt), amt, 1.0))
        self.cov = np.ascontiguousarray(np.asarray(cov, dtype=float).reshape(amt.shape[0], -1))
        self.exprs = closed_form_expressions(spec, analyte, covariates, amt.shape[1])
        self.source = kernel_source(self.exprs)
        # models of the same spec share one compiled kernel (the data are arguments)
        self._kernel = compile_source(self.source, "kernel")
        # the source is what numba compiles (the key names its disk cache)
        self.key = digest(spec.hash(), analyte, self.source, self.sidx, self.time, self.given,
                          self.tau, self.amt, self.cov)

    @property
    def n_params(self) -> int:
        """Number of model parameters (Jacobian columns)."""
        return self.exprs.n_params

    def __call__(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predictions ``(records,)`` and Jacobian ``(records, parameters)`` at ``theta``."""
        n = self.time.shape[0]
        out = np.empty(n)
        jac = np.empty((n, self.n_params))
        self._kernel(np.ascontiguousarray(theta, dtype=float), self.cov, self.amt, self.sidx,
                     self.time, self.tau, self.given, out, jac)
        return out, jac

    def numba_function(self) -> Any:
        """``theta -> (pred, jac)`` compiled with numba (the record arrays are constants)."""
        kern, cov, amt, sidx, time, tau, given = (self._kernel, self.cov, self.amt, self.sidx,
                                                  self.time, self.tau, self.given)
        n, n_p = time.shape[0], self.n_params

        @numba.njit
        def closed_form(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            out = np.empty(n)
            jac = np.empty((n, n_p))
            kern(np.ascontiguousarray(theta), cov, amt, sidx, time, tau, given, out, jac)
            return out, jac

        return closed_form

    def jax_function(self) -> Any:
        """``theta -> (pred, jac)`` in ``jax.numpy`` (vectorised over records)."""
        import jax.numpy as jnp

        fns = [compile_expr(e, "jax") for e in (self.exprs.value, *self.exprs.grads)]
        sidx = jnp.asarray(self.sidx)
        fixed: dict[str, Any] = {"t": jnp.asarray(self.time)}
        for j in range(self.cov.shape[1]):
            fixed[f"c{j}"] = jnp.asarray(self.cov[self.sidx, j])
        for d in range(self.amt.shape[1]):
            fixed[f"a{d}"] = jnp.asarray(self.amt[self.sidx, d])
            fixed[f"u{d}"] = jnp.asarray(self.tau[:, d])
            fixed[f"v{d}"] = jnp.asarray(self.given[:, d])
        n = self.time.shape[0]

        def closed_form(theta: Any) -> tuple[Any, Any]:
            rec = theta[sidx]
            env = dict(fixed, **{f"p{j}": rec[:, j] for j in range(self.n_params)})
            vals = [jnp.broadcast_to(f(env), (n,)) for f in fns]
            return vals[0], jnp.stack(vals[1:], axis=1)

        return closed_form


class ClosedFormOp(Op):
    """Predictions of one analyte ``(records,)`` and their Jacobian ``(records, parameters)``.

    Input: natural-scale individual parameters ``theta``, shape ``(subjects, parameters)``.
    The gradient of a cost ``C(pred)`` is ``dC/dtheta[i] = sum over i's records of
    (dC/dpred_k) jac[k]``; the Jacobian output itself has no gradient (no second derivatives).
    """

    __props__ = ("key",)

    def __init__(self, kernel: ClosedFormKernel) -> None:
        self.kernel = kernel
        self.key = kernel.key

    def make_node(self, theta: Any) -> Apply:  # noqa: D102
        theta = pt.as_tensor_variable(theta, dtype="float64")
        n = self.kernel.time.shape[0]
        pred = pt.vector(dtype="float64", shape=(n,))
        jac = pt.matrix(dtype="float64", shape=(n, self.kernel.n_params))
        return Apply(self, [theta], [pred, jac])

    def perform(self, node: Apply, inputs: list[np.ndarray], outputs: list[list[Any]]) -> None:  # noqa: D102
        outputs[0][0], outputs[1][0] = self.kernel(inputs[0])

    def L_op(self, inputs: list[Any], outputs: list[Any], g: list[Any]) -> list[Any]:  # noqa: D102
        if not isinstance(g[1].type, DisconnectedType):
            raise NotImplementedError("the Jacobian output of ClosedFormOp has no gradient")
        (theta,) = inputs
        contrib = g[0][:, None] * outputs[1]
        return [pt.inc_subtensor(pt.zeros_like(theta)[self.kernel.sidx], contrib)]


@register_cached(ClosedFormOp)
def _numba_closed(op: ClosedFormOp, node: Any = None, **kwargs: Any) -> Any:
    return op.kernel.numba_function()


def _register_jax() -> None:
    try:
        from pytensor.link.jax.dispatch import jax_funcify
    except ImportError:  # pragma: no cover - JAX not installed
        return

    @jax_funcify.register(ClosedFormOp)
    def _jax_closed(op: ClosedFormOp, **kwargs: Any) -> Any:
        return op.kernel.jax_function()


_register_jax()
