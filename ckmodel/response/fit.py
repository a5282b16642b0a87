"""Fitting an exposure-response model: the table, the exposure, the graph, the sampler.

See :mod:`ckmodel.response.models` for what a fit holds and says, and
:mod:`ckmodel.response.likelihoods` for the graphs and their priors.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ckmodel.response.analysis import analysis_table, subject_column
from ckmodel.response.likelihoods import make_design
from ckmodel.response.models import MODELS, UNCERTAINTY, ResponseFit

__all__ = ["fit_response", "exposure_for_response", "default_cuts"]


def exposure_for_response(fit: Any, metric: str, *, scale: str = "log", n_draws: int = 400
                          ) -> tuple[pd.Series, pd.Series, pd.Series, str, str]:
    """A model-based exposure per subject, with its CK posterior spread.

    The posterior median, and the mean and SD of the model-scale exposure (log by default)
    over the CK posterior draws.

    Returns
    -------
    median, mu, sd : pandas.Series
        Indexed by subject ID.
    name, unit : str
        The variable, e.g. ``PB_QPCR_AUC0_28``, and its unit.
    """
    from ckmodel.exposure import exposure_draws, resolve_metric

    analyte, m = resolve_metric(metric, list(fit.spec.output_names), fit.spec.time_unit)
    ds = exposure_draws(fit, analytes=[analyte], metrics=[m], n_draws=n_draws)
    name = f"{analyte}_{m}"
    flat = ds[name].stack(sample=("chain", "draw")).transpose("subject", "sample").values
    ids = [str(s) for s in ds.subject.values]
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.log(flat) if scale == "log" else flat
    return (pd.Series(np.median(flat, axis=1), index=ids), pd.Series(v.mean(axis=1), index=ids),
            pd.Series(v.std(axis=1, ddof=1), index=ids), name, str(ds[name].attrs["unit"]))


def default_cuts(time: np.ndarray, event: np.ndarray, pieces: int = 4) -> np.ndarray:
    """Cut points of the piecewise-exponential baseline: quantiles of the event times."""
    t = np.asarray(time, float)[np.asarray(event) == 1]
    if t.size < pieces:
        pieces = max(1, t.size)
    return np.unique(np.quantile(t, np.linspace(0, 1, pieces + 1)[1:-1])) if pieces > 1 \
        else np.array([], float)


def _outcomes(outcomes: Any) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    from ckmodel.data import read_outcomes

    cov = None
    if hasattr(outcomes, "outcomes") and hasattr(outcomes, "covariates"):  # CKData
        cov, outcomes = outcomes.covariates, outcomes.outcomes
        if outcomes is None:
            raise ValueError("the CK data hold no outcomes table; read it with outcomes=...")
    if not isinstance(outcomes, pd.DataFrame) or outcomes.index.name != "ID":
        outcomes = read_outcomes(outcomes)
    out = outcomes.copy()
    out.index = out.index.astype(str)
    return out, cov


def fit_response(outcomes: Any, endpoint: str, *, exposure: str | None = None,
                 fit: Any = None, exposure_sd: str | None = None,
                 exposure_scale: str = "log", covariates: Sequence[str] = (),
                 model: str | None = None, hsct: str = "censor", uncertainty: str = "plugin",
                 pieces: int = 4, draws: int = 1000, tune: int = 1000, chains: int = 4,
                 seed: int = 1, target_accept: float = 0.9, progressbar: bool = False
                 ) -> ResponseFit:
    """Fit an exposure-response model of ``endpoint``.

    Parameters
    ----------
    outcomes : pandas.DataFrame, path or CKData
        Outcomes table (ID index or column), its CSV, or CK data read with outcomes (whose
        subject covariates then serve ``covariates``).
    endpoint : str
        Binary (``CRc``, ``ORR``, ``MRD_NEG``, ``DLT``, ``CRS3``, ``ICANS3``, any 0/1 column),
        ordinal (``CRS_GRADE``, ``ICANS_GRADE``, any integer grade column) or time to event
        (``EFS``, ``OS``, ``DOR``, ``MRD_DUR``, any ``X`` with ``X_TIME``/``X_EVENT``).
    exposure : str, optional
        Without ``fit``: an outcomes (or covariate) column. With ``fit``: a model-based
        metric (``AUC0_28``, ``CMAX``, ``BM_QPCR_CMAX`` ...). None: covariates only.
    fit : Fit, optional
        The CK fit behind a model-based exposure; its subject covariates also serve
        ``covariates``.
    exposure_sd : str, optional
        Without ``fit``: a column holding each subject's standard error of the model-scale
        exposure (of its log on the log scale), e.g. exported with empirical-Bayes
        estimates by another tool; lets ``uncertainty="propagate"`` work on a plain table.
    exposure_scale : {"log", "linear"}
        The model uses the log of the exposure (default) or the exposure itself.
    covariates : sequence of str
        Baseline covariates beside the exposure (marrow blast % above all: tumour burden
        drives both expansion and response).
    model : str, optional
        ``logistic`` (default) or ``probit`` for binary; ``ordinal``; ``weibull`` (default)
        or ``piecewise`` (``pieces`` intervals cut at event-time quantiles) for time to event.
    hsct : {"censor", "competing", "ignore"}
        Allo-HSCT in time-to-event models: censoring (as the KM summaries), or a competing
        event with its own cause-specific Weibull hazard (probabilities are then cumulative
        incidences); the choice is stated in ``meta["rule"]``.
    uncertainty : {"plugin", "propagate"}
        With ``fit``: the posterior median exposure as known, or the CK posterior carried
        through as a latent exposure per subject.

    Other Parameters
    ----------------
    draws, tune, chains, seed, target_accept, progressbar
        nutpie settings; the same seed gives the same posterior.

    Returns
    -------
    ResponseFit
        Warns (:class:`~ckmodel.errors.ConvergenceWarning`) when the sampler checks fail.
    """
    import nutpie

    from ckmodel.fitting.convergence import check_convergence
    from ckmodel.fitting.nutpie_compile import compile_nutpie
    from ckmodel.fitting.result import package_versions
    from ckmodel.response import likelihoods as L

    if uncertainty not in UNCERTAINTY:
        raise ValueError(f"uncertainty must be one of {', '.join(UNCERTAINTY)}, got "
                         f"{uncertainty!r}")
    if uncertainty == "propagate" and (exposure is None or (fit is None and exposure_sd is None)):
        raise ValueError("uncertainty='propagate' needs an exposure with its uncertainty: a "
                         "CK fit (model-based exposure) or an exposure_sd column")
    if exposure_sd is not None and fit is not None:
        raise ValueError("exposure_sd is for a plain table; a CK fit gives its own uncertainty")
    table_o, cov = _outcomes(outcomes)
    if fit is not None and fit.data is not None:
        cov = fit.data.covariates
    x = x_mu = x_sd = None
    name, unit = exposure, ""
    if exposure is not None and fit is not None:
        x, x_mu, x_sd, name, unit = exposure_for_response(fit, exposure, scale=exposure_scale)
    elif exposure is not None:
        x = subject_column(table_o, cov, exposure)
        if x is None:
            raise ValueError(f"exposure {exposure!r} is not a column of the outcomes (or of "
                             "the CK data's covariates); with a CK fit it names a metric")
        if exposure_sd is not None:
            if exposure_sd not in table_o.columns:
                raise ValueError(f"exposure_sd {exposure_sd!r} is not a column of the outcomes")
            x_sd = pd.to_numeric(table_o[exposure_sd], errors="coerce")
            with np.errstate(divide="ignore", invalid="ignore"):
                xv = pd.to_numeric(x, errors="coerce")
                x_mu = np.log(xv) if exposure_scale == "log" else xv
            x_mu.index = x_mu.index.astype(str)
    table, info = analysis_table(table_o, endpoint, exposure=x, exposure_scale=exposure_scale,
                                 covariates=list(covariates), covariate_table=cov, hsct=hsct)
    kind = info["kind"]
    model = model or MODELS[kind][0]
    if model not in MODELS[kind]:
        raise ValueError(f"model {model!r} does not fit a {kind} endpoint; use "
                         f"{' or '.join(MODELS[kind])}")
    if hsct == "competing" and (kind != "tte" or model != "weibull"):
        raise ValueError("hsct='competing' is for time-to-event endpoints with the Weibull "
                         "model (cause-specific hazards)")
    if info["n"] < 5:
        raise ValueError(f"{endpoint}: only {info['n']} subject(s) left to model "
                         f"(left out: {info['left_out']})")
    terms = (["X"] if exposure is not None else []) + list(covariates)
    sd = None
    if uncertainty == "propagate":
        sd = x_sd.reindex(table.index).to_numpy(float)
        if not np.all(np.isfinite(sd) & (sd > 0)):
            bad = list(table.index[~(np.isfinite(sd) & (sd > 0))])[:10]
            raise ValueError(f"exposure uncertainty must be a positive SD for every subject; "
                             f"missing or <= 0 for {bad}")
        table = table.assign(X=x_mu.reindex(table.index).to_numpy(float))
    design = make_design(table, terms, sd)
    meta: dict[str, Any] = {"terms": terms, "center": design["center"].tolist(),
                            "scale": design["scale"].tolist(), "rule": info["rule"],
                            "left_out": info["left_out"], "n": info["n"], "seed": int(seed),
                            "exposure_unit": unit,
                            "time_unit": fit.spec.time_unit if fit is not None else "day"}
    if kind == "binary":
        y = table["Y"].to_numpy(int)
        meta["events"] = int(y.sum())
        pm_model = L.binary_model(y, design, link=model)
    elif kind == "ordinal":
        y = table["Y"].to_numpy(int)
        cats = list(range(int(y.min()), int(y.max()) + 1))
        if len(cats) < 2:
            raise ValueError(f"{endpoint}: every subject has grade {cats[0]}; nothing to model")
        meta.update(categories=cats, events=int((y > cats[0]).sum()))
        pm_model = L.ordinal_model(y - cats[0], design, len(cats))
    else:
        t = table["TIME"].to_numpy(float)
        d = table["EVENT"].to_numpy(int)
        if np.any(t <= 0):
            bad = list(table.index[t <= 0])
            raise ValueError(f"{endpoint}: non-positive times for subject(s) {bad}")
        t_ref = float(np.median(t))
        meta.update(t_ref=t_ref, events=int(d.sum()), hsct_events=int(table["HSCT"].sum()))
        if model == "piecewise":
            cuts = default_cuts(t, d, pieces)
            meta["cuts"] = cuts.tolist()
            pm_model = L.piecewise_model(t, d, design, cuts, t_ref)
        elif hsct == "competing":
            pm_model = L.competing_model(t, d, table["HSCT"].to_numpy(int), design, t_ref)
        else:
            pm_model = L.weibull_model(t, d, design, t_ref)
    t0 = time.perf_counter()
    compiled = compile_nutpie(pm_model)
    idata = nutpie.sample(compiled, draws=draws, tune=tune, chains=chains, seed=seed,
                          progress_bar=progressbar, target_accept=target_accept)
    cols = {c: ("subject", table[c].to_numpy(float)) for c in table.columns}
    import xarray as xr

    idata.add_groups(constant_data=xr.Dataset(cols, coords={"subject": list(table.index)}))
    meta["convergence"] = check_convergence(idata)  # warns when a check fails
    meta.update(sampling_seconds=round(time.perf_counter() - t0, 2),
                versions=package_versions(), chains=chains, draws=draws, tune=tune)
    return ResponseFit(endpoint=endpoint, kind=kind, model=model, exposure_metric=name,
                       exposure_scale=exposure_scale, covariates=tuple(covariates),
                       uncertainty=uncertainty,
                       hsct=hsct, idata=idata, meta=meta)
