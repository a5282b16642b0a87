"""Generated numba code shared by the closed-form and the ODE kernels.

The compiled kernels (:mod:`~ckmodel.population.closed_kernel`,
:mod:`~ckmodel.population.closed_loglik`, :mod:`~ckmodel.population.ode_kernel`,
:mod:`~ckmodel.population.ode_loglik`) write Python source from a spec's sympy trees and compile
it with numba. This module holds what they share:

* :func:`renamed_symbols` and :func:`check_supplied`: the spec's symbols under the names the
  generated code uses, and the refusal of expressions that use anything else;
* :func:`emit`: assignment lines of sympy expressions, common sub-expressions first, printed
  for numba (``math`` functions, a clipped ``exp``, numerically stable ``sigmoid`` and
  ``softplus``, small integer powers as products);
* :func:`compile_source`: ``exec`` of a generated function, then ``numba.njit``, cached per
  source text and helper functions, with the value-safe :data:`FASTMATH` flags;
* :func:`digest`: the SHA-256 of strings and arrays that Op cache keys are made of (a key
  names a disk-cache entry, so it covers the generated source numba compiles).

The generated source is built only from the spec's sympy trees, which the model parser made
from a whitelist of arithmetic and named functions; symbols are renamed (``y0, p0, c0 ...``)
before printing, so no text of a model file reaches the compiler.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Sequence
from typing import Any

import numba
import numpy as np
import sympy as sp
from sympy.printing.pycode import PythonCodePrinter

from ckmodel.spec.expr import EXP_CLIP, sigmoid, softplus
from ckmodel.spec.model import ModelSpec

__all__ = ["FASTMATH", "check_supplied", "compile_source", "digest", "emit", "renamed_symbols"]

#: Value-safe fast-math flags (reassociation, fused multiply-add, reciprocal instead of division,
#: signless zeros); never "no NaN / no inf", so overflow and NaN still propagate and are seen.
FASTMATH = {"reassoc", "contract", "nsz", "arcp"}


# ----------------------------------------------------------------------------- scalar helpers
# the names the printer writes into generated code; bound in compile_source's globals
@numba.njit(inline="always", cache=True)
def _exp(x: float) -> float:
    return math.exp(min(x, EXP_CLIP))


#: Beyond this ``|x|``, ``e = exp(-|x|)`` is below half an ulp of 1, so a smooth gate is
#: saturated: ``softplus(x) = x`` and ``sigmoid(x) = 1`` for ``x >= GATE_SATURATED`` (the same
#: doubles as the full formulas, without their ``exp`` and ``log1p``), and ``softplus(x) =
#: sigmoid(x) = e`` for ``x <= -GATE_SATURATED`` (``log1p(e) = e`` and ``e / (1 + e) = e``
#: to the rounding; one ``exp``, no ``log1p``). Most records of a CAR-T profile lie this far
#: (9 days at a 4/day gate) from the peak.
GATE_SATURATED = 37.0


@numba.njit(inline="always", cache=True)
def _softplus_sigmoid(x: float) -> tuple[float, float]:
    """``softplus(x)`` and ``sigmoid(x)`` from one ``exp(-|x|)`` (none when saturated)."""
    if x >= GATE_SATURATED:
        return x, 1.0
    e = math.exp(-abs(x))
    if x <= -GATE_SATURATED:
        return e, e
    sig = 1.0 / (1.0 + e) if x >= 0 else e / (1.0 + e)
    return max(x, 0.0) + math.log1p(e), sig


# alone, the other half is dropped by the compiler (as fast as a separate function)
@numba.njit(inline="always", cache=True)
def _sigmoid(x: float) -> float:
    return _softplus_sigmoid(x)[1]


@numba.njit(inline="always", cache=True)
def _softplus(x: float) -> float:
    return _softplus_sigmoid(x)[0]


_GLOBALS = {"math": math, "np": np, "_exp": _exp, "_sigmoid": _sigmoid,
            "_softplus": _softplus, "_softplus_sigmoid": _softplus_sigmoid}


class _Printer(PythonCodePrinter):
    """Python source for numba: ``math`` functions, clipped ``exp``, stable custom functions."""

    def _print_exp(self, e: Any) -> str:
        return f"_exp({self._print(e.args[0])})"

    def _print_Function(self, e: Any) -> str:
        if isinstance(e, sigmoid):
            return f"_sigmoid({self._print(e.args[0])})"
        if isinstance(e, softplus):
            return f"_softplus({self._print(e.args[0])})"
        return super()._print_Function(e)

    def _print_Pow(self, e: Any, rational: bool = False) -> str:
        base, ex = e.args
        if ex == sp.Rational(1, 2):
            return f"math.sqrt({self._print(base)})"
        if ex == -1:
            return f"(1.0/({self._print(base)}))"
        if ex.is_Integer and 1 < abs(int(ex)) <= 4:  # products, not a pow() call
            b = self._print(base)
            prod = "(" + "*".join([f"({b})"] * abs(int(ex))) + ")"
            return prod if int(ex) > 0 else f"(1.0/{prod})"
        return f"(({self._print(base)})**({self._print(ex)}))"


def renamed_symbols(spec: ModelSpec, covariates: Sequence[str]) -> dict[sp.Symbol, sp.Expr]:
    """The spec's symbols as generated code names them.

    ``t`` stays ``t``; states become ``y<i>``, parameters ``p<j>`` (spec order), covariates
    ``c<j>`` (order of ``covariates``); constants are replaced by their values.
    """
    def real(name: str) -> sp.Symbol:
        return sp.Symbol(name, real=True)

    ren: dict[sp.Symbol, sp.Expr] = {real("t"): real("t")}
    ren.update({real(s): real(f"y{i}") for i, s in enumerate(spec.state_names)})
    ren.update({real(p): real(f"p{j}") for j, p in enumerate(spec.param_names)})
    ren.update({real(c): real(f"c{j}") for j, c in enumerate(covariates)})
    ren.update({real(k): sp.Float(v) for k, v in spec.constants.items()})
    return ren


def check_supplied(what: str, expr: sp.Expr, known: set[Any]) -> None:
    """Refuse ``expr`` (called ``what`` in the message) if it uses a symbol not in ``known``."""
    unknown = {x for x in expr.free_symbols if x not in known}
    if unknown:
        raise ValueError(f"{what} uses {sorted(map(str, unknown))}, which the fit cannot supply "
                         "(declare covariates in the spec)")


def emit(lines: list[str], exprs: Sequence[sp.Expr], targets: Sequence[str], op: str,
         tag: str, indent: str = "    ") -> None:
    """Append ``target op expr`` lines to ``lines``, common sub-expressions first.

    Parameters
    ----------
    lines : list of str
        Source lines, extended in place.
    exprs : sequence of sympy.Expr
        Expressions over the renamed symbols of the generated function.
    targets : sequence of str
        Left-hand side of each expression (``"out[0]"``, ``"pred"`` ...).
    op : str
        Assignment operator (``"="`` or ``"+="``).
    tag : str
        Prefix of the common sub-expressions, named ``_<tag>0``, ``_<tag>1`` ...
    indent : str
        Indentation of the lines.
    """
    printer = _Printer({"fully_qualified_modules": False, "standard": "python3"})
    subs, reduced = sp.cse(list(exprs), symbols=sp.numbered_symbols(f"_{tag}"), optimizations=None)
    for s, e in subs:
        lines.append(f"{indent}{s} = {printer.doprint(e)}")
    for tgt, e in zip(targets, reduced, strict=True):
        lines.append(f"{indent}{tgt} {op} {printer.doprint(e)}")


@functools.lru_cache(maxsize=64)
def compile_source(src: str, name: str, helpers: tuple[tuple[str, Any], ...] = (), *,
                   inline: bool = False) -> Any:
    """Compile the generated function ``name`` of ``src`` with numba (cached).

    Parameters
    ----------
    src : str
        Source text written by the kernel generators from whitelisted sympy trees over
        renamed symbols (never text from a model file).
    name : str
        Name of the function ``src`` defines.
    helpers : tuple of (str, callable)
        Further globals of the generated code (numba functions such as a residual-error
        likelihood ``_lik``), on top of ``math``, ``np`` and the printer's scalar helpers.
    inline : bool
        Compile for inlining into the numba function that calls it.

    Returns
    -------
    numba dispatcher
        Compiled on its first call; the data are arguments, so kernels of the same source
        share it.
    """
    glb = dict(_GLOBALS, **dict(helpers))
    loc: dict[str, Any] = {}
    exec(compile(src, f"<ckmodel generated {name}>", "exec"), glb, loc)  # noqa: S102
    if inline:
        return numba.njit(inline="always", fastmath=FASTMATH)(loc[name])
    return numba.njit(fastmath=FASTMATH)(loc[name])


def digest(*parts: str | bytes | np.ndarray) -> str:
    """Hex SHA-256 of ``parts`` in order: text as UTF-8, arrays by their bytes."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, str):
            h.update(part.encode())
        elif isinstance(part, np.ndarray):
            h.update(part.tobytes())
        else:
            h.update(part)
    return h.hexdigest()
