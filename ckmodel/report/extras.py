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
    name = f"{getattr(res, 'endpoint', 'response')}"
    blocks: list = [Text(f"{name}: {getattr(res, 'kind', '')} model "
                         f"{getattr(res, 'model', '')} in {getattr(res, 'exposure_scale', 'log')} "
                         f"{getattr(res, 'exposure_metric', 'exposure')}; exposure uncertainty "
                         f"{getattr(res, 'uncertainty', 'plugin')}"
                         + (f"; allo-HSCT as {res.hsct}" if getattr(res, "hsct", None) else "")
                         + ".")]
    coef = res.coefficients()
    blocks.append(Table(coef, caption=f"{name}: coefficients (median, 95 % CrI; log odds or "
                                      "log hazard ratio per unit of the exposure as entered)"))
    plot = getattr(res, "plot", None)
    if callable(plot):
        blocks.append(figure_block(plot(), f"er-{k}", caption=f"{name} against "
                                   f"{getattr(res, 'exposure_metric', 'exposure')}: model "
                                   "median and 95 % band, observed proportions in exposure bins"))
    return blocks


def response_section(responses: Sequence[Any]) -> Section:
    """Each exposure-response fit: what was modelled, its coefficients and its curve."""
    blocks: list = []
    for k, res in enumerate(responses, start=1):
        blocks += _response_blocks(res, k)
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

