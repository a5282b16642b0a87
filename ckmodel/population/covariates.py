"""Covariate effects on typical values, declared in one readable form.

Each effect adds to the parameter on its random-effect scale (log for rates, logit for
fractions)::

    "rho ~ log(DOSE)"            power model:   rho_i = rho * (DOSE_i / median DOSE)^b
    "rho ~ log(DOSE / 1.5)"      power model with reference 1.5
    "f0 ~ BM_BLAST_PCT"          exponential:   f0_i = f0 * exp(b * (BLAST_i - median BLAST))
    "alpha ~ cat(LD)"            categorical:   alpha_i = alpha * exp(b_level) (reference: the
                                 most frequent level)
    "rho ~ log(DOSE) + cat(LD)"  several terms
    "d_e ~ after(ADA_TIME)"      time-varying: d_e_i(t) = d_e_i * F from the subject's
                                 ADA_TIME on (smooth switch; missing time = never), with the
                                 factor F a new parameter ``d_e_after_ADA_TIME`` (prior
                                 LogNormal(0, 1)); the fit then solves the ODEs

Formulas are parsed with :mod:`ast` through a whitelist (never evaluated).
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ckmodel.errors import DatasetError, ModelSpecError, Problem
from ckmodel.spec.model import ModelSpec
from ckmodel.spec.prior import Prior

__all__ = ["CovariateEffect", "parse_covariates", "covariate_design", "apply_time_varying"]


@dataclass(frozen=True)
class CovariateEffect:
    """One covariate effect on the typical value of a parameter.

    Attributes
    ----------
    parameter : str
        Model parameter affected.
    covariate : str
        Subject-level column of the data.
    kind : {"power", "linear", "categorical", "after"}
        Functional form (see module docstring); ``after`` is time-varying.
    reference : float or str or None
        Reference value (power/linear) or level (categorical); None: from the data (median, or
        most frequent level).
    prior : Prior or None
        Prior of the coefficient(s); None: Normal(0, 1) for power exponents, Normal(0, 0.5 / SD)
        for linear effects (0.5 on the log scale per SD of the covariate), Normal(0, 0.5) per
        categorical level.
    """

    parameter: str
    covariate: str
    kind: str
    reference: float | str | None = None
    prior: Prior | None = None

    @property
    def label(self) -> str:
        """Readable name, e.g. ``rho~log(DOSE)``."""
        form = {"power": f"log({self.covariate})", "linear": self.covariate,
                "categorical": f"cat({self.covariate})",
                "after": f"after({self.covariate})"}[self.kind]
        return f"{self.parameter}~{form}"


def _terms(node: ast.AST, text: str) -> list[ast.AST]:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _terms(node.left, text) + _terms(node.right, text)
    return [node]


def parse_covariates(formulas: Sequence[str | CovariateEffect]) -> tuple[CovariateEffect, ...]:
    """Parse covariate formulas such as ``"rho ~ log(DOSE) + cat(LD)"``.

    Examples
    --------
    >>> [e.label for e in parse_covariates(["rho ~ log(DOSE) + cat(LD)", "f0 ~ BLAST"])]
    ['rho~log(DOSE)', 'rho~cat(LD)', 'f0~BLAST']
    """
    out: list[CovariateEffect] = []
    for f in formulas:
        if isinstance(f, CovariateEffect):
            out.append(f)
            continue
        if not isinstance(f, str) or f.count("~") != 1:
            raise ModelSpecError(f"covariate formula {f!r} must look like 'param ~ term + ...'")
        lhs, rhs = (s.strip() for s in f.split("~"))
        if not lhs.isidentifier():
            raise ModelSpecError(f"'{lhs}' in {f!r} is not a parameter name")
        try:
            tree = ast.parse(rhs, mode="eval").body
        except SyntaxError:
            raise ModelSpecError(f"cannot parse covariate formula {f!r}") from None
        for term in _terms(tree, f):
            out.append(_term(lhs, term, f))
    return tuple(out)


def _term(param: str, term: ast.AST, text: str) -> CovariateEffect:
    bad = ModelSpecError(f"term '{ast.unparse(term)}' in {text!r}: use COV, log(COV), "
                         "log(COV / REF), cat(COV) or after(ONSET_TIME)")
    if isinstance(term, ast.Name):
        return CovariateEffect(param, term.id, "linear")
    if not (isinstance(term, ast.Call) and isinstance(term.func, ast.Name)
            and len(term.args) == 1 and not term.keywords):
        raise bad
    arg = term.args[0]
    if term.func.id == "cat" and isinstance(arg, ast.Name):
        return CovariateEffect(param, arg.id, "categorical")
    if term.func.id == "after" and isinstance(arg, ast.Name):
        return CovariateEffect(param, arg.id, "after")
    if term.func.id == "log":
        if isinstance(arg, ast.Name):
            return CovariateEffect(param, arg.id, "power")
        if (isinstance(arg, ast.BinOp) and isinstance(arg.op, ast.Div)
                and isinstance(arg.left, ast.Name) and isinstance(arg.right, ast.Constant)
                and isinstance(arg.right.value, int | float) and arg.right.value > 0):
            return CovariateEffect(param, arg.left.id, "power", float(arg.right.value))
    raise bad


def covariate_design(effect: CovariateEffect, values: pd.Series
                     ) -> tuple[np.ndarray, list[str], Prior, float | str]:
    """Design columns of one effect for the subjects in ``values`` (indexed by subject ID).

    Returns
    -------
    X : array, shape (n_subjects, k)
        Columns multiplying the coefficients (added on the parameter's scale).
    labels : list of str
        Coefficient names (one per column).
    prior : Prior
        Prior of each coefficient.
    reference : float or str
        Reference value or level used.
    """
    missing = values[values.isna()]
    if len(missing):
        raise DatasetError([Problem(f"covariate {effect.covariate} is missing; the effect "
                                    f"{effect.label} needs it for every subject (impute it or "
                                    "drop the effect)", column=effect.covariate, subject=str(s),
                                    rule="covariate_missing") for s in missing.index])
    if effect.kind == "categorical":
        levels = values.astype(str)
        ref = (str(effect.reference) if effect.reference is not None
               else levels.value_counts().sort_index().idxmax())
        others = sorted(set(levels) - {ref})
        x = np.column_stack([(levels == lv).to_numpy(float) for lv in others]) if others else \
            np.zeros((len(values), 0))
        labels = [f"{effect.label}[{lv}]" for lv in others]
        return x, labels, effect.prior or Prior("Normal", {"mu": 0.0, "sigma": 0.5}), ref
    num = pd.to_numeric(values, errors="coerce")
    if num.isna().any():
        raise DatasetError(f"covariate {effect.covariate} has non-numeric values; use "
                           f"cat({effect.covariate}) for a categorical effect")
    v = num.to_numpy(float)
    if effect.kind == "power":
        if np.any(v <= 0):
            raise DatasetError(f"covariate {effect.covariate} has values <= 0; a power effect "
                               f"log({effect.covariate}) needs positive values")
        ref = float(effect.reference) if effect.reference is not None else float(np.median(v))
        x = np.log(v / ref)[:, None]
        return x, [effect.label], effect.prior or Prior("Normal", {"mu": 0.0, "sigma": 1.0}), ref
    ref = float(effect.reference) if effect.reference is not None else float(np.median(v))
    sd = float(np.std(v))
    prior = effect.prior or Prior("Normal", {"mu": 0.0, "sigma": 0.5 / (sd if sd > 0 else 1.0)})
    return (v - ref)[:, None], [effect.label], prior, ref


def apply_time_varying(spec: ModelSpec, effects: Sequence[CovariateEffect]
                       ) -> tuple[ModelSpec, tuple[CovariateEffect, ...]]:
    """Turn ``after(ONSET)`` effects into switches of the spec; return it and the other effects.

    ``p ~ after(ONSET)`` adds the parameter ``p_after_ONSET`` (the factor multiplying ``p`` from
    each subject's onset time on; prior LogNormal(0, 1) unless the effect has a prior; no
    random effect) and a smooth switch (width 0.25 time units) reading ``ONSET`` from the
    subject-level covariates or outcomes.
    """
    from ckmodel.spec.parse import spec_from_dict

    timed = [e for e in effects if e.kind == "after"]
    rest = tuple(e for e in effects if e.kind != "after")
    if not timed:
        return spec, rest
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in spec.raw.items()}
    raw.setdefault("parameters", {})
    raw["switches"] = dict(raw.get("switches", {}))
    for e in timed:
        if e.parameter not in spec.param_names:
            raise ModelSpecError(f"'{e.parameter}' in {e.label} is not a parameter of model "
                                 f"'{spec.name}' (parameters: {', '.join(spec.param_names)})")
        name = f"{e.parameter}_after_{e.covariate}"
        if name in raw["parameters"]:
            raise ModelSpecError(f"{e.label} is given twice")
        raw["parameters"][name] = {
            "unit": "-", "value": 1.0, "scale": "log",
            "prior": str(e.prior) if e.prior is not None else "LogNormal(0, 1)",
            "description": f"factor on {e.parameter} from {e.covariate} on (time-varying)"}
        raw["switches"][name] = {"onset": e.covariate, "parameter": e.parameter,
                                 "factor": name, "width": 0.25,
                                 "description": f"{e.label} (covariate effect)"}
    return spec_from_dict(raw, file=spec.file), rest
