"""Report sections that need more than the fit: endpoints, exposure, exposure-response, doses.

Each takes results made by their own floors (:mod:`ckmodel.response.endpoints`,
:mod:`ckmodel.exposure`, :mod:`ckmodel.response`, :mod:`ckmodel.select`) and only lays them
out; nothing here estimates anything, so the report says what those results say.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from ckmodel.report.document import Section, Table, Text, as_blocks
from ckmodel.report.figures import figure_block

__all__ = ["endpoints_section", "exposure_section", "response_section", "selection_section"]


def endpoints_section(data: Any, outcomes: pd.DataFrame | None, *, by: str | None) -> Section:
    """The trial's endpoint summaries as the protocol reports them, and Kaplan-Meier curves."""
    from ckmodel.plots import plot_km
    from ckmodel.response.endpoints import endpoint_table

    src = data if outcomes is None else outcomes
    cov = None if outcomes is None else getattr(data, "covariates", None)
    tab = endpoint_table(src, by=by, covariates=cov)
    notes = [str(n) for n in tab.attrs.get("notes", [])]
    blocks: list = [Text(notes, "list")] if notes else []
    blocks.append(Table(tab, caption="Endpoints" + (f" by {by}" if by else "")
                        + f" (times in {tab.attrs.get('time_unit', 'the data time unit')}s)"))
    try:
        fig = plot_km(src, by=by, covariates=cov)
    except ValueError as exc:  # no time-to-event columns in the outcomes
        blocks.append(Text(f"No Kaplan-Meier curves: {exc}", "note"))
    else:
        blocks.append(figure_block(fig, "km", caption="Kaplan-Meier curves with censoring marks"
                                   " and numbers at risk" + (f", by {by}" if by else "")))
    return Section("endpoints", "Endpoints", tuple(blocks))


def exposure_section(exposure: Any, *, nca: pd.DataFrame | None = None) -> Section:
    """Model-based exposure per subject: the trial's spread, per-subject intervals, vs NCA."""
    if isinstance(exposure, pd.DataFrame):
        table, notes = exposure, ""
    else:
        from ckmodel.exposure import exposure_table

        table, notes = exposure_table(exposure), str(exposure.attrs.get("notes", ""))
    blocks: list = [Text("Posterior exposure of each subject from the individual trajectories "
                         "over the whole dosing history on a dense grid (lin-up/log-down AUC "
                         "as NCA computes it; time above the analyte's LLOQ): median and 95 % "
                         "credible interval." + (f" Notes: {notes}." if notes else ""))]
    if {"ANALYTE", "METRIC", "UNIT", "MEDIAN"} <= set(table.columns):
        over = (table.groupby(["ANALYTE", "METRIC", "UNIT"], sort=False)["MEDIAN"]
                .agg(SUBJECTS="size", MEDIAN="median", MIN="min", MAX="max").reset_index())
        blocks.append(Table(over, caption="Across subjects: the median, smallest and largest "
                                          "subject posterior median"))
    if nca is not None and len(nca):
        agree = (nca.groupby(["ANALYTE", "METRIC", "RICH"], sort=False)["RATIO"]
                 .agg(PROFILES="size", MEDIAN_RATIO="median",
                      Q10=lambda r: r.quantile(0.1), Q90=lambda r: r.quantile(0.9))
                 .reset_index().rename(columns={"RICH": "RICH SAMPLING"}))
        blocks.append(Table(agree, caption="NCA / model-based exposure per profile: on rich "
                                           "profiles they should agree; on sparse ones NCA "
                                           "misses the peak and truncates the AUC"))
    blocks.append(Table(table, caption="Exposure per subject (median, 95 % CrI)"))
    return Section("exposure", "Model-based exposure", tuple(blocks))


def _response_blocks(res: Any, k: int) -> list:
    import numpy as np

    m = res.meta
    conv = m.get("convergence", {})
    verdict = ("converged" if conv.get("ok") else "NOT CONVERGED: "
               + "; ".join(map(str, conv.get("problems", []))))
    left = m.get("left_out") or {}
    blocks: list = [Text(f"{res.endpoint}: {res.kind} endpoint, {res.model} model of "
                         f"{res.exposure_scale} {res.exposure_metric or '(no exposure)'}"
                         + (f" and {', '.join(res.covariates)}" if res.covariates else "")
                         + f"; exposure uncertainty {res.uncertainty}; {m.get('n')} subjects, "
                         f"{m.get('events')} events; {m.get('rule')}"
                         + (f"; left out: {left}" if left else "") + f"; sampler {verdict}.",
                         "p" if conv.get("ok") else "alert")]
    blocks.append(Table(res.coefficients(), caption=f"{res.endpoint}: coefficients (median, "
                        "95 % CrI; log odds ratio, towards a higher grade for ordinal, or log "
                        "hazard ratio, per unit of the exposure as entered)"))
    if res.exposure_metric is not None and res.kind in ("binary", "ordinal"):
        rows = []
        for p in (0.1, 0.2, 0.3):
            x = res.exposure_at(p)
            ok = np.isfinite(x)
            if ok.mean() < 0.5:
                continue
            lo, med, hi = np.quantile(x[ok], [0.025, 0.5, 0.975])
            rows.append({"probability": p, "exposure (median)": med, "2.5%": lo, "97.5%": hi,
                         "draws with a positive slope %": 100 * ok.mean()})
        if rows:
            unit = m.get("exposure_unit") or ""
            blocks.append(Table(pd.DataFrame(rows), caption=f"{res.exposure_metric}"
                                f"{f' ({unit})' if unit else ''} at which P({res.endpoint}) "
                                "reaches 10, 20 and 30 % (covariates at their means)"))
    if res.exposure_metric is not None:
        blocks.append(figure_block(res.plot(), f"er-{k}", caption=f"{res.endpoint} against "
                                   f"{res.exposure_metric}: model median and 95 % band, "
                                   "observed proportions in exposure tertiles (exact 95 % CI)"
                                   if res.kind != "tte" else f"{res.endpoint}: Kaplan-Meier "
                                   "by exposure tertile against the model at each tertile's "
                                   "median exposure"))
    return blocks


def response_section(responses: Sequence[Any]) -> Section:
    """Each exposure-response fit: what was modelled, its coefficients and its curve."""
    from ckmodel.plots.response import plot_forest

    blocks: list = []
    for k, res in enumerate(responses, start=1):
        blocks += _response_blocks(res, k)
    if sum(1 for r in responses if r.term_names()) > 1:
        blocks.append(figure_block(plot_forest(responses), "er-forest",
                                   caption="Effects of every model (median, 95 % CrI)"))
    return Section("response", "Exposure-response", tuple(blocks))


def selection_section(selection: Any) -> Section:
    """Dose selection: per-dose probabilities, the overdose-limited and utility doses."""
    if isinstance(selection, pd.DataFrame):
        blocks: list = [Table(selection, caption="Dose selection per candidate dose")]
        return Section("selection", "Dose selection", tuple(blocks))
    blocks = []
    summary = getattr(selection, "summary", None)
    if callable(summary):
        blocks.append(Text(str(summary()), "ok"))
    table = getattr(selection, "table", None)
    if isinstance(table, pd.DataFrame):
        blocks.append(Table(table, caption="Per candidate dose: posterior probabilities "
                                           "(median, 95 % CrI) and utility"))
    plot = getattr(selection, "plot", None)
    if callable(plot):
        blocks.append(figure_block(plot(), "selection", caption="Posterior probabilities of "
                                   "toxicity and response per dose, with the overdose limit"))
    if not blocks:
        blocks = list(as_blocks(selection, name="selection"))
    return Section("selection", "Dose selection", tuple(blocks))

