"""Render a ModelSpec as LaTeX equations, Markdown and a parameter table (used by reports)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd
import sympy as sp

if TYPE_CHECKING:
    from ckmodel.spec.model import ModelSpec

__all__ = ["equations_latex", "to_markdown", "parameter_table"]

_GREEK = {"rho", "alpha", "beta", "gamma", "delta", "theta", "mu", "kappa", "lambda", "sigma",
          "tau", "eta", "phi", "omega", "epsilon", "nu", "xi", "psi", "chi", "zeta"}


def _symbol_names(spec: ModelSpec) -> dict[sp.Symbol, str]:
    names = {}
    for n in (*spec.state_names, *spec.param_names, *spec.constants, *spec.covariates):
        head, _, tail = n.partition("_")
        tex = ("\\" + head if head in _GREEK else head) + (f"_{{{tail}}}" if tail else "")
        if len(head) > 1 and head not in _GREEK:
            tex = r"\mathrm{" + n.replace("_", r"\_") + "}"
        names[sp.Symbol(n, real=True)] = tex
    return names


def _tex(expr: sp.Expr, names: dict[sp.Symbol, str]) -> str:
    return sp.latex(expr, symbol_names=names)


def equations_latex(spec: ModelSpec) -> str:
    """The ODEs, doses, closed form (if any) and outputs as one LaTeX ``aligned`` block.

    Derived quantities are shown substituted, as the solver uses them.
    """
    names = _symbol_names(spec)
    rows = []
    for s in spec.state_names:
        rows.append(rf"\frac{{d{names[sp.Symbol(s, real=True)]}}}{{dt}} &= "
                    + _tex(spec.odes[s], names))
    for s, e in spec.dosing.items():
        rows.append(rf"{names[sp.Symbol(s, real=True)]}(0^+) &= " + _tex(e, names))
    if spec.solution is not None:
        for s, e in spec.solution.items():
            rows.append(rf"{names[sp.Symbol(s, real=True)]}(t) &= " + _tex(e, names))
    for o in spec.outputs:
        rows.append(r"\mathrm{" + o.name.replace("_", r"\_") + "} &= " + _tex(o.value, names))
    return "\\begin{aligned}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}"


def parameter_table(spec: ModelSpec) -> pd.DataFrame:
    """One row per parameter: unit, scale, typical value, priors and description."""
    rows = [
        {
            "parameter": p.name,
            "unit": p.unit,
            "scale": p.scale,
            "value": p.value,
            "prior": str(p.prior),
            "iiv_prior": str(p.iiv) if p.iiv is not None else "none (fixed across subjects)",
            "description": p.description,
        }
        for p in spec.parameters
    ]
    return pd.DataFrame(rows).set_index("parameter")


def to_markdown(spec: ModelSpec) -> str:
    """Markdown description of the model: header, equations, parameters, outputs, switches."""
    lines = [f"## {spec.name}", "", spec.description, ""]
    if spec.reference:
        lines += [f"*Reference:* {spec.reference}", ""]
    lines += [f"Time unit: {spec.time_unit}. Dose unit (AMT): {spec.amount_unit or 'as in data'}.",
              "", "### States", ""]
    lines += [f"- `{s.name}`: {s.description}" + (f" ({s.unit})" if s.unit else "")
              for s in spec.states]
    lines += ["", "### Equations", "", "$$", equations_latex(spec), "$$", ""]
    if spec.constants:
        lines += ["Constants: " + ", ".join(f"`{k}` = {v:g}" for k, v in spec.constants.items()),
                  ""]
    lines += ["### Parameters", "", "| parameter | unit | scale | value | prior | IIV SD prior |"
              " description |", "|---|---|---|---|---|---|---|"]
    for p in spec.parameters:
        iiv = str(p.iiv) if p.iiv is not None else "-"
        lines.append(f"| `{p.name}` | {p.unit} | {p.scale} | {p.value:.4g} | {p.prior} | {iiv} |"
                     f" {p.description} |")
    lines += ["", "### Outputs", "", "| analyte | unit | error model | sigma prior |",
              "|---|---|---|---|"]
    for o in spec.outputs:
        lines.append(f"| {o.name} | {o.unit} | {o.error} | {o.sigma} |")
    if spec.switches:
        lines += ["", "### Time-varying switches", ""]
        lines += [f"- `{s.name}`: `{s.parameter}` multiplied by `{s.factor}` from the time in "
                  f"column `{s.onset}` (smooth gate, width {s.width:g} {spec.time_unit})"
                  for s in spec.switches]
    return "\n".join(lines) + "\n"
