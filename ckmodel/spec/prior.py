"""Priors as immutable value objects.

A prior is written in a model file as ``"LogNormal(log(0.9), 0.5)"``: a distribution name and
numeric arguments (constant expressions, positional or by name). It parses without ``eval``,
validates its parameters, keeps its source text and prints back exactly as written
(``str(Prior.parse("LogNormal(log(2), 0.5)"))`` is ``"LogNormal(log(2), 0.5)"``; the evaluated
numbers are in :attr:`Prior.params` and :meth:`Prior.canonical`), builds the PyMC distribution
and draws samples with NumPy for prior-predictive simulation.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import special

from ckmodel.errors import ModelSpecError
from ckmodel.spec.expr import parse_number

__all__ = ["Prior", "DISTRIBUTIONS"]

# name -> (parameter names, positivity constraints, support)
DISTRIBUTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...], str]] = {
    "Normal": (("mu", "sigma"), ("sigma",), "real"),
    "LogNormal": (("mu", "sigma"), ("sigma",), "positive"),
    "LogitNormal": (("mu", "sigma"), ("sigma",), "unit"),
    "HalfNormal": (("sigma",), ("sigma",), "positive"),
    "HalfCauchy": (("beta",), ("beta",), "positive"),
    "HalfStudentT": (("nu", "sigma"), ("nu", "sigma"), "positive"),
    "StudentT": (("nu", "mu", "sigma"), ("nu", "sigma"), "real"),
    "Exponential": (("lam",), ("lam",), "positive"),
    "Gamma": (("alpha", "beta"), ("alpha", "beta"), "positive"),
    "Beta": (("alpha", "beta"), ("alpha", "beta"), "unit"),
    "Uniform": (("lower", "upper"), (), "interval"),
}


def _num(v: float) -> str:
    text = repr(float(v))  # shortest text that reads back to the same float
    return text[:-2] if text.endswith(".0") else text


@dataclass(frozen=True)
class Prior:
    """A prior distribution with fixed numeric parameters.

    Parameters
    ----------
    dist : str
        Distribution name, one of :data:`DISTRIBUTIONS` (PyMC names).
    params : mapping of str to float
        Its parameters by name, e.g. ``{"mu": -0.1, "sigma": 0.5}``.
    text : str, optional
        Source text the prior was parsed from (set by :meth:`parse`); ``str()`` prints it.
        Not part of equality or the hash: ``LogNormal(log(2), 0.5)`` equals
        ``LogNormal(mu=0.6931471805599453, sigma=0.5)``.

    Examples
    --------
    >>> p = Prior.parse("LogNormal(log(0.9), 0.5)")
    >>> p.dist, round(p.params["mu"], 4), p.params["sigma"]
    ('LogNormal', -0.1054, 0.5)
    >>> str(p)  # as written
    'LogNormal(log(0.9), 0.5)'
    >>> p.canonical()  # evaluated numbers
    'LogNormal(-0.10536051565782628, 0.5)'
    >>> Prior.parse(str(p)) == Prior.parse(p.canonical()) == p
    True
    >>> str(Prior("HalfNormal", {"sigma": 1.0}))  # built in code: the canonical form
    'HalfNormal(1)'
    """

    dist: str
    params: Mapping[str, float] = field(default_factory=dict)
    text: str | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.dist not in DISTRIBUTIONS:
            raise ModelSpecError(f"unknown distribution '{self.dist}' "
                                 f"(known: {', '.join(DISTRIBUTIONS)})")
        names, positive, _ = DISTRIBUTIONS[self.dist]
        if set(self.params) != set(names):
            raise ModelSpecError(f"{self.dist} needs parameters {names}, got {tuple(self.params)}")
        for n in positive:
            if not self.params[n] > 0:
                raise ModelSpecError(f"{self.dist}: parameter {n} must be > 0, got "
                                     f"{self.params[n]}")
        for n, v in self.params.items():
            if not np.isfinite(v):
                raise ModelSpecError(f"{self.dist}: parameter {n} must be finite, got {v}")
        if self.dist == "Uniform" and not self.params["lower"] < self.params["upper"]:
            raise ModelSpecError("Uniform: lower must be < upper")
        object.__setattr__(self, "params", dict(self.params))

    def __hash__(self) -> int:
        return hash((self.dist, tuple(sorted(self.params.items()))))

    @classmethod
    def parse(cls, text: str, *, file: str | None = None, key: str | None = None) -> Prior:
        """Parse ``"Dist(arg, ..., name=arg)"`` without evaluating code; the text is kept."""
        if not isinstance(text, str):
            raise ModelSpecError("a prior must be a string such as 'LogNormal(log(0.9), 0.5)'",
                                 file=file, key=key)
        if len(text) > 500:
            raise ModelSpecError("a prior is longer than 500 characters", file=file, key=key)
        try:
            node = ast.parse(text.strip(), mode="eval").body
        except (SyntaxError, RecursionError, MemoryError):
            raise ModelSpecError(f"cannot parse prior {text!r}", file=file, key=key) from None
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            raise ModelSpecError(f"prior {text!r} must look like Dist(arg, ...)", file=file,
                                 key=key)
        name = node.func.id
        if name not in DISTRIBUTIONS:
            raise ModelSpecError(f"unknown distribution '{name}' in prior {text!r} "
                                 f"(known: {', '.join(DISTRIBUTIONS)})", file=file, key=key)
        pnames = DISTRIBUTIONS[name][0]
        if len(node.args) > len(pnames):
            raise ModelSpecError(f"{name} takes {len(pnames)} parameters {pnames}", file=file,
                                 key=key)
        params: dict[str, float] = {}
        for pn, arg in zip(pnames, node.args, strict=False):
            params[pn] = parse_number(ast.unparse(arg), file=file, key=key)
        for kw in node.keywords:
            if kw.arg not in pnames or kw.arg in params:
                raise ModelSpecError(f"{name}: unexpected or repeated parameter '{kw.arg}'",
                                     file=file, key=key)
            params[kw.arg] = parse_number(ast.unparse(kw.value), file=file, key=key)
        try:
            return cls(name, params, text=text.strip())
        except ModelSpecError as exc:
            raise ModelSpecError(str(exc), file=file, key=key) from None

    def __str__(self) -> str:
        return self.text if self.text is not None else self.canonical()

    def canonical(self) -> str:
        """The prior with evaluated positional numbers, e.g. ``"LogNormal(0.693..., 0.5)"``.

        Each number is the shortest text that reads back to the same float, so
        ``Prior.parse(p.canonical()) == p`` exactly.
        """
        names = DISTRIBUTIONS[self.dist][0]
        return f"{self.dist}(" + ", ".join(_num(self.params[n]) for n in names) + ")"

    @property
    def support(self) -> str:
        """``"real"``, ``"positive"``, ``"unit"`` (0, 1) or ``"interval"``."""
        return DISTRIBUTIONS[self.dist][2]

    def normal_on(self, scale: str) -> tuple[float, float] | None:
        """``(mu, sigma)`` when the prior is Normal on the transformed ``scale``, else None.

        ``LogNormal`` is Normal on the ``"log"`` scale, ``LogitNormal`` on ``"logit"`` and
        ``Normal`` on ``"linear"``; the population model then samples the transformed typical
        value directly, which keeps the posterior geometry simple.
        """
        match = {"log": "LogNormal", "logit": "LogitNormal", "linear": "Normal"}
        if match.get(scale) == self.dist:
            return self.params["mu"], self.params["sigma"]
        return None

    def to_pymc(self, name: str, **kwargs: Any) -> Any:
        """Create the PyMC random variable ``name`` (inside a model context)."""
        import pymc as pm

        return getattr(pm, self.dist)(name, **self.params, **kwargs)

    def sample(self, rng: np.random.Generator, size: int | tuple[int, ...] | None = None
               ) -> np.ndarray:
        """Draw from the prior with NumPy (used for prior-predictive simulation)."""
        p = self.params
        d = self.dist
        if d == "Normal":
            return rng.normal(p["mu"], p["sigma"], size)
        if d == "LogNormal":
            return np.exp(rng.normal(p["mu"], p["sigma"], size))
        if d == "LogitNormal":
            return special.expit(rng.normal(p["mu"], p["sigma"], size))
        if d == "HalfNormal":
            return np.abs(rng.normal(0.0, p["sigma"], size))
        if d == "HalfCauchy":
            return np.abs(p["beta"] * rng.standard_cauchy(size))
        if d == "HalfStudentT":
            return np.abs(p["sigma"] * rng.standard_t(p["nu"], size))
        if d == "StudentT":
            return p["mu"] + p["sigma"] * rng.standard_t(p["nu"], size)
        if d == "Exponential":
            return rng.exponential(1.0 / p["lam"], size)
        if d == "Gamma":
            return rng.gamma(p["alpha"], 1.0 / p["beta"], size)
        if d == "Beta":
            return rng.beta(p["alpha"], p["beta"], size)
        return rng.uniform(p["lower"], p["upper"], size)

    def pdf(self, x: np.ndarray | float) -> np.ndarray:
        """Density at natural-scale values ``x`` (0 outside the support), with SciPy.

        Parameters
        ----------
        x : array_like
            Values on the parameter's own scale and unit.

        Returns
        -------
        numpy.ndarray
            Densities, per unit of ``x``.
        """
        from scipy import stats

        p, d = self.params, self.dist
        x = np.asarray(x, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            if d == "Normal":
                out = stats.norm.pdf(x, p["mu"], p["sigma"])
            elif d == "LogNormal":
                out = stats.lognorm.pdf(x, s=p["sigma"], scale=np.exp(p["mu"]))
            elif d == "LogitNormal":
                inside = (x > 0) & (x < 1)
                out = np.where(inside, stats.norm.pdf(special.logit(x), p["mu"], p["sigma"])
                               / (x * (1 - x)), 0.0)
            elif d == "HalfNormal":
                out = stats.halfnorm.pdf(x, scale=p["sigma"])
            elif d == "HalfCauchy":
                out = stats.halfcauchy.pdf(x, scale=p["beta"])
            elif d == "HalfStudentT":
                out = np.where(x >= 0, 2 * stats.t.pdf(x, p["nu"], scale=p["sigma"]), 0.0)
            elif d == "StudentT":
                out = stats.t.pdf(x, p["nu"], loc=p["mu"], scale=p["sigma"])
            elif d == "Exponential":
                out = stats.expon.pdf(x, scale=1.0 / p["lam"])
            elif d == "Gamma":
                out = stats.gamma.pdf(x, p["alpha"], scale=1.0 / p["beta"])
            elif d == "Beta":
                out = stats.beta.pdf(x, p["alpha"], p["beta"])
            else:
                out = stats.uniform.pdf(x, p["lower"], p["upper"] - p["lower"])
        return np.nan_to_num(np.asarray(out, dtype=float), nan=0.0, posinf=0.0)

    def median(self) -> float:
        """Median of the prior (typical value used for simulation from typical values)."""
        p = self.params
        d = self.dist
        if d in ("Normal", "StudentT"):
            return p["mu"]
        if d == "LogNormal":
            return float(np.exp(p["mu"]))
        if d == "LogitNormal":
            return float(special.expit(p["mu"]))
        if d == "Uniform":
            return 0.5 * (p["lower"] + p["upper"])
        from scipy import stats

        exact = {
            "HalfNormal": lambda: stats.halfnorm.ppf(0.5, scale=p["sigma"]),
            "HalfCauchy": lambda: stats.halfcauchy.ppf(0.5, scale=p["beta"]),
            "HalfStudentT": lambda: p["sigma"] * stats.t.ppf(0.75, p["nu"]),
            "Exponential": lambda: stats.expon.ppf(0.5, scale=1.0 / p["lam"]),
            "Gamma": lambda: stats.gamma.ppf(0.5, p["alpha"], scale=1.0 / p["beta"]),
            "Beta": lambda: stats.beta.ppf(0.5, p["alpha"], p["beta"]),
        }
        return float(exact[d]())
