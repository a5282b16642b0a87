"""The immutable model specification parsed from a ``models/*.toml`` file."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import sympy as sp

from ckmodel.spec.prior import Prior

__all__ = ["Parameter", "Output", "Switch", "State", "ModelSpec", "ERROR_MODELS", "SCALES",
           "to_scale", "from_scale"]

#: Residual error models an output may use.
ERROR_MODELS = ("log_normal", "proportional", "additive", "combined", "student_t")
#: Scales on which random effects act: theta_i = g^-1(g(theta_pop) + eta_i).
SCALES = ("log", "logit", "linear")


def to_scale(x: Any, scale: str) -> Any:
    """A natural-scale parameter value on its own scale: log, logit or unchanged (linear).

    Examples
    --------
    >>> float(to_scale(1.0, "log")), float(to_scale(0.5, "logit"))
    (0.0, 0.0)
    """
    from scipy import special

    x = np.asarray(x, dtype=float)
    return {"log": np.log, "logit": special.logit}.get(scale, lambda v: v)(x)


def from_scale(x: Any, scale: str) -> Any:
    """Inverse of :func:`to_scale`: exp, expit or unchanged.

    Examples
    --------
    >>> float(from_scale(0.0, "logit"))
    0.5
    """
    from scipy import special

    x = np.asarray(x, dtype=float)
    return {"log": np.exp, "logit": special.expit}.get(scale, lambda v: v)(x)


@dataclass(frozen=True)
class State:
    """A state of the model (a CAR-T subset, a tumour compartment, a drug amount ...)."""

    name: str
    description: str = ""
    unit: str = ""


@dataclass(frozen=True)
class Parameter:
    """A structural parameter with its typical-value prior and random-effect prior.

    Attributes
    ----------
    name : str
        Symbol used in the equations.
    unit : str
        Unit, e.g. ``"1/day"``.
    prior : Prior
        Prior of the typical (population) value on the natural scale.
    iiv : Prior or None
        Prior of the SD of the subject random effect on the ``scale`` (None: no random effect).
    scale : {"log", "logit", "linear"}
        Scale on which random effects and covariate effects add.
    value : float
        Typical value used for simulation when no posterior is given (default: prior median).
    lower, upper : float or None
        Bounds of the natural-scale value.
    description : str
        What the parameter means.
    """

    name: str
    unit: str
    prior: Prior
    iiv: Prior | None
    scale: str
    value: float
    lower: float | None = None
    upper: float | None = None
    description: str = ""


@dataclass(frozen=True)
class Output:
    """A model output mapped to an analyte of the data, with its residual error model."""

    name: str
    value: sp.Expr
    unit: str = ""
    error: str = "log_normal"
    sigma: Prior = field(default_factory=lambda: Prior("HalfNormal", {"sigma": 1.0}))
    sigma_prop: Prior | None = None
    nu: float = 4.0
    description: str = ""


@dataclass(frozen=True)
class Switch:
    """A time-varying effect: ``parameter`` is multiplied by ``factor`` from ``onset`` on.

    ``onset`` names a subject-level column of the data (time of first tocilizumab dose, ADA onset
    ...); subjects with a missing onset never switch. The switch is smooth (``gate`` of width
    ``width``) so gradients exist.
    """

    name: str
    onset: str
    parameter: str
    factor: str
    width: float = 0.25
    description: str = ""


@dataclass(frozen=True)
class ModelSpec:
    """A CK model: states, parameters, equations, dosing and outputs.

    Build it with :func:`ckmodel.spec.load_model` (from a catalog name or a TOML path) or
    :func:`~ckmodel.spec.spec_from_dict`. All expressions are sympy objects over the spec's own
    symbols; ``t`` is time since the (first) dose in ``time_unit`` and ``AMT`` the dose amount.
    ``max_step`` is the model's own RK4 step schedule for fits (``[solver] max_step``, pairs
    ``(until, h)``), or None for :class:`ckmodel.population.ode.ODEOptions`'s default.
    """

    name: str
    description: str
    reference: str
    time_unit: str
    amount_unit: str
    states: tuple[State, ...]
    parameters: tuple[Parameter, ...]
    constants: Mapping[str, float]
    covariates: tuple[str, ...]
    derived: Mapping[str, sp.Expr]
    odes: Mapping[str, sp.Expr]
    dosing: Mapping[str, sp.Expr]
    initial: Mapping[str, sp.Expr]
    solution: Mapping[str, sp.Expr] | None
    superposition: bool
    outputs: tuple[Output, ...]
    switches: tuple[Switch, ...]
    max_step: tuple[tuple[float, float], ...] | None
    raw: Mapping[str, Any] = field(repr=False)
    file: str | None = field(default=None, repr=False, compare=False)

    # ------------------------------------------------------------------ accessors
    @property
    def state_names(self) -> tuple[str, ...]:
        """State names in declaration order."""
        return tuple(s.name for s in self.states)

    @property
    def param_names(self) -> tuple[str, ...]:
        """Parameter names in declaration order."""
        return tuple(p.name for p in self.parameters)

    @property
    def output_names(self) -> tuple[str, ...]:
        """Output (analyte) names."""
        return tuple(o.name for o in self.outputs)

    @property
    def output_units(self) -> dict[str, str]:
        """Unit of each output, as ``{analyte: unit}``: what ``read_ck(analytes=...)`` takes.

        Data whose ANALYTE codes are this model's outputs need nothing more to be read for it:
        ``read_ck(path, analytes=spec.output_units)``.
        """
        return {o.name: o.unit for o in self.outputs}

    @property
    def has_solution(self) -> bool:
        """True when the spec gives a closed-form solution for every state."""
        return self.solution is not None

    def parameter(self, name: str) -> Parameter:
        """Return the parameter called ``name``."""
        for p in self.parameters:
            if p.name == name:
                return p
        raise KeyError(f"model '{self.name}' has no parameter '{name}' "
                       f"(parameters: {', '.join(self.param_names)})")

    def output(self, name: str) -> Output:
        """Return the output called ``name``."""
        for o in self.outputs:
            if o.name == name:
                return o
        raise KeyError(f"model '{self.name}' has no output '{name}' "
                       f"(outputs: {', '.join(self.output_names)})")

    def typical_values(self) -> dict[str, float]:
        """Typical parameter values (``value`` of each parameter)."""
        return {p.name: p.value for p in self.parameters}

    # ------------------------------------------------------------------ identity
    def to_toml(self) -> str:
        """Canonical TOML text of the spec (what is saved with a fit)."""
        from ckmodel.spec.toml_write import dumps

        return dumps(self.raw)

    def hash(self) -> str:
        """SHA-256 of the canonical content (independent of formatting and comments)."""
        blob = json.dumps(_plain(self.raw), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    # ------------------------------------------------------------------ copies with changes
    def _with_raw(self, raw: dict[str, Any]) -> ModelSpec:
        from ckmodel.spec.parse import spec_from_dict

        return spec_from_dict(raw, file=self.file)

    def with_parameter(self, name: str, **changes: Any) -> ModelSpec:
        """Return a copy with fields of parameter ``name`` changed.

        Keys are those of the model file, e.g. ``prior="LogNormal(log(1), 0.3)"``,
        ``iiv="HalfNormal(0.2)"`` or ``iiv=False`` (no random effect), ``value=0.8``.
        """
        self.parameter(name)
        raw = copy.deepcopy(_plain(self.raw))
        raw["parameters"][name].update(changes)
        return self._with_raw(raw)

    def with_max_step(self, schedule: Any) -> ModelSpec:
        """Return a copy whose fits use this RK4 step schedule (``[solver] max_step``).

        ``schedule``: ``(until, h)`` pairs, ``until`` increasing (the last may be ``inf``),
        steps ``h > 0`` in the model's time unit; checked as the model file's would be.
        """
        raw = copy.deepcopy(_plain(self.raw))
        raw.setdefault("solver", {})["max_step"] = [[float(u), float(h)] for u, h in schedule]
        return self._with_raw(raw)

    def with_constants(self, **values: float) -> ModelSpec:
        """Return a copy with constants (e.g. the gate width ``w``) set to new values."""
        raw = copy.deepcopy(_plain(self.raw))
        for k, v in values.items():
            if k not in raw.get("constants", {}):
                raise KeyError(f"model '{self.name}' has no constant '{k}'")
            entry = raw["constants"][k]
            if isinstance(entry, dict):
                entry["value"] = float(v)
            else:
                raw["constants"][k] = float(v)
        return self._with_raw(raw)

    def __repr__(self) -> str:
        return (f"ModelSpec(name={self.name!r}, states={list(self.state_names)}, "
                f"parameters={list(self.param_names)}, outputs={list(self.output_names)}, "
                f"closed_form={self.has_solution})")

    # ------------------------------------------------------------------ rendering
    def to_markdown(self) -> str:
        """Equations and parameter table as Markdown (LaTeX maths between ``$$``)."""
        from ckmodel.spec.render import to_markdown

        return to_markdown(self)

    def to_text(self) -> str:
        """Plain-text equations and parameters for a terminal, as written in the model file.

        See :func:`ckmodel.spec.render.to_text`; :meth:`to_markdown` and :meth:`to_latex` are the
        typeset forms for reports.
        """
        from ckmodel.spec.render import to_text

        return to_text(self)

    def to_latex(self) -> str:
        """The model equations as a LaTeX ``aligned`` block."""
        from ckmodel.spec.render import equations_latex

        return equations_latex(self)

    def parameter_table(self) -> Any:
        """Parameters as a pandas DataFrame (name, unit, scale, value, prior, IIV prior)."""
        from ckmodel.spec.render import parameter_table

        return parameter_table(self)


def _plain(obj: Any) -> Any:
    if isinstance(obj, Mapping | MappingProxyType):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj
