"""Render a ModelSpec: plain text for the terminal, LaTeX and Markdown for reports.

:func:`to_text` shows the equations and priors exactly as the model file writes them
(``dE/dt = (rho - (rho + alpha) * gate(t, tmax, w)) * E``, ``LogNormal(log(0.889), 0.5)``);
:func:`equations_latex` and :func:`to_markdown` typeset the parsed sympy expressions (derived
quantities substituted) for reports; :func:`parameter_table` is a pandas table of the parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import sympy as sp

if TYPE_CHECKING:
    from ckmodel.spec.model import ModelSpec

__all__ = ["equations_latex", "to_markdown", "to_text", "parameter_table"]

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


# ---------------------------------------------------------------------------- plain text


def _written(spec: ModelSpec, section: str, key: str, parsed: Any = None) -> str:
    """Expression text as written in the model file (``raw[section][key]``), else sympy's."""
    table = spec.raw.get(section, {})
    entry = table.get(key) if isinstance(table, Mapping) else None
    if isinstance(entry, Mapping):
        entry = entry.get("value")
    if isinstance(entry, str):
        return " ".join(entry.split())
    if entry is not None:
        return f"{entry:g}" if isinstance(entry, float) else str(entry)
    return sp.sstr(parsed) if parsed is not None else ""


def _columns(rows: list[list[str]], indent: str = "  ") -> list[str]:
    """Rows of cells as left-aligned columns (the last column is not padded)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return [indent + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False))
            + "  " + r[-1] for r in rows]


def to_text(spec: ModelSpec) -> str:
    """Plain-text description of the model for a terminal: equations and priors as written.

    Equations (derived quantities, ODEs, doses, pre-dose values, closed form, outputs) are the
    model file's own text, not re-typeset, and priors print as written
    (``LogNormal(log(0.889), 0.5)``). Time is ``t`` in the model's ``time_unit``.

    Parameters
    ----------
    spec : ModelSpec
        The model to describe.

    Returns
    -------
    str
        Sections *States*, *Constants*, *Derived*, *Equations* (one ``dX/dt`` per state),
        *Dose*, *Before the dose*, *Closed form*, *Outputs*, *Parameters* and *Time-varying
        switches* (empty sections are left out), ending with a newline.

    Examples
    --------
    >>> from ckmodel.spec import load_model
    >>> lines = load_model("expansion_biphasic").to_text().splitlines()
    >>> for line in lines[lines.index("Equations"):][:3]:
    ...     print(line)
    Equations
      dE/dt  =  (rho - (rho + alpha) * gate(t, tmax, w)) * E
      dM/dt  =  (rho - (rho + beta) * gate(t, tmax, w)) * M
    >>> rho = next(line for line in lines if line.startswith("  rho "))
    >>> "LogNormal(log(0.889), 0.5)" in rho and "HalfNormal(0.4)" in rho
    True
    """
    tu = spec.time_unit
    lines = [f"{spec.name}: {spec.description}" if spec.description else spec.name]
    if spec.reference:
        lines.append(f"Reference: {spec.reference}")
    lines += [f"Time t ({tu}) since the dose; dose AMT ({spec.amount_unit or 'as in the data'}).",
              "", "States"]
    lines += _columns([[s.name, s.description + (f" [{s.unit}]" if s.unit else "")]
                       for s in spec.states])
    if spec.constants:
        lines += ["", "Constants"]
        rows = []
        for c in spec.constants:
            entry = spec.raw.get("constants", {}).get(c)
            info = entry if isinstance(entry, Mapping) else {}
            unit = f" {info['unit']}" if info.get("unit") else ""
            rows.append([c, "=", _written(spec, "constants", c) + unit,
                         str(info.get("description", ""))])
        lines += _columns(rows)
    if spec.derived:
        lines += ["", "Derived"]
        lines += _columns([[d, "=", _written(spec, "derived", d, e)]
                           for d, e in spec.derived.items()])
    lines += ["", "Equations"]
    lines += _columns([[f"d{s}/dt", "=", _written(spec, "odes", s, spec.odes[s])]
                       for s in spec.state_names])
    lines += ["", "Dose (added to the state at each dose AMT; the first is at t = 0)"]
    lines += _columns([[s, "+=", _written(spec, "dosing", s, e)]
                       for s, e in spec.dosing.items()])
    if spec.initial:
        lines += ["", "Before the dose (other states start at 0)"]
        lines += _columns([[f"{s}(0-)", "=", _written(spec, "initial", s, e)]
                           for s, e in spec.initial.items()])
    if spec.solution is not None:
        add = "; repeated doses superpose" if spec.superposition else ""
        lines += ["", f"Closed form (one dose at t = 0{add})"]
        lines += _columns([[f"{s}(t)", "=", _written(spec, "solution", s, e)]
                           for s, e in spec.solution.items()])
    lines += ["", "Outputs"]
    rows = []
    for o in spec.outputs:
        err = f"error {o.error}, sigma ~ {o.sigma}"
        if o.sigma_prop is not None:
            err += f", sigma_prop ~ {o.sigma_prop}"
        if o.error == "student_t":
            err += f", nu = {o.nu:g}"
        rows.append([o.name, "=", _written(spec, "outputs", o.name, o.value),
                     f"[{o.unit}]" if o.unit else "", err])
    lines += _columns(rows)
    lines += ["", "Parameters"]
    rows = [["name", "unit", "scale", "value", "prior", "IIV SD prior", "description"]]
    rows += [[p.name, p.unit, p.scale, f"{p.value:.4g}", str(p.prior),
              str(p.iiv) if p.iiv is not None else "-", p.description]
             for p in spec.parameters]
    lines += _columns(rows)
    if spec.switches:
        lines += ["", "Time-varying switches"]
        lines += [f"  {w.name}: {w.parameter} multiplied by {w.factor} from the time in column "
                  f"{w.onset} (smooth gate, width {w.width:g} {tu})" for w in spec.switches]
    if spec.max_step:
        steps = ", then ".join(f"{h:g} {tu} to {tu} {u:g}" if np.isfinite(u) else
                               f"{h:g} {tu} after" for u, h in spec.max_step)
        lines += ["", f"RK4 steps of ODE fits (at most): {steps}"]
    return "\n".join(line.rstrip() for line in lines) + "\n"
