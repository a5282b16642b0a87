"""Parameter tables of a fit: typical values with units, IIV as CV%, residual errors."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from ckmodel.fitting.result import Fit

__all__ = ["summary_table"]


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
            add(v, f"residual SD ({err})" if err else "residual SD", "-",
                post[v].values.ravel(), v)
    table = pd.DataFrame(rows).set_index("parameter")
    for col in ("cv_percent", "r_hat", "ess_bulk", "ess_tail"):
        if col not in table:
            table[col] = np.nan
    return table


def _tname(name: str, scale: str) -> str:
    from ckmodel.population.model import transformed_name

    return transformed_name(name, scale)
