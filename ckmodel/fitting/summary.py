"""What a fit says: records used and left out, the convergence verdict, the parameter table.

:class:`FitSummary` (returned by :meth:`Fit.summary`) opens with the records: per analyte,
how many the data hold, how many the fit used (of which BLQ, censored), and how many were left
out for each reason. Then the convergence verdict (chains, draws, divergences, worst R-hat,
lowest ESS) and the parameter table (typical values with units, IIV as CV%, residual errors,
covariate effects, fixed parameters).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ckmodel.errors import hint
from ckmodel.fitting.centering import describe_centering
from ckmodel.population.ode_stability import NEAR_LIMIT_SHARE

if TYPE_CHECKING:
    from ckmodel.fitting.result import Fit

__all__ = ["summary_table", "records_table", "fit_summary", "FitSummary"]


def _stats(x: np.ndarray, prob: float) -> dict[str, float]:
    lo, hi = np.quantile(x, [(1 - prob) / 2, (1 + prob) / 2])
    return {"median": float(np.median(x)), "mean": float(np.mean(x)), "sd": float(np.std(x)),
            "lower": float(lo), "upper": float(hi)}


def summary_table(fit: Fit, *, prob: float = 0.95) -> pd.DataFrame:
    """One row per population-level quantity of ``fit``; see :meth:`Fit.summary`."""
    post = fit.posterior
    diag = fit.diagnostics()
    rows = []

    def add(name: str, kind: str, unit: str, draws: np.ndarray, var: str, **extra: float
            ) -> None:
        row = {"parameter": name, "kind": kind, "unit": unit, **_stats(draws, prob), **extra}
        if var in diag.index:
            row.update(diag.loc[var, ["r_hat", "ess_bulk", "ess_tail"]].to_dict())
        rows.append(row)

    for p in fit.spec.parameters:
        var = f"{p.name}_pop"
        if var in post:
            add(p.name, "typical value", p.unit, post[var].values.ravel(),
                var if var in diag.index else _tname(p.name, p.scale))
    if "omega" in post:
        for name in post["omega"].coords["iiv"].values:
            scale = fit.spec.parameter(str(name)).scale
            draws = post["omega"].sel(iiv=name).values.ravel()
            extra = {}
            if scale == "log":
                extra["cv_percent"] = float(np.median(np.sqrt(np.expm1(draws**2))) * 100)
            add(f"omega_{name}", f"IIV SD ({scale} scale)", "-", draws,
                f"omega[{name}]", **extra)
    if "beta" in post:
        for lab in post["beta"].coords["covariate_effect"].values:
            add(str(lab), "covariate effect", "-", post["beta"].sel(covariate_effect=lab)
                .values.ravel(), f"beta[{lab}]")
    for v in post.data_vars:
        if v.startswith("sigma_"):
            a = v.removeprefix("sigma_prop_").removeprefix("sigma_")
            err = fit.meta.get("error_models", {}).get(a, "")
            unit = {"log_normal": "log scale", "student_t": "log scale",
                    "proportional": "fraction"}.get(err, "-")
            if err == "additive" or (err == "combined" and not v.startswith("sigma_prop_")):
                unit = fit.meta.get("data_units", {}).get(a, "") or "DV unit"
            elif err == "combined":
                unit = "fraction"
            add(v, f"residual SD ({err})" if err else "residual SD", unit,
                post[v].values.ravel(), v)
    for name, value in (fit.meta.get("options", {}).get("fixed") or {}).items():
        if f"{name}_pop" not in post:
            p = fit.spec.parameter(name)
            rows.append({"parameter": name, "kind": "fixed", "unit": p.unit,
                         **dict.fromkeys(("median", "mean", "lower", "upper"), float(value)),
                         "sd": 0.0})
    table = pd.DataFrame(rows).set_index("parameter")
    for col in ("cv_percent", "r_hat", "ess_bulk", "ess_tail"):
        if col not in table:
            table[col] = np.nan
    return table


def _tname(name: str, scale: str) -> str:
    from ckmodel.population.model import transformed_name

    return transformed_name(name, scale)


def records_table(fit: Fit) -> pd.DataFrame:
    """Records per analyte: in the data, used (BLQ among them), left out by reason.

    Returns
    -------
    pandas.DataFrame
        Columns ``ANALYTE``, ``RECORDS``, ``USED``, ``USED_BLQ``, then one column per reason a
        record was left out (counts); empty when the fit does not say (an old file).
    """
    rec = fit.meta.get("records")
    if not rec:
        return pd.DataFrame(columns=["ANALYTE", "RECORDS", "USED", "USED_BLQ"])
    table = pd.DataFrame(rec)
    for c in table.columns[1:]:
        table[c] = pd.to_numeric(table[c]).fillna(0).astype(int)
    return table


@dataclass(frozen=True)
class FitSummary:
    """The summary of a fit: records, convergence verdict and parameter table.

    Attributes
    ----------
    model : str
        Model name.
    records : pandas.DataFrame
        See :func:`records_table`.
    convergence : dict
        The verdict stored with the fit (see :func:`ckmodel.fitting.convergence.check_convergence`);
        empty for approximate samplers.
    parameters : pandas.DataFrame
        See :func:`summary_table`.
    notes : list of str
        What else a reader must know (time-unit conversion, sampler, seed).
    """

    model: str
    records: pd.DataFrame
    convergence: dict[str, Any]
    parameters: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    def verdict(self) -> str:
        """One line: whether the fit converged, with chains, draws and the worst figures."""
        c = self.convergence
        if not c:
            return "convergence: not assessed (approximate sampler)"
        parts = [f"{c.get('chains', '?')} chains x {c.get('draws', '?')} draws",
                 f"{c.get('divergences', 0)} divergences"]
        if "max_rhat" in c:
            parts.append(f"worst R-hat {c['max_rhat']:.3f}")
        if "min_ess_bulk" in c:
            parts.append(f"lowest bulk ESS {c['min_ess_bulk']:.0f}")
        if "min_bfmi" in c:
            parts.append(f"lowest E-BFMI {c['min_bfmi']:.2f}")
        head = "converged" if c.get("ok") else "NOT CONVERGED"
        text = f"{head}: " + ", ".join(parts)
        if not c.get("ok") and c.get("flagged"):
            text += f"; flagged: {', '.join(map(str, c['flagged'][:8]))}"
        return text

    def __str__(self) -> str:
        lines = [f"Fit of {self.model}", "", "Records (observations):",
                 self.records.to_string(index=False), "", self.verdict()]
        lines += [f"note: {n}" for n in self.notes]
        lines += ["", self.parameters.to_string(float_format=lambda v: f"{v:.4g}")]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        notes = "".join(f"<p>{n}</p>" for n in self.notes)
        return (f"<h4>Fit of {self.model}</h4><p><b>Records</b></p>"
                f"{self.records.to_html(index=False)}<p><b>{self.verdict()}</b></p>{notes}"
                f"{self.parameters.to_html(float_format=lambda v: f'{v:.4g}')}")


def _step_grid_note(grid: dict[str, Any]) -> str:
    """One line on an ODE fit's RK4 step-grid check (``ckmodel.population.ode_stability``)."""
    def steps(rows: list[list[float]]) -> str:
        return ", ".join(f"{h:g} to {u:g}" for u, h in rows)

    checks = [(what, grid[key]) for key, what in (("prior", "subjects drawn from the priors"),
                                                  ("posterior", "posterior subject-draws"))
              if grid.get(key)]
    found = " and ".join(f"{100 * g['unstable_fraction']:.1f} % of {g['checked']} {what}"
                         for what, g in checks)
    text = (f"RK4 step grid (largest steps {steps(grid['prior']['max_step'])}): unstable "
            f"for {found}")
    last = checks[-1][1]
    near = (grid.get("posterior") or {}).get("near_limit_fraction", 0.0)
    if near > 0:
        text += (f"; {100 * near:.1f} % of posterior subject-draws take a step within 20 % of "
                 "its stability limit")
    if last["unstable_fraction"] > 0 or near > NEAR_LIMIT_SHARE:
        text += (f"; steps {steps(last['suggested'])} would be stable "
                 f"({hint(python='spec.with_max_step', cli='--max-step UNTIL:STEP')})")
    return text


def fit_summary(fit: Fit, *, prob: float = 0.95) -> FitSummary:
    """Build the :class:`FitSummary` of ``fit``; see :meth:`Fit.summary`."""
    meta = fit.meta
    notes = []
    scale = meta.get("time_scale", 1.0)
    if scale not in (None, 1.0):
        notes.append(f"data times in {meta.get('data_time_unit')}s were converted to the "
                     f"model's {meta.get('model_time_unit')}s (x {scale:.6g}); results are in "
                     f"{meta.get('model_time_unit')}s")
    attempts = meta.get("attempts") or []
    if attempts and len(attempts[-1].get("checked_at") or []) > 1:
        last = attempts[-1]
        points = ", ".join(map(str, last["checked_at"]))
        notes.append(f"sampled on until converged: checks at {points} draws per chain; "
                     f"{last['draws']} kept (budget "
                     f"{meta.get('until_converged_seconds')} s)")
    if len(attempts) > 1:
        runs = "; ".join(f"{a['tune']}+{a['draws']} ({'ok' if a.get('ok') else 'not converged'},"
                         f" {a['seconds']:.0f} s"
                         + (f", {a['random_effects']}" if a.get("random_effects") else "") + ")"
                         for a in attempts)
        notes.append(f"run extended until converged (budget {meta.get('until_converged_seconds')}"
                     f" s): tuning+draws per chain {runs}")
    conv = meta.get("convergence") or {}
    said = {str(p) for p in conv.get("problems", [])}  # a weak IIV that also fails its checks
    notes += [w["advice"] for w in conv.get("weak_iiv", []) if w["advice"] not in said]
    notes += list(conv.get("efficiency", []))
    notes.append(f"sampler {meta.get('sampler')}, seed {meta.get('seed')}")
    if meta.get("step_grid"):
        notes.append(_step_grid_note(meta["step_grid"]))
    if meta.get("centering") or "centered" in (meta.get("options") or {}):
        notes.append(describe_centering(meta))
    return FitSummary(model=fit.spec.name, records=records_table(fit),
                      convergence=dict(meta.get("convergence") or {}),
                      parameters=summary_table(fit, prob=prob), notes=notes)
