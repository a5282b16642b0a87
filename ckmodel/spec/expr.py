"""Safe expression language of model files.

Expressions in ``models/*.toml`` are parsed with Python's :mod:`ast` (which never executes code)
and converted node by node to :mod:`sympy` through a whitelist of operators, names and functions.
``sympy.sympify`` is never called on file text, because it evaluates Python.

The same sympy tree is then compiled to NumPy, PyTensor or JAX callables by
:func:`compile_expr`, which walks the tree and maps each node to a backend function; no code is
generated or executed from strings.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import sympy as sp
from scipy import special

from ckmodel.errors import ModelSpecError

__all__ = [
    "sigmoid",
    "softplus",
    "parse_expr",
    "parse_number",
    "compile_expr",
    "BACKENDS",
    "FUNCTIONS",
]


class sigmoid(sp.Function):  # noqa: N801 - sympy function naming
    """Logistic function ``1 / (1 + exp(-x))``."""

    nargs = 1

    def fdiff(self, argindex: int = 1) -> sp.Expr:  # noqa: D102
        s = sigmoid(self.args[0])
        return s * (1 - s)

    def _latex(self, printer: Any) -> str:
        return r"\sigma\left(" + printer._print(self.args[0]) + r"\right)"


class softplus(sp.Function):  # noqa: N801 - sympy function naming
    """Softplus ``log(1 + exp(x))``, evaluated stably by every backend."""

    nargs = 1

    def fdiff(self, argindex: int = 1) -> sp.Expr:  # noqa: D102
        return sigmoid(self.args[0])

    def _latex(self, printer: Any) -> str:
        return r"\operatorname{softplus}\left(" + printer._print(self.args[0]) + r"\right)"


def _gate(t: sp.Expr, t0: sp.Expr, w: sp.Expr) -> sp.Expr:
    return sigmoid((t - t0) / w)


def _gate_int(t: sp.Expr, t0: sp.Expr, w: sp.Expr) -> sp.Expr:
    # integral of gate(s, t0, w) ds from 0 to t
    return w * (softplus((t - t0) / w) - softplus(-t0 / w))


def _hill(x: sp.Expr, k: sp.Expr, n: sp.Expr) -> sp.Expr:
    return x**n / (k**n + x**n)


#: Functions a model file may call, with their number of arguments and sympy builders.
FUNCTIONS: dict[str, tuple[int, Callable[..., sp.Expr], str]] = {
    "exp": (1, sp.exp, "exponential"),
    "log": (1, sp.log, "natural logarithm"),
    "sqrt": (1, sp.sqrt, "square root"),
    "log1p": (1, lambda x: sp.log(1 + x), "log(1 + x)"),
    "expm1": (1, lambda x: sp.exp(x) - 1, "exp(x) - 1"),
    "logit": (1, lambda x: sp.log(x / (1 - x)), "log(x / (1 - x))"),
    "sigmoid": (1, sigmoid, "logistic 1/(1+exp(-x))"),
    "expit": (1, sigmoid, "logistic 1/(1+exp(-x))"),
    "softplus": (1, softplus, "log(1 + exp(x))"),
    "gate": (3, _gate, "smooth switch gate(t, t0, w) = sigmoid((t - t0)/w): 0 before t0, 1 after"),
    "gate_int": (3, _gate_int, "integral of gate(s, t0, w) over s from 0 to t"),
    "hill": (3, _hill, "hill(x, k, n) = x^n / (k^n + x^n)"),
}

_BINOPS = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.Pow: lambda a, b: a**b,
}

_MAX_LEN = 4000
_MAX_DEPTH = 60


def parse_expr(
    text: str,
    allowed: Iterable[str],
    *,
    file: str | None = None,
    key: str | None = None,
) -> sp.Expr:
    """Parse one model-file expression into sympy through a restricted grammar.

    Parameters
    ----------
    text : str
        Expression, e.g. ``"rho * E * (1 - gate(t, tmax, w))"``. Allowed: numbers, names in
        ``allowed``, ``+ - * / **``, unary minus, parentheses and calls of :data:`FUNCTIONS`.
    allowed : iterable of str
        Names the expression may use (states, parameters, constants, ``t`` ...).
    file, key : str, optional
        Used in error messages.

    Returns
    -------
    sympy.Expr
        The expression; symbols are real-valued ``sympy.Symbol`` objects.

    Raises
    ------
    ModelSpecError
        On any syntax outside the grammar, unknown names or functions, or wrong argument counts.

    Examples
    --------
    >>> parse_expr("rho * E", {"rho", "E"})
    E*rho
    """
    allowed = set(allowed)
    if not isinstance(text, str):
        raise ModelSpecError(f"expected an expression string, got {type(text).__name__}",
                             file=file, key=key)
    if len(text) > _MAX_LEN:
        raise ModelSpecError(f"expression longer than {_MAX_LEN} characters", file=file, key=key)
    try:
        # ``^`` is the power, as pharmacometricians write it (Python's ``**`` works too)
        tree = ast.parse(text.strip().replace("^", "**"), mode="eval")
    except SyntaxError as exc:
        raise ModelSpecError(f"cannot parse expression {text!r}: {exc.msg}", file=file,
                             key=key) from None
    except (RecursionError, MemoryError):
        raise ModelSpecError("expression nested too deeply", file=file, key=key) from None

    def err(msg: str) -> ModelSpecError:
        return ModelSpecError(f"{msg} in expression {text!r}", file=file, key=key)

    def conv(node: ast.AST, depth: int) -> sp.Expr:
        if depth > _MAX_DEPTH:
            raise err("expression nested too deeply")
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, int | float):
                raise err(f"only numbers are allowed as constants, not {node.value!r}")
            return sp.Float(node.value) if isinstance(node.value, float) else sp.Integer(node.value)
        if isinstance(node, ast.Name):
            if node.id in FUNCTIONS:
                raise err(f"function '{node.id}' used without calling it")
            if node.id not in allowed:
                known = ", ".join(sorted(allowed))
                raise err(f"unknown name '{node.id}' (known names: {known})")
            return sp.Symbol(node.id, real=True)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            left, right = conv(node.left, depth + 1), conv(node.right, depth + 1)
            if isinstance(node.op, ast.Pow) and left.is_Number and right.is_Number:
                size = abs(float(right)) * np.log2(abs(float(left)) + 2.0)
                if not np.isfinite(size) or size > 1e4:
                    raise err("power of numbers too large")
            return _BINOPS[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            val = conv(node.operand, depth + 1)
            return -val if isinstance(node.op, ast.USub) else val
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
                name = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
                raise err(f"function '{name}' is not allowed (allowed: {', '.join(FUNCTIONS)})")
            if node.keywords:
                raise err("keyword arguments are not allowed")
            nargs, build, _ = FUNCTIONS[node.func.id]
            if len(node.args) != nargs:
                raise err(f"{node.func.id}() takes {nargs} argument(s), got {len(node.args)}")
            return build(*(conv(a, depth + 1) for a in node.args))
        raise err(f"'{ast.unparse(node)}' is not allowed (only arithmetic, names and "
                  "whitelisted functions)")

    try:
        return conv(tree.body, 0)
    except RecursionError:
        raise err("expression nested too deeply") from None


def parse_number(text: str | float | int, *, file: str | None = None, key: str | None = None
                 ) -> float:
    """Evaluate a constant expression such as ``"log(0.9)"`` or ``"logit(0.008)"`` to a float."""
    if isinstance(text, bool):
        raise ModelSpecError("expected a number, got a boolean", file=file, key=key)
    if isinstance(text, int | float):
        return float(text)
    expr = parse_expr(text, set(), file=file, key=key)
    try:
        with np.errstate(all="ignore"):
            value = float(compile_expr(expr, "numpy")({}))
    except (TypeError, ValueError, OverflowError):
        raise ModelSpecError(f"{text!r} is not a real number", file=file, key=key) from None
    if not np.isfinite(value):
        raise ModelSpecError(f"{text!r} is not a finite number", file=file, key=key)
    return value


def _np_softplus(x: Any) -> Any:
    return np.logaddexp(0.0, x)


#: Upper bound on exponents in the fitting backends: exp(700) ~ 1e304 stays finite, so a wild
#: proposal (e.g. rho * t with t = 365 d) gives a finite, very unlikely prediction instead of inf
#: and NaN gradients; values in any plausible region are far below the bound.
EXP_CLIP = 700.0


def _pt_backend() -> dict[str, Callable[..., Any]]:
    import pytensor.tensor as pt

    def softplus(x: Any) -> Any:
        # (x + |x|)/2 + log1p(exp(-|x|)): finite value and gradient everywhere (0.5 at x = 0),
        # on every backend (PyTensor's own softplus has a non-finite gradient once lowered to JAX)
        ax = pt.abs(x)
        return 0.5 * (x + ax) + pt.log1p(pt.exp(-ax))

    return {"exp": lambda x: pt.exp(pt.minimum(x, EXP_CLIP)), "log": pt.log, "sqrt": pt.sqrt,
            "sigmoid": pt.sigmoid, "softplus": softplus, "abs": pt.abs}


def _jax_backend() -> dict[str, Callable[..., Any]]:
    import jax
    import jax.numpy as jnp

    return {"exp": lambda x: jnp.exp(jnp.minimum(x, EXP_CLIP)), "log": jnp.log,
            "sqrt": jnp.sqrt, "sigmoid": jax.nn.sigmoid, "softplus": jax.nn.softplus,
            "abs": jnp.abs}


#: Backend function tables, built lazily (PyTensor and JAX are imported only when used).
BACKENDS: dict[str, Callable[[], dict[str, Callable[..., Any]]]] = {
    "numpy": lambda: {"exp": np.exp, "log": np.log, "sqrt": np.sqrt, "sigmoid": special.expit,
                      "softplus": _np_softplus, "abs": np.abs},
    "pytensor": _pt_backend,
    "jax": _jax_backend,
}


def compile_expr(expr: sp.Expr, backend: str = "numpy") -> Callable[[Mapping[str, Any]], Any]:
    """Compile a sympy expression into a function of a name -> value mapping.

    Parameters
    ----------
    expr : sympy.Expr
        Expression built by :func:`parse_expr` (or sympy operations on such expressions).
    backend : {"numpy", "pytensor", "jax"}
        Array library the returned function computes with; values in the mapping must be
        arrays/tensors of that library (or floats), broadcasting as usual.

    Returns
    -------
    callable
        ``f(env) -> value``. Missing names raise ``KeyError`` naming the symbol.

    Examples
    --------
    >>> f = compile_expr(parse_expr("a * exp(-k * t)", {"a", "k", "t"}))
    >>> round(float(f({"a": 2.0, "k": 0.0, "t": 1.0})), 6)
    2.0
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {sorted(BACKENDS)}")
    fns = BACKENDS[backend]()
    return _build(expr, fns)


def _build(e: sp.Expr, fns: Mapping[str, Callable[..., Any]]) -> Callable[[Mapping[str, Any]], Any]:
    if e.is_Symbol:
        name = e.name

        def sym(env: Mapping[str, Any]) -> Any:
            try:
                return env[name]
            except KeyError:
                raise KeyError(f"no value given for symbol '{name}'") from None

        return sym
    if e.is_Number:
        value = float(e)
        return lambda env: value
    if e is sp.E:
        return lambda env: float(np.e)
    if e is sp.pi:
        return lambda env: float(np.pi)
    args = [_build(a, fns) for a in e.args]
    if e.is_Add:
        def add(env: Mapping[str, Any]) -> Any:
            out = args[0](env)
            for a in args[1:]:
                out = out + a(env)
            return out

        return add
    if e.is_Mul:
        def mul(env: Mapping[str, Any]) -> Any:
            out = args[0](env)
            for a in args[1:]:
                out = out * a(env)
            return out

        return mul
    if e.is_Pow:
        base, expo = args
        ex = e.args[1]
        if ex == -1:
            return lambda env: 1.0 / base(env)
        if ex == sp.Rational(1, 2):
            f_sqrt = fns["sqrt"]
            return lambda env: f_sqrt(base(env))
        if ex.is_Integer and ex > 0:
            n = int(ex)
            return lambda env: base(env) ** n
        return lambda env: base(env) ** expo(env)
    table = {sp.exp: "exp", sp.log: "log", sigmoid: "sigmoid", softplus: "softplus",
             sp.Abs: "abs"}
    func = e.func
    if func in table:
        f = fns[table[func]]
        (a0,) = args
        return lambda env: f(a0(env))
    raise ModelSpecError(f"cannot compile '{e}' ({func}) for this backend")
